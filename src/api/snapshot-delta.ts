// Deltas on the control stream (issue 17): a proxy holds the last snapshot it was sent
// on this stream and turns each delta into the next full Snapshot, so the one place a
// configuration takes effect stays `Sidecar.apply(snapshot)`. Upstreams the delta does
// not name keep their very objects, so the proxy can tell what did not change by
// identity, without comparing or re-serializing. Both ends import this: the control
// plane's tests check that a delta chain ends exactly where a full compile does.
import type { Snapshot, SnapshotBase, SnapshotDelta, UpstreamSnapshot } from './protocol.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The snapshot `delta` makes of `prev` (whose version must be `delta.from`). Throws with
 * the reason when the delta is malformed; `prev` is never modified.
 */
export function applyDelta(prev: Snapshot, delta: SnapshotDelta): Snapshot {
  if (delta.base !== undefined && !isObject(delta.base)) throw new Error('delta.base must be an object');
  if (delta.upstreams !== undefined && !isObject(delta.upstreams)) throw new Error('delta.upstreams must be an object');
  if (delta.removed !== undefined && (!Array.isArray(delta.removed) || delta.removed.some((n) => typeof n !== 'string')))
    throw new Error('delta.removed must be an array of names');
  const changed = delta.upstreams ?? {};
  const removed = new Set(delta.removed ?? []);
  const names = new Set<string>();
  for (const n of Object.keys(prev.upstreams)) if (!removed.has(n)) names.add(n);
  for (const n of Object.keys(changed)) names.add(n);
  // Sorted, as the compiler writes them: an assembled snapshot is the compiled one, key for key.
  const upstreams: Record<string, UpstreamSnapshot> = {};
  for (const n of [...names].sort()) upstreams[n] = (Object.hasOwn(changed, n) ? changed[n] : prev.upstreams[n]) as UpstreamSnapshot;
  const base: SnapshotBase = delta.base ?? baseOf(prev);
  return { ...base, version: delta.version, upstreams };
}

/** Everything of a snapshot but its version and upstreams. */
export function baseOf(s: Snapshot): SnapshotBase {
  const { version: _v, upstreams: _u, ...base } = s;
  return base;
}

/** What one control message did to the assembler. */
export type Assembled =
  | { readonly kind: 'snapshot'; readonly snapshot: Snapshot }
  /** A delta that does not follow the snapshot held: ask for a full one (`resync`). */
  | { readonly kind: 'resync'; readonly holding: number | undefined }
  /** A malformed delta: NACK it, the snapshot held stays. */
  | { readonly kind: 'malformed'; readonly error: string };

/**
 * One stream's snapshot as the proxy assembles it: the last full snapshot, plus every
 * delta since. It follows what the control plane sent, applied or not: a snapshot the
 * proxy refused (NACK) is still the one the next delta is relative to, as the control
 * plane compiles it (a refused upstream stays refused until the delta that fixes it).
 */
export class SnapshotAssembler {
  #current: Snapshot | undefined;
  readonly #resources = new Map<string, number>();

  /** A new stream: the next message must be a full snapshot. */
  reset(): void {
    this.#current = undefined;
    this.#resources.clear();
  }

  /** The snapshot held, if any. */
  get current(): Snapshot | undefined {
    return this.#current;
  }

  /** Each upstream resource's version, as the control plane last stamped it. */
  get resources(): ReadonlyMap<string, number> {
    return this.#resources;
  }

  full(snapshot: Snapshot, resources?: Record<string, number>): Assembled {
    // What is no snapshot at all is handed on (the proxy refuses it), but no delta builds on it.
    this.#current = isObject(snapshot) && isObject(snapshot.upstreams) ? snapshot : undefined;
    this.#resources.clear();
    if (isObject(resources)) for (const [n, v] of Object.entries(resources)) if (typeof v === 'number') this.#resources.set(n, v);
    return { kind: 'snapshot', snapshot };
  }

  delta(delta: SnapshotDelta): Assembled {
    const current = this.#current;
    if (current === undefined || current.version !== delta.from) return { kind: 'resync', holding: current?.version };
    let next: Snapshot;
    try {
      next = applyDelta(current, delta);
    } catch (err) {
      return { kind: 'malformed', error: err instanceof Error ? err.message : String(err) };
    }
    this.#current = next;
    for (const n of delta.removed ?? []) this.#resources.delete(n);
    if (isObject(delta.resources)) for (const [n, v] of Object.entries(delta.resources)) if (typeof v === 'number') this.#resources.set(n, v);
    return { kind: 'snapshot', snapshot: next };
  }
}
