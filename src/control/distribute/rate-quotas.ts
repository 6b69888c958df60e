// Global rate limits without a call per request: the control plane splits each global
// limit's rate into one quota per connected replica of the service, and rebalances the
// quotas every RATE_REPORT_INTERVAL_MS from the demand each proxy reports on its stream
// (the requests that reached the limit there, refused ones included). Each proxy
// enforces its quota locally with a token bucket, so the sum of what replicas admit
// stays at the global rate, whatever way the load is spread.
//
// The split is max-min fair on demand (water-filling), as Envoy's rate limit quota
// service (RLQS) leaves to its server and as Doorman (YouTube's global client-side rate
// limiting) does: a replica asking for less than an equal share gets what it asks, the
// rest is shared by the busier ones, whatever nobody asks for is spread evenly (so an
// idle replica can take a sudden request at once), and a replica whose demand is met
// gets 20% headroom on top (see `allocate`). A replica that joins gets an equal share at
// once (its demand is not known yet) and the others shrink; one that leaves frees its
// share at once.
//
// When the control plane is down, proxies keep their last quotas: the total stays at
// most the global rate, though a replica whose load grew may refuse what another's idle
// quota would have taken, until the control plane is back.
import { RATE_REPORT_INTERVAL_MS, type RateDemandMessage, type RateQuotaMessage } from '../../api/protocol.js';
import { every, REAL_TIMER_CLOCK, type TimerClock } from '../../api/timer-clock.js';

/** A global limit of a service: the whole rate, per second, and the whole burst. */
export interface GlobalLimit {
  readonly id: string;
  readonly requestsPerSecond: number;
  readonly burst: number;
}

/** A connected sidecar of a service with global limits. */
export interface QuotaMember {
  readonly id: string;
  readonly service: string;
  send(msg: RateQuotaMessage): void;
}

/**
 * A replica whose demand is met gets this much more than it asked, so noise in its demand
 * is not refused. It is not taken from the busy replicas: their quotas assume the quiet
 * ones use what they asked, not their headroom (else 20% of every quiet replica's rate
 * would go unused: the first cut of this admitted 9.8% under the rate in the 3-replica test).
 */
const HEADROOM = 1.2;
/** A report older than this many intervals no longer counts: the replica's demand is unknown again. */
const STALE_INTERVALS = 3;

/**
 * Splits `total` among replicas by their demand (requests per second; undefined: not
 * known, treated as wanting an equal share or more): max-min fair (water-filling), then
 * what nobody asked for spread evenly, then each replica whose demand is met raised to
 * its demand × {@link HEADROOM}. Without that last step the quotas sum to `total`; with
 * it they may exceed it by the quiet replicas' headroom, which only an interval's jump
 * in their demand can use (and the next rebalance takes back).
 */
export function allocate(total: number, demands: readonly (number | undefined)[]): number[] {
  const n = demands.length;
  const out = new Array<number>(n).fill(0);
  if (n === 0 || !(total > 0)) return out;
  const wants = demands.map((d) => (d === undefined || !Number.isFinite(d) ? Number.POSITIVE_INFINITY : Math.max(0, d)));
  const order = wants.map((_, i) => i).sort((a, b) => wants[a]! - wants[b]!);
  let left = total;
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    const share = left / (n - k);
    const give = Math.min(wants[i]!, share);
    out[i] = give;
    left -= give;
  }
  // What nobody asked for, evenly: headroom for whoever's load rises first.
  if (left > 0) for (let i = 0; i < n; i++) out[i]! += left / n;
  for (let i = 0; i < n; i++) {
    const w = wants[i]!;
    if (Number.isFinite(w) && out[i]! >= w && out[i]! < w * HEADROOM) out[i] = w * HEADROOM;
  }
  return out;
}

export interface RateQuotasOptions {
  /** The global limits of a service (key), from the config in force. */
  limitsOf(service: string): readonly GlobalLimit[];
  /** The clock of the reports' age and of the rebalancing timer; real ones by default (tests pass a manual clock). */
  clock?: TimerClock;
  intervalMs?: number;
}

interface Demand {
  /** Requests per second, by limit id. */
  readonly rates: Map<string, number>;
  at: number;
}

export class RateQuotas {
  readonly #o: RateQuotasOptions;
  readonly #clock: TimerClock;
  readonly #intervalMs: number;
  /** Members by service, then by proxy id. */
  readonly #members = new Map<string, Map<string, QuotaMember>>();
  readonly #demand = new Map<string, Demand>();
  #stopTimer: (() => void) | undefined;

  constructor(o: RateQuotasOptions) {
    this.#o = o;
    this.#clock = o.clock ?? REAL_TIMER_CLOCK;
    this.#intervalMs = o.intervalMs ?? RATE_REPORT_INTERVAL_MS;
  }

  /** Rebalances every service each interval. */
  start(): void {
    this.#stopTimer ??= every(this.#clock, this.#intervalMs, () => this.rebalanceAll());
  }

  stop(): void {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
  }

  /** A sidecar connected (after its snapshot was sent): it and its service's other replicas get new quotas. */
  join(m: QuotaMember): void {
    let members = this.#members.get(m.service);
    if (members === undefined) this.#members.set(m.service, (members = new Map()));
    members.set(m.id, m);
    this.#demand.delete(m.id);
    this.rebalance(m.service);
  }

  /** A sidecar's stream closed: its share goes to the replicas left. */
  leave(id: string, service: string): void {
    const members = this.#members.get(service);
    if (members?.get(id) === undefined) return;
    members.delete(id);
    this.#demand.delete(id);
    if (members.size === 0) this.#members.delete(service);
    else this.rebalance(service);
  }

  /** A proxy's demand report. Unknown ids and nonsense numbers are ignored. */
  report(id: string, msg: RateDemandMessage): void {
    const seconds = msg.intervalMs / 1000;
    if (!(seconds > 0)) return;
    const rates = new Map<string, number>();
    for (const l of msg.limits) if (Number.isFinite(l.requests) && l.requests >= 0) rates.set(l.id, l.requests / seconds);
    this.#demand.set(id, { rates, at: this.#clock.now() });
  }

  rebalanceAll(): void {
    for (const service of this.#members.keys()) this.rebalance(service);
  }

  /** Splits each global limit of `service` among its connected replicas and sends each its quotas. */
  rebalance(service: string): void {
    const members = [...(this.#members.get(service)?.values() ?? [])];
    if (members.length === 0) return;
    const limits = this.#o.limitsOf(service);
    if (limits.length === 0) return;
    const fresh = this.#clock.now() - STALE_INTERVALS * this.#intervalMs;
    const quotas: RateQuotaMessage['quotas'][] = members.map(() => []);
    for (const limit of limits) {
      const demands = members.map((m) => {
        const d = this.#demand.get(m.id);
        return d === undefined || d.at < fresh ? undefined : d.rates.get(limit.id);
      });
      const shares = allocate(limit.requestsPerSecond, demands);
      shares.forEach((rate, i) => {
        const burst = limit.requestsPerSecond > 0 ? Math.max(1, (limit.burst * rate) / limit.requestsPerSecond) : 0;
        quotas[i]!.push({ id: limit.id, requestsPerSecond: rate, burst });
      });
    }
    for (const [i, m] of members.entries()) m.send({ type: 'rate-quota', quotas: quotas[i]! });
  }

  /** The quota-holding members of a service, for tests and views. */
  members(service: string): string[] {
    return [...(this.#members.get(service)?.keys() ?? [])];
  }
}
