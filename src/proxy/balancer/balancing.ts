// The balancing state a sidecar keeps per upstream service across snapshots: a balancer
// per backend (of the type its BackendPolicy names, PeakEWMA by default) and one outlier
// detector for the service. A new snapshot reuses what still fits: a backend whose
// endpoints and settings did not change keeps its balancer as it is; one whose endpoints
// changed gets a new balancer that adopts the old one's round-trip estimates and shares
// its pending counts (requests in flight end on the balancer they started on); the
// detector keeps the score and ejections of the endpoints that stay.
import { DEFAULT_BALANCING, type BackendSnapshot, type BalancerType, type BalancingConfig, type UpstreamSnapshot } from '../../api/protocol.js';
import { endpointKey, type Balancer, type BaseBalancer } from './balancer.js';
import { LeastRequestBalancer } from './least-request.js';
import { MaglevBalancer } from './maglev.js';
import { PeakEwmaBalancer } from './peak-ewma.js';
import { RandomBalancer } from './random.js';
import { RingHashBalancer } from './ring-hash.js';
import { RoundRobinBalancer } from './round-robin.js';
import { CircuitBreaker } from '../resilience/circuit-breaker.js';
import { WaitQueue } from '../resilience/wait-queue.js';
import { OutlierDetector } from '../resilience/outlier-detector.js';
import type { BreakerView, EjectionCountView, EjectionReason, EndpointView, FailoverView } from '../../api/views.js';
export type { BreakerView, EjectionCountView, EndpointView, FailoverView } from '../../api/views.js';
import type { CompiledBackend, FailoverCount, HashOn } from '../routing/router.js';
export type { HashOn } from '../routing/router.js';

/** Builds a balancer of `type`, taking over `prev`'s state when it is of the same kind. */
export function makeBalancer(type: BalancerType, endpoints: BackendSnapshot['endpoints'], prev?: Balancer): BaseBalancer {
  switch (type) {
    case 'PeakEWMA': {
      const b = new PeakEwmaBalancer(endpoints);
      if (prev instanceof PeakEwmaBalancer) b.adopt(prev);
      return b;
    }
    case 'LeastRequest': {
      const b = new LeastRequestBalancer(endpoints);
      if (prev instanceof LeastRequestBalancer) b.adopt(prev);
      return b;
    }
    case 'RoundRobin':
      return new RoundRobinBalancer(endpoints);
    case 'Random':
      return new RandomBalancer(endpoints);
    case 'RingHash':
      return new RingHashBalancer(endpoints);
    case 'Maglev':
      return new MaglevBalancer(endpoints);
  }
}

interface KeptBackend {
  /** Endpoints and settings, serialized: equal means the balancer can be kept as it is. */
  readonly key: string;
  readonly compiled: CompiledBackend;
}

interface ServiceState {
  breaker: CircuitBreaker | undefined;
  /** Per backend name: requests waiting for the backend to have an endpoint. */
  readonly queues: Map<string, WaitQueue<CompiledBackend>>;
  detector: OutlierDetector | undefined;
  detectorKey: string;
  backends: Map<string, KeptBackend>;
  /** Endpoint id → its version, from the latest snapshot: ejections are counted per version. */
  versions: Map<string, string>;
  /**
   * Counters for metrics, kept across snapshots (and detectors) while the service is in
   * them, so they only grow: ejections by `version\0reason`, failovers by `backend\0to`.
   * What a canary of a version is judged on besides its requests (canary-check.ts).
   */
  readonly ejections: Map<string, { readonly version: string; readonly reason: EjectionReason; count: number }>;
  readonly failovers: Map<string, FailoverCount>;
}

/** Logs an ejection or a return: `service`, endpoint id, whether ejected, why. */
export type EjectionLog = (service: string, id: string, ejected: boolean, reason: EjectionReason | undefined) => void;

export class BalancingState {
  readonly #services = new Map<string, ServiceState>();
  readonly #log: EjectionLog;

  constructor(log: EjectionLog = () => {}) {
    this.#log = log;
  }

  /** The backends of one upstream of a new snapshot, reusing what fits. */
  backendsFor(snap: UpstreamSnapshot, key: string = snap.service): Map<string, CompiledBackend> {
    // One state per key: a multi-port service's ports are balanced apart (`service:port`), as Envoy's clusters per port.
    const service = key;
    let state = this.#services.get(service);
    if (state === undefined) {
      state = {
        breaker: undefined,
        queues: new Map(),
        detector: undefined,
        detectorKey: '',
        backends: new Map(),
        versions: new Map(),
        ejections: new Map(),
        failovers: new Map(),
      };
      this.#services.set(service, state);
    }
    const st = state;
    const svc = snap.balancing ?? DEFAULT_BALANCING;
    const outlier = svc.outlierDetection;
    const detectorKey = outlier === undefined ? '' : JSON.stringify(outlier);
    if (detectorKey !== state.detectorKey) {
      state.detectorKey = detectorKey;
      state.detector = outlier === undefined ? undefined : new OutlierDetector(outlier);
      if (state.detector !== undefined) {
        state.detector.onChange = (id, ejected, reason) => {
          if (ejected && reason !== undefined) {
            const version = st.versions.get(id) ?? 'unknown';
            const key = `${version}\0${reason}`;
            const c = st.ejections.get(key);
            if (c === undefined) st.ejections.set(key, { version, reason, count: 1 });
            else c.count++;
          }
          this.#log(service, id, ejected, reason);
        };
      }
      // Balancers hold the detector: rebuild them all.
      state.backends.clear();
    }
    const detector = state.detector;
    // The breaker's counts survive a change of its limits: requests in flight still end on it.
    if (svc.circuitBreaker === undefined) state.breaker = undefined;
    else if (state.breaker === undefined) state.breaker = new CircuitBreaker(svc.circuitBreaker);
    else state.breaker.limits = svc.circuitBreaker;
    const breaker = state.breaker;
    const ids = new Set<string>();
    const versions = new Map<string, string>();
    const out = new Map<string, CompiledBackend>();
    const kept = new Map<string, KeptBackend>();
    for (const [name, b] of Object.entries(snap.backends)) {
      for (const e of b.endpoints) {
        ids.add(e.id);
        versions.set(e.id, e.version);
      }
      const cfg: BalancingConfig = b.balancing ?? svc;
      const key = JSON.stringify([cfg.balancer, cfg.hashOn, cfg.panicThreshold, b.endpoints]);
      const prev = state.backends.get(name);
      let k: KeptBackend;
      if (prev !== undefined && prev.key === key) {
        k = prev;
      } else {
        const balancer = makeBalancer(cfg.balancer, b.endpoints, prev?.compiled.balancer);
        balancer.setHealth(detector, cfg.panicThreshold);
        k = {
          key,
          compiled: {
            name,
            balancer,
            outliers: detector,
            hashOn: hashOnOf(cfg),
            failover: undefined,
            failovers: undefined,
            breaker: undefined,
            queue: undefined,
          },
        };
      }
      kept.set(name, k);
      out.set(name, k.compiled);
    }
    state.backends = kept;
    // A version fails over to the whole service (its other versions), as Envoy spills to the next priority.
    for (const [name, b] of out) {
      const to = snap.backends[name]!.failover;
      b.failover = to === undefined || to === name ? undefined : out.get(to);
      b.failovers = b.failover === undefined ? undefined : failoverCount(state.failovers, name, b.failover.name);
      b.breaker = breaker;
      let q = state.queues.get(name);
      if (q === undefined) state.queues.set(name, (q = new WaitQueue<CompiledBackend>()));
      b.queue = q;
    }
    detector?.setEndpoints([...ids]);
    state.versions = versions;
    return out;
  }

  /** Ejections by outlier detection, per destination, version and reason, since the sidecar started watching the destination. */
  ejections(): EjectionCountView[] {
    const out: EjectionCountView[] = [];
    for (const [service, state] of this.#services)
      for (const c of state.ejections.values()) out.push({ service, version: c.version, reason: c.reason, count: c.count });
    return out;
  }

  /** Requests sent from a backend to its failover backend, per destination. */
  failovers(): FailoverView[] {
    const out: FailoverView[] = [];
    for (const [service, state] of this.#services)
      for (const c of state.failovers.values()) out.push({ service, backend: c.backend, to: c.to, count: c.count });
    return out;
  }

  /** Forgets the services no longer in the snapshot. */
  retainOnly(services: ReadonlySet<string>): void {
    for (const s of this.#services.keys()) if (!services.has(s)) this.#services.delete(s);
  }

  /** Requests waiting for backend `backend` of `service` to have an endpoint. */
  queueSize(service: string, backend: string): number {
    return this.#services.get(service)?.queues.get(backend)?.size ?? 0;
  }

  /** After a snapshot is in force: requests waiting for an endpoint try again where one appeared. */
  drainQueues(): void {
    for (const state of this.#services.values()) {
      for (const [name, q] of state.queues) q.drain(state.backends.get(name)?.compiled);
    }
  }

  /** The circuit breakers, per service, for metrics, the admin server and `trellis status`. */
  breakers(): BreakerView[] {
    const out: BreakerView[] = [];
    for (const [service, { breaker: b }] of this.#services) {
      if (b === undefined) continue;
      out.push({
        service,
        open: b.open,
        connections: b.connections,
        pending: b.waiting.length,
        requests: b.requests,
        retries: b.retries,
        ...b.limits,
        pendingOverflows: b.pendingOverflows,
        requestOverflows: b.requestOverflows,
        retryOverflows: b.retryOverflows,
      });
    }
    return out;
  }

  /** Every endpoint of every backend with its load and health, for metrics, the admin server and `trellis status`. */
  view(): EndpointView[] {
    const out: EndpointView[] = [];
    for (const [service, state] of this.#services) {
      const health = new Map((state.detector?.view() ?? []).map((h) => [h.id, h]));
      for (const [backend, { compiled }] of state.backends) {
        const b = compiled.balancer;
        for (const e of b.endpoints) {
          const h = health.get(e.id);
          out.push({
            service,
            backend,
            id: e.id,
            address: endpointKey(e),
            version: e.version,
            balancer: b.constructor.name.replace(/Balancer$/, ''),
            pending: b instanceof PeakEwmaBalancer || b instanceof LeastRequestBalancer ? b.pending.of(e) : undefined,
            ewmaMs: b instanceof PeakEwmaBalancer ? Math.round(b.estimate(e) * 1000) / 1000 : undefined,
            ejected: h?.ejected ?? false,
            reason: h?.reason,
            ejectedForMs: Math.round(h?.ejectedForMs ?? 0),
            ejections: h?.totalEjections ?? 0,
          });
        }
      }
    }
    return out;
  }
}

/** The counter of requests `backend` sends to `to`, made on first use and kept. */
function failoverCount(counts: Map<string, FailoverCount>, backend: string, to: string): FailoverCount {
  const key = `${backend}\0${to}`;
  let c = counts.get(key);
  if (c === undefined) counts.set(key, (c = { backend, to, count: 0 }));
  return c;
}

/** How the balance layer reads a request's affinity key; undefined: none (most balancers). */

function hashOnOf(cfg: BalancingConfig): HashOn | undefined {
  return cfg.balancer === 'RingHash' || cfg.balancer === 'Maglev' ? cfg.hashOn : undefined;
}
