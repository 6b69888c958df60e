// A reflector: keeps a local copy of one kind of Kubernetes object current by list +
// watch, the way client-go's Reflector does. We do not use client-node's ListWatch
// (cache.js in 1.4): it never asks for bookmarks, lists in one page (no `continue`), and
// on any error but 410 it stops for good with no backoff. This one:
// - lists in pages (`limit` + `continue`), then watches from the list's resourceVersion
//   with `allowWatchBookmarks=true`, moving its resourceVersion on every event and bookmark;
// - resumes a watch that ends (servers end them every few minutes) from the last
//   resourceVersion, without a re-list;
// - on 410 Gone (a status, or an ERROR event with code 410) re-lists and replaces its
//   store, telling its listener only what really changed (no endpoint lost or doubled);
// - retries failures with exponential backoff and full jitter, reset by a good list.
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import https from 'node:https';
import http from 'node:http';

/** The fields of an object the reflector reads; the rest is the caller's. */
export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly resourceVersion?: string; readonly [k: string]: unknown };
  readonly [k: string]: unknown;
}

export interface KubeList {
  readonly metadata?: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items?: readonly KubeObject[];
}

/** Where one kind is listed and watched: `/api/v1/services`, `/apis/discovery.k8s.io/v1/endpointslices`. */
export interface KindPath {
  readonly kind: string;
  readonly path: string;
}

/** One change to the store, after it happened. */
export type StoreChange =
  | { readonly type: 'added'; readonly object: KubeObject }
  | { readonly type: 'modified'; readonly object: KubeObject; readonly previous: KubeObject }
  | { readonly type: 'deleted'; readonly object: KubeObject };

/** A status a list answered with (410 Gone, 403, ...). */
export class KubeStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Lists one page; `continueToken` is the previous page's `metadata.continue`. */
export type ListPage = (path: string, opts: { limit: number; continueToken?: string }) => Promise<KubeList>;

/** Starts a watch; calls `onEvent` per event and `done` once when it ends; returns how to abort it. */
export type StartWatch = (
  path: string,
  query: Record<string, string>,
  onEvent: (type: string, object: KubeObject) => void,
  done: (err: unknown) => void,
) => Promise<{ abort(): void }>;

export interface ReflectorOptions {
  readonly kind: KindPath;
  readonly list: ListPage;
  readonly watch: StartWatch;
  /** Called after every change to the store (and once with `synced` after each full list). */
  readonly onChange?: (changes: readonly StoreChange[]) => void;
  readonly log?: (line: string) => void;
  /** Page size of a list (default 500). */
  readonly pageSize?: number;
  /** First and longest retry pause (default 200 ms and 30 s). */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  /** Server-side watch timeout asked for (default 300 s); the watch is resumed after it. */
  readonly watchTimeoutSeconds?: number;
  /** Jitter source (tests). */
  readonly random?: () => number;
}

export function objectKey(o: KubeObject): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ''}` : (m.name ?? '');
}

/** Is this error a 410 Gone (our KubeStatusError, client-node's `statusCode`, or a Status object's `code`)? */
function isGone(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { statusCode?: unknown; code?: unknown };
  return e.statusCode === 410 || e.code === 410;
}

export class Reflector {
  readonly #opts: ReflectorOptions;
  readonly #store = new Map<string, KubeObject>();
  #resourceVersion = '';
  #synced = false;
  #stopped = true;
  #current?: { abort(): void };
  #timer?: NodeJS.Timeout;
  #failures = 0;
  /** How many times it listed, resumed a watch, and was told 410 (tests and `trellis check`). */
  readonly counters = { lists: 0, watches: 0, gone: 0, failures: 0 };
  /** The last failure's HTTP status (403, 404, ...; absent: not an HTTP answer) and message, until a list succeeds. */
  lastFailure?: { readonly statusCode?: number; readonly message: string };

  constructor(opts: ReflectorOptions) {
    this.#opts = opts;
  }

  get kind(): string {
    return this.#opts.kind.kind;
  }

  /** True once the first full list is in the store. */
  get synced(): boolean {
    return this.#synced;
  }

  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  list(): KubeObject[] {
    return [...this.#store.values()];
  }

  get(key: string): KubeObject | undefined {
    return this.#store.get(key);
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#current?.abort();
    this.#current = undefined;
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    try {
      if (!this.#resourceVersion) await this.#relist();
      if (this.#stopped) return;
      await this.#watch();
    } catch (err) {
      this.#failed(err);
    }
  }

  #failed(err: unknown): void {
    if (this.#stopped) return;
    if (isGone(err)) {
      this.counters.gone++;
      this.#resourceVersion = '';
      this.#schedule(0);
      return;
    }
    this.counters.failures++;
    this.#failures++;
    const statusCode = (err as { statusCode?: unknown; code?: unknown } | null)?.statusCode ?? (err as { code?: unknown } | null)?.code;
    this.lastFailure = {
      ...(typeof statusCode === 'number' ? { statusCode } : {}),
      message: (err instanceof Error ? err.message : String(err)).slice(0, 500),
    };
    const { initial, max } = this.#opts.backoffMs ?? { initial: 200, max: 30_000 };
    const ceiling = Math.min(max, initial * 2 ** Math.min(this.#failures - 1, 20));
    const delay = Math.round((this.#opts.random ?? Math.random)() * ceiling);
    this.#opts.log?.(`k8s: ${this.kind}: ${err instanceof Error ? err.message : String(err)}; retrying in ${delay} ms`);
    this.#schedule(delay);
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#run(), ms);
  }

  async #relist(): Promise<void> {
    this.counters.lists++;
    const items: KubeObject[] = [];
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.#opts.list(this.#opts.kind.path, { limit: this.#opts.pageSize ?? 500, ...(continueToken ? { continueToken } : {}) });
      items.push(...(page.items ?? []));
      continueToken = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
    } while (continueToken && !this.#stopped);
    if (this.#stopped) return;
    // Replace the store, reporting only the difference: a re-list after 410 must not
    // make every endpoint disappear and come back.
    const changes: StoreChange[] = [];
    const seen = new Set<string>();
    for (const object of items) {
      const key = objectKey(object);
      seen.add(key);
      const previous = this.#store.get(key);
      this.#store.set(key, object);
      if (!previous) changes.push({ type: 'added', object });
      else if (previous.metadata?.resourceVersion !== object.metadata?.resourceVersion) changes.push({ type: 'modified', object, previous });
    }
    for (const [key, object] of this.#store) {
      if (!seen.has(key)) {
        this.#store.delete(key);
        changes.push({ type: 'deleted', object });
      }
    }
    this.#resourceVersion = resourceVersion;
    this.#synced = true;
    this.#failures = 0;
    this.lastFailure = undefined;
    this.#opts.onChange?.(changes);
  }

  #watch(): Promise<void> {
    this.counters.watches++;
    const query: Record<string, string> = {
      resourceVersion: this.#resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(this.#opts.watchTimeoutSeconds ?? 300),
    };
    let ended = false;
    const done = (err: unknown): void => {
      if (ended) return;
      ended = true;
      this.#current = undefined;
      if (this.#stopped) return;
      if (err) this.#failed(err);
      else this.#schedule(0); // the server ended it: resume from the last resourceVersion
    };
    return this.#opts
      .watch(this.#opts.kind.path, query, (type, object) => this.#event(type, object, done), done)
      .then((handle) => {
        if (ended || this.#stopped) handle.abort();
        else this.#current = handle;
      });
  }

  #event(type: string, object: KubeObject, done: (err: unknown) => void): void {
    if (this.#stopped || typeof object !== 'object' || object === null) return;
    if (type === 'ERROR') {
      // A Status: 410 Gone means our resourceVersion is too old; re-list.
      this.#current?.abort();
      done(isGone(object) ? object : new Error(`watch error: ${String((object as { message?: unknown }).message ?? 'unknown')}`));
      return;
    }
    const rv = object.metadata?.resourceVersion;
    if (type === 'BOOKMARK') {
      if (rv) this.#resourceVersion = rv;
      return;
    }
    const key = objectKey(object);
    const previous = this.#store.get(key);
    let change: StoreChange | undefined;
    if (type === 'ADDED' || type === 'MODIFIED') {
      this.#store.set(key, object);
      change = previous ? { type: 'modified', object, previous } : { type: 'added', object };
    } else if (type === 'DELETED') {
      if (previous) {
        this.#store.delete(key);
        change = { type: 'deleted', object };
      }
    } else return;
    if (rv) this.#resourceVersion = rv;
    this.#failures = 0;
    if (change) this.#opts.onChange?.([change]);
  }
}

/** The list and watch of a KubeConfig: lists over node's http(s) with its credentials, watches with client-node's Watch. */
export function kubeTransport(kc: KubeConfig): { list: ListPage; watch: StartWatch } {
  const watcher = new Watch(kc);
  const list: ListPage = async (path, { limit, continueToken }) => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const url = new URL(cluster.server + path);
    url.searchParams.set('limit', String(limit));
    if (continueToken) url.searchParams.set('continue', continueToken);
    const opts: https.RequestOptions = { method: 'GET', headers: { accept: 'application/json' } };
    await kc.applyToHTTPSOptions(opts);
    return requestJson(url, opts) as Promise<KubeList>;
  };
  const watch: StartWatch = (path, query, onEvent, done) => watcher.watch(path, query, (type: string, object: KubeObject) => onEvent(type, object), done);
  return { list, watch };
}

/** One request to the KubeConfig's current cluster with its credentials: METHOD path, a JSON body, the JSON answer (non-2xx: KubeStatusError). */
export type KubeCall = (method: string, path: string, body?: unknown) => Promise<unknown>;

export function kubeCall(kc: KubeConfig): KubeCall {
  return async (method, path, body) => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const opts: https.RequestOptions = { method, headers: { accept: 'application/json' } };
    await kc.applyToHTTPSOptions(opts);
    return requestJson(new URL(`${cluster.server}${path}`), opts, body);
  };
}

/** Longest answer a list page may be (a page of 500 objects is far below). */
const MAX_LIST_BYTES = 64 * 1024 * 1024;

/** Sends one request with the KubeConfig's options and parses the JSON answer; a non-2xx answer is a KubeStatusError. */
export function requestJson(url: URL, opts: https.RequestOptions, body?: unknown): Promise<unknown> {
  const send = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = {
      ...(opts.headers as Record<string, string>),
      ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
    };
    const req = send(url, { ...opts, headers }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_LIST_BYTES) req.destroy(new Error(`answer from ${url.pathname} is larger than ${MAX_LIST_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          let message = `${status} from ${url.pathname}`;
          try {
            message = `${message}: ${String((JSON.parse(text) as { message?: unknown }).message ?? '')}`;
          } catch {}
          reject(new KubeStatusError(status, message));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err);
        }
      });
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url.pathname} in 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}
