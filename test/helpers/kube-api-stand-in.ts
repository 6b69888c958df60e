// A stand-in for kube-apiserver, small but on the real wire protocol, for tests that drive
// @kubernetes/client-node against it: collections listed with `resourceVersion`, `limit`
// and `continue`; watches as chunked streams of JSON lines (ADDED / MODIFIED / DELETED /
// BOOKMARK with allowWatchBookmarks, ERROR with a 410 Status); a watch from a compacted
// resourceVersion answered 410 Gone. Tests change objects, break or end watches, send
// bookmarks and compact history to see a client recover. Loopback, port 0, HTTP.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export interface StandInObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

interface Event {
  readonly rv: number;
  readonly collection: string;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: StandInObject;
}

interface WatchStream {
  readonly collection: string;
  readonly res: http.ServerResponse;
  readonly bookmarks: boolean;
  /** The watch's `fieldSelector`: only objects it matches are sent. */
  readonly fields: FieldSelector;
  /** Held back (tests reorder delivery). */
  held?: Event[];
}

/** `/api/v1/services` for a core kind, `/apis/<group>/<version>/<plural>` otherwise. */
export function collectionOf(apiVersion: string, kind: string): string {
  const lower = kind.toLowerCase();
  // English plurals as the API server's CRDs spell them: policy → policies, but gateway → gateways.
  const plural = /[^aeiou]y$/.test(lower) ? `${lower.slice(0, -1)}ies` : lower.endsWith('s') ? `${lower}es` : `${lower}s`;
  return apiVersion.includes('/') ? `/apis/${apiVersion}/${plural}` : `/api/${apiVersion}/${plural}`;
}

export class KubeApiStandIn {
  readonly #server = http.createServer((req, res) => this.#handle(req, res));
  /** collection → key → object */
  readonly #objects = new Map<string, Map<string, StandInObject>>();
  readonly #events: Event[] = [];
  readonly #watches = new Set<WatchStream>();
  #rv = 100;
  /** Watches from a resourceVersion below this are 410 Gone. */
  #compactedBelow = 0;
  /** TokenReview answers by token. */
  readonly tokens = new Map<string, { username: string; audiences: string[] } | { error: string }>();
  /** Collections answered with an error status (403: RBAC forbids it; 404: no CRD serves it), by collection path. */
  readonly #refused = new Map<string, 403 | 404>();
  /** Writes to a status subresource, in order (tests count them: no write loops). */
  readonly statusWrites: { method: string; key: string; body: unknown; token: string }[] = [];
  /** Requests seen, as `METHOD path?query` (tests look at what the client asked). */
  readonly requests: string[] = [];
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this;
  }

  /** A KubeConfig that reaches this stand-in (what `--kubeconfig` would load). */
  kubeConfig(token = 'stand-in-admin'): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'stand-in', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'u', token }],
      contexts: [{ name: 'c', cluster: 'stand-in', user: 'u' }],
      currentContext: 'c',
    });
    return kc;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  get openWatches(): number {
    return this.#watches.size;
  }

  /**
   * Creates or replaces an object (status too: tests play the other writers with it);
   * returns its new resourceVersion. `metadata.generation` is the server's, as the real
   * one keeps it: 1 on create, one more whenever anything but metadata and status changes.
   */
  apply(object: StandInObject): string {
    const collection = collectionOf(object.apiVersion, object.kind);
    const store = this.#store(collection);
    const key = keyOf(object);
    const previous = store.get(key);
    const type = previous ? 'MODIFIED' : 'ADDED';
    const stored = structuredClone(object);
    const generation = Number(previous?.metadata.generation ?? 0);
    stored.metadata.generation = previous && specOf(previous) === specOf(stored) ? generation : generation + 1;
    stored.metadata.resourceVersion = String(++this.#rv);
    store.set(key, stored);
    this.#publish({ rv: this.#rv, collection, type, object: stored });
    return stored.metadata.resourceVersion;
  }

  delete(apiVersion: string, kind: string, name: string, namespace?: string): boolean {
    const collection = collectionOf(apiVersion, kind);
    const store = this.#store(collection);
    const key = namespace ? `${namespace}/${name}` : name;
    const old = store.get(key);
    if (!old) return false;
    store.delete(key);
    const object = structuredClone(old);
    object.metadata.resourceVersion = String(++this.#rv);
    this.#publish({ rv: this.#rv, collection, type: 'DELETED', object });
    return true;
  }

  /**
   * Answers every list and watch of a kind with `code`, as the real server does when RBAC
   * forbids it (403) or no CRD serves it (404); {@link allow} ends that.
   */
  refuse(apiVersion: string, kind: string, code: 403 | 404): void {
    this.#refused.set(collectionOf(apiVersion, kind), code);
  }

  allow(apiVersion: string, kind: string): void {
    this.#refused.delete(collectionOf(apiVersion, kind));
  }

  /** Forgets history: a watch from an older resourceVersion gets 410 Gone (as etcd compaction does). */
  compact(): void {
    this.#compactedBelow = this.#rv;
    this.#events.length = 0;
  }

  /** Sends an ERROR event with a 410 Status on every open watch, then ends them. */
  expireWatches(): void {
    for (const w of [...this.#watches]) {
      w.res.write(
        `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' } })}\n`,
      );
      this.#end(w);
    }
  }

  /** Sends a BOOKMARK with the current resourceVersion on every watch that asked for them. */
  bookmark(): void {
    for (const w of this.#watches) {
      if (!w.bookmarks || w.held) continue;
      const [apiPart] = w.collection.split('/').slice(-1);
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: apiPart, apiVersion: 'v1', metadata: { resourceVersion: String(this.#rv) } } })}\n`);
    }
  }

  /** Ends every watch cleanly (as the server's watch timeout does). */
  endWatches(): void {
    for (const w of [...this.#watches]) this.#end(w);
  }

  /** Cuts every watch mid-stream (a reset connection). */
  breakWatches(): void {
    for (const w of [...this.#watches]) {
      this.#watches.delete(w);
      w.res.socket?.destroy();
    }
  }

  /** Holds back events on every open watch until {@link release}, which sends them in `order`. */
  hold(): void {
    for (const w of this.#watches) w.held = [];
  }

  /** Sends what was held, in the order `order` gives (default: reversed), then resumes live delivery. */
  release(order: (events: Event[]) => Event[] = (e) => [...e].reverse()): void {
    for (const w of this.#watches) {
      const held = w.held ?? [];
      w.held = undefined;
      for (const e of order(held)) this.#send(w, e);
    }
  }

  async close(): Promise<void> {
    this.breakWatches();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #store(collection: string): Map<string, StandInObject> {
    let store = this.#objects.get(collection);
    if (!store) {
      store = new Map();
      this.#objects.set(collection, store);
    }
    return store;
  }

  #publish(event: Event): void {
    this.#events.push(event);
    for (const w of this.#watches) {
      if (w.collection !== event.collection) continue;
      if (w.held) w.held.push(event);
      else this.#send(w, event);
    }
  }

  #send(w: WatchStream, e: Event): void {
    if (!w.fields(e.object)) return;
    w.res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
  }

  #end(w: WatchStream): void {
    this.#watches.delete(w);
    w.res.end();
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        this.#route(
          req.method ?? 'GET',
          url,
          chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined,
          res,
          req.headers['content-type'],
          (req.headers.authorization ?? '').replace(/^Bearer /, ''),
        );
      } catch (err) {
        status(res, 400, 'BadRequest', String(err));
      }
    });
  }

  #route(method: string, url: URL, body: unknown, res: http.ServerResponse, contentType?: string, token = ''): void {
    if (method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') {
      const spec = (body as { spec?: { token?: string; audiences?: string[] } }).spec ?? {};
      const known = this.tokens.get(spec.token ?? '');
      const wanted = spec.audiences ?? [];
      let statusPart: Record<string, unknown>;
      if (!known || 'error' in known) statusPart = { authenticated: false, error: known && 'error' in known ? known.error : 'invalid bearer token' };
      else if (wanted.length > 0 && !wanted.some((a) => known.audiences.includes(a)))
        statusPart = { authenticated: false, error: 'token audiences are invalid' };
      else statusPart = { authenticated: true, user: { username: known.username, groups: ['system:serviceaccounts'] }, audiences: wanted };
      json(res, 201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec, status: statusPart });
      return;
    }
    if (method === 'GET' && url.pathname === '/version') {
      json(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0-stand-in' });
      return;
    }
    // Namespaced paths (/api/v1/namespaces/ns/services) map to the cluster-wide collection.
    const m = /^(\/apis?\/(?:[^/]+\/)?v[^/]+)(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+)(\/status)?)?$/.exec(url.pathname);
    if (!m) {
      status(res, 404, 'NotFound', `no route for ${url.pathname}`);
      return;
    }
    const [, prefix, namespace, plural, name, subresource] = m;
    const collection = `${prefix}/${plural}`;
    const refused = this.#refused.get(collection);
    if (refused === 403) {
      const group = prefix!.startsWith('/apis/') ? prefix!.split('/')[2] : '';
      return status(
        res,
        403,
        'Forbidden',
        `${plural}${group ? `.${group}` : ''} is forbidden: User "system:serviceaccount:trellis-system:trellis-control" cannot ${method === 'GET' ? (url.searchParams.get('watch') === 'true' ? 'watch' : 'list') : method.toLowerCase()} resource "${plural}" in API group "${group}" at the cluster scope`,
      );
    }
    if (refused === 404) return status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const store = this.#store(collection);
    if (name !== undefined && subresource !== undefined) {
      this.#status(method, store, namespace ? `${namespace}/${name}` : name, plural!, name, body, contentType, token, res);
      return;
    }
    if (name !== undefined) {
      const key = namespace ? `${namespace}/${name}` : name;
      if (method === 'GET') {
        const o = store.get(key);
        if (o) json(res, 200, o);
        else status(res, 404, 'NotFound', `${plural} "${name}" not found`);
        return;
      }
      if (method === 'PUT') {
        const o = body as StandInObject;
        const current = store.get(key);
        if (!current) return status(res, 404, 'NotFound', `${plural} "${name}" not found`);
        if (o.metadata.resourceVersion !== current.metadata.resourceVersion) return status(res, 409, 'Conflict', 'the object has been modified');
        // With a status subresource, a write of the object leaves its status alone.
        const { status: _ignored, ...rest } = o;
        this.apply('status' in current ? { ...rest, metadata: o.metadata, status: current.status } : (rest as StandInObject));
        json(res, 200, store.get(key));
        return;
      }
      status(res, 405, 'MethodNotAllowed', method);
      return;
    }
    if (method === 'POST') {
      const o = body as StandInObject;
      const key = keyOf({ ...o, metadata: { ...o.metadata, ...(namespace ? { namespace } : {}) } });
      if (store.has(key)) return status(res, 409, 'AlreadyExists', `${plural} "${o.metadata.name}" already exists`);
      this.apply({ ...o, metadata: { ...o.metadata, ...(namespace ? { namespace } : {}) } });
      json(res, 201, store.get(key));
      return;
    }
    if (url.searchParams.get('watch') === 'true') {
      this.#watch(collection, url, res);
      return;
    }
    this.#list(collection, namespace, url, res);
  }

  /**
   * The status subresource, as the real server has it: GET; PUT (the object with its
   * resourceVersion, 409 when stale) and PATCH (application/merge-patch+json) change only
   * `status`; the resourceVersion moves, the generation does not; watchers get MODIFIED.
   */
  #status(
    method: string,
    store: Map<string, StandInObject>,
    key: string,
    plural: string,
    name: string,
    body: unknown,
    contentType: string | undefined,
    token: string,
    res: http.ServerResponse,
  ): void {
    const current = store.get(key);
    if (!current) return status(res, 404, 'NotFound', `${plural} "${name}" not found`);
    this.statusWrites.push({ method, key, body: structuredClone(body), token });
    if (method === 'GET') return json(res, 200, current);
    let next: unknown;
    if (method === 'PUT') {
      const o = body as StandInObject;
      if (o.metadata?.resourceVersion !== undefined && o.metadata.resourceVersion !== current.metadata.resourceVersion)
        return status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      next = o.status;
    } else if (method === 'PATCH') {
      if (contentType !== 'application/merge-patch+json')
        return status(res, 415, 'UnsupportedMediaType', `the body of the request was in an unknown format: ${contentType}`);
      next = mergePatch(current.status, (body as { status?: unknown }).status);
    } else return status(res, 405, 'MethodNotAllowed', method);
    const stored = structuredClone(current);
    if (next === undefined) delete stored.status;
    else stored.status = next;
    stored.metadata.resourceVersion = String(++this.#rv);
    store.set(key, stored);
    this.#publish({ rv: this.#rv, collection: collectionOf(current.apiVersion, current.kind), type: 'MODIFIED', object: stored });
    json(res, 200, stored);
  }

  #list(collection: string, namespace: string | undefined, url: URL, res: http.ServerResponse): void {
    const limit = Number(url.searchParams.get('limit') ?? '0');
    const token = url.searchParams.get('continue');
    // A continue token pins the resourceVersion of the first page, as the real server's does.
    let offset = 0;
    let rv = this.#rv;
    if (token) {
      const parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { offset: number; rv: number; items: string[] };
      offset = parsed.offset;
      rv = parsed.rv;
    }
    const fields = fieldSelector(url.searchParams.get('fieldSelector'));
    const all = [...this.#store(collection).values()]
      .filter((o) => (!namespace || o.metadata.namespace === namespace) && fields(o))
      .sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
    const page = limit > 0 ? all.slice(offset, offset + limit) : all.slice(offset);
    const next = limit > 0 && offset + limit < all.length ? Buffer.from(JSON.stringify({ offset: offset + limit, rv })).toString('base64') : undefined;
    json(res, 200, { kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: String(rv), ...(next ? { continue: next } : {}) }, items: page });
  }

  #watch(collection: string, url: URL, res: http.ServerResponse): void {
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    if (from > 0 && from < this.#compactedBelow) {
      status(res, 410, 'Expired', `too old resource version: ${from} (${this.#compactedBelow})`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: WatchStream = {
      collection,
      res,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
      fields: fieldSelector(url.searchParams.get('fieldSelector')),
    };
    this.#watches.add(w);
    res.on('close', () => this.#watches.delete(w));
    for (const e of this.#events) if (e.collection === collection && e.rv > from) this.#send(w, e);
  }
}

type FieldSelector = (o: StandInObject) => boolean;

/**
 * A `fieldSelector` (`type=kubernetes.io/tls`, `metadata.namespace!=kube-system`, comma
 * for and) as a predicate on an object's fields at dotted paths. A real server would also
 * send DELETED for an object that stops matching; the fields tests select on (a Secret's
 * type) are immutable, so this one need not.
 */
function fieldSelector(text: string | null): FieldSelector {
  if (!text) return () => true;
  const terms = text.split(',').map((term) => {
    const m = /^([^!=]+)(!=|==|=)(.*)$/.exec(term);
    if (!m) throw new Error(`bad fieldSelector term ${term}`);
    return { path: m[1]!.split('.'), negate: m[2] === '!=', value: m[3]! };
  });
  return (o) =>
    terms.every((t) => {
      let v: unknown = o;
      for (const p of t.path) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[p] : undefined;
      return (String(v ?? '') === t.value) !== t.negate;
    });
}

/** What a change of bumps `metadata.generation`: everything but metadata and status. */
function specOf(o: StandInObject): string {
  const { metadata: _m, status: _s, ...rest } = o;
  return JSON.stringify(rest);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function keyOf(o: StandInObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

function json(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function status(res: http.ServerResponse, code: number, reason: string, message: string): void {
  json(res, code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code });
}

/** A Service with one TCP port 80 named http (appProtocol when given), for the stand-in. */
export function httpService(name: string, namespace: string, appProtocol?: string): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: { ports: [{ name: 'http', port: 80, protocol: 'TCP', ...(appProtocol ? { appProtocol } : {}) }] },
  };
}
