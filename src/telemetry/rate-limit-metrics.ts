// A sidecar's rate-limit metrics: refusals by policy and limit (labels from the config,
// never a header value or a caller's claim), and, read at scrape time, the keys each
// keyed limit tracks and the quota each global limit holds.
import * as client from './prom-client-parts.js';
import type { Counter } from './prom-client-parts.js';

/** What the metrics read of a limit at scrape time (src/proxy/ratelimit/rate-limits.ts's LimitState). */
export interface RateLimitView {
  readonly spec: { readonly policy: string; readonly name: string; readonly global?: boolean };
  readonly table: { readonly size: number; readonly evictions: number } | undefined;
  readonly quotaPerSecond: number | undefined;
}

export class RateLimitMetrics {
  readonly #refused: Counter;

  /** `limits`: the limits in force, read at scrape time. */
  constructor(registry: client.Registry, limits: () => readonly RateLimitView[]) {
    this.#refused = new client.Counter({
      name: 'trellis_http_rate_limited_total',
      help: 'Requests refused 429 by a RateLimitPolicy, by policy (<namespace>/<name>) and limit.',
      labelNames: ['policy', 'limit'],
      registers: [registry],
    });
    new client.Gauge({
      name: 'trellis_rate_limit_keys',
      help: 'Keys (callers or header values) a keyed rate limit tracks now; at most its maxKeys.',
      labelNames: ['policy', 'limit'],
      registers: [registry],
      collect() {
        this.reset();
        for (const l of limits()) if (l.table !== undefined) this.labels(l.spec.policy, l.spec.name).set(l.table.size);
      },
    });
    new client.Gauge({
      name: 'trellis_rate_limit_key_evictions',
      help: 'Keys a keyed rate limit dropped to make room (least recently used first) since its policy took effect.',
      labelNames: ['policy', 'limit'],
      registers: [registry],
      collect() {
        this.reset();
        for (const l of limits()) if (l.table !== undefined) this.labels(l.spec.policy, l.spec.name).set(l.table.evictions);
      },
    });
    new client.Gauge({
      name: 'trellis_rate_limit_quota_requests_per_second',
      help: "This proxy's share of a global rate limit, as the control plane last sent it.",
      labelNames: ['policy', 'limit'],
      registers: [registry],
      collect() {
        this.reset();
        for (const l of limits()) if (l.quotaPerSecond !== undefined) this.labels(l.spec.policy, l.spec.name).set(l.quotaPerSecond);
      },
    });
  }

  /** A request was refused. */
  refused(policy: string, limit: string): void {
    this.#refused.labels(policy, limit).inc();
  }
}
