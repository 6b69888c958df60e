// Writes objects' status subresource for the Lease leader, the part every kind shares
// (routes: route-status.ts; Gateways: gateway-status.ts): each object is judged against a
// world, and written only when the status it should have differs from what it holds. A
// status write bumps the object's resourceVersion and comes back as a MODIFIED event,
// which then computes the same status and writes nothing (no write loop). Writes are PUTs
// with the object's resourceVersion (optimistic concurrency: a 409 means a newer object is
// on its way, and that one is looked at); at most maxInFlight at once.
import type { KubeCall, KubeObject } from './reflector.js';
import { KubeStatusError } from './reflector.js';
import { LogLimiter } from '../../log-limiter.js';

type Obj = Record<string, unknown>;
const rec = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Whether two JSON values are the same (key order aside). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((x, i) => sameJson(x, (b as unknown[])[i]));
  const ka = Object.keys(a).filter((k) => (a as Obj)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Obj)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => sameJson((a as Obj)[k], (b as Obj)[k]));
}

/** Where a kind's objects live in the API. */
export interface StatusKindPath {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  /** A cluster-scoped kind (GatewayClass): its objects have no namespace, nor their paths. */
  readonly clusterScoped?: boolean;
}

export interface StatusWriterOptions<W> {
  /** One request to the API (src/k8s/source/reflector.ts kubeCall). */
  readonly call: KubeCall;
  /** Whether this replica writes (it holds the Lease). */
  readonly leading: () => boolean;
  /** The objects as listed, per kind of `paths` that is read. */
  readonly objects: () => ReadonlyMap<string, readonly KubeObject[]>;
  readonly paths: Readonly<Record<string, StatusKindPath>>;
  /** What the objects are judged against; undefined: not ready to judge (nothing is written). */
  readonly world: () => W | undefined;
  /** The whole status the object should have; undefined: not Trellis's to write. */
  readonly desired: (kind: string, object: KubeObject, world: W, now: string) => Record<string, unknown> | undefined;
  /** What the objects are called in log lines ("route", "Gateway"). */
  readonly what: string;
  readonly log?: (line: string) => void;
  /** How long after a change the objects are looked at (default 250 ms: a burst of changes is one look; status is not urgent). */
  readonly delayMs?: number;
  /** Most status writes at once (default 8). */
  readonly maxInFlight?: number;
  /** How often they are looked at anyway (a new leader, a failed write; default 10 s). */
  readonly resyncMs?: number;
  readonly now?: () => number;
}

/** Writes objects' status when it differs from what they hold; only while leading. */
export class StatusWriter<W> {
  readonly #o: StatusWriterOptions<W>;
  #timer?: NodeJS.Timeout;
  #resync?: NodeJS.Timeout;
  /** Object key → the resourceVersion a write in flight (or done, its event not yet back) was based on. */
  readonly #writing = new Map<string, string>();
  /** Object key → the resourceVersion and world it was last judged by, needing no write: unchanged, it is not judged again. */
  readonly #judged = new Map<string, { readonly rv: string; readonly world: W }>();
  #stopped = true;
  #inFlight = 0;
  /** Objects were left to look at because maxInFlight writes were running. */
  #more = false;
  /** Looks at every object made (while leading), status writes made, and how many failed (tests). */
  readonly counters = { syncs: 0, writes: 0, failures: 0 };

  /** Failed writes said in the log: a few a minute (a missing RBAC rule fails every object's). */
  readonly #failureLog: LogLimiter;

  constructor(opts: StatusWriterOptions<W>) {
    this.#o = opts;
    this.#failureLog = new LogLimiter({
      perMinute: 5,
      log: (line) => opts.log?.(line),
      dropped: (n) => `k8s: ${n} more ${opts.what} status writes failed in the last minute`,
    });
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#resync = setInterval(() => this.schedule(), this.#o.resyncMs ?? 10_000);
    this.#resync.unref();
    this.schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#resync);
    this.#timer = undefined;
  }

  /** Looks at every object soon (after delayMs); a burst of calls is one look. */
  schedule(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#sync();
    }, this.#o.delayMs ?? 250);
    this.#timer.unref();
  }

  #sync(): void {
    if (this.#stopped || !this.#o.leading()) return;
    const world = this.#o.world();
    if (world === undefined) return;
    this.counters.syncs++;
    const now = new Date((this.#o.now ?? Date.now)()).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const present = new Set<string>();
    for (const [kind, objects] of this.#o.objects()) {
      const where = this.#o.paths[kind];
      if (where === undefined) continue;
      for (const object of objects) {
        const namespace = where.clusterScoped ? '' : str(object.metadata?.namespace);
        const name = str(object.metadata?.name);
        const rv = str(object.metadata?.resourceVersion) ?? '';
        if (namespace === undefined || name === undefined) continue;
        const key = `${kind}/${namespace}/${name}`;
        present.add(key);
        // A write based on this very version is in flight, or done and its event not back yet.
        if (this.#writing.get(key) === rv) continue;
        const judged = this.#judged.get(key);
        if (judged !== undefined && judged.rv === rv && judged.world === world) continue;
        let status: Record<string, unknown> | undefined;
        try {
          status = this.#o.desired(kind, object, world, now);
        } catch (err) {
          this.#o.log?.(`k8s: status of ${key}: ${err instanceof Error ? err.message : String(err)}`);
          continue;
        }
        if (status === undefined || sameJson(status, rec(object.status))) {
          this.#judged.set(key, { rv, world });
          continue;
        }
        this.#judged.delete(key);
        // At most maxInFlight writes at once (a first sync of thousands of objects must not
        // flood the API server); the rest are looked at again when one finishes.
        if (this.#inFlight >= (this.#o.maxInFlight ?? 8)) {
          this.#more = true;
          continue;
        }
        this.#inFlight++;
        this.#writing.set(key, rv);
        void this.#write(
          key,
          `/apis/${where.group}/${where.version}${where.clusterScoped ? '' : `/namespaces/${encodeURIComponent(namespace)}`}/${where.plural}/${encodeURIComponent(name)}/status`,
          { ...object, status },
        );
      }
    }
    for (const key of this.#writing.keys()) if (!present.has(key)) this.#writing.delete(key);
    for (const key of this.#judged.keys()) if (!present.has(key)) this.#judged.delete(key);
  }

  async #write(key: string, path: string, body: KubeObject): Promise<void> {
    try {
      await this.#o.call('PUT', path, body);
      this.counters.writes++;
    } catch (err) {
      this.#writing.delete(key);
      // 409: a newer object is on its way (its event looks again); 404: deleted meanwhile.
      if (!(err instanceof KubeStatusError && (err.statusCode === 409 || err.statusCode === 404))) {
        this.counters.failures++;
        this.#failureLog.write(() => `k8s: status of ${key} not written: ${err instanceof Error ? err.message : String(err)}; trying again later`);
      }
    } finally {
      this.#inFlight--;
      if (this.#more) {
        this.#more = false;
        this.schedule();
      }
    }
  }
}
