// The control plane's own metrics (its admin server's /metrics): who was refused at
// the stream's door, and what the CA signed or refused. Labels are fixed words chosen
// here, never values a proxy sent.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { HealthStatus } from '../api/admin.js';
import * as client from '../telemetry/prom-client-parts.js';

/** Why a hello was refused for its credential. */
export type CredentialRefusal = 'missing' | 'wrong';
/** Why an admin API request was refused: no credential, or a wrong one. */
export type AdminRefusal = 'missing' | 'wrong';
/** Why a connection to the control plane's server was closed as it arrived. */
export type ConnectionRefusal = 'max-connections' | 'accept-error';
/** Why a CSR was not signed. */
export type CsrRefusal = 'invalid' | 'ca-unavailable' | 'busy';

export class ControlMetrics {
  readonly #registry = new client.Registry();
  readonly #helloRefused = new client.Counter({
    name: 'trellis_control_hello_refused_total',
    help: 'Proxies refused at hello for their bootstrap credential: reason="missing" or "wrong" (not the one of the instance they named).',
    labelNames: ['reason'],
    registers: [this.#registry],
  });
  readonly #adminRefused = new client.Counter({
    name: 'trellis_control_admin_refused_total',
    help: 'Admin API requests refused: reason="missing" (no credential, 401) or "wrong" (a credential that is not the admin token, 403).',
    labelNames: ['reason'],
    registers: [this.#registry],
  });
  readonly #connectionsRefused = new client.Counter({
    name: 'trellis_control_connections_refused_total',
    help: 'Connections to the control plane\'s server closed as they arrived: reason="max-connections" (over --max-connections) or "accept-error" (the system refused, e.g. out of file descriptors).',
    labelNames: ['reason'],
    registers: [this.#registry],
  });
  readonly #requestTimeouts = new client.Counter({
    name: 'trellis_control_request_timeouts_total',
    help: 'Requests to the control plane cut with 408: their head did not arrive within --header-timeout, or the whole request within --request-timeout.',
    registers: [this.#registry],
  });
  readonly #helloTimeouts = new client.Counter({
    name: 'trellis_control_hello_timeouts_total',
    help: 'Proxy streams ended because no hello was accepted within --hello-timeout of their upgrade.',
    registers: [this.#registry],
  });
  readonly #issued = new client.Counter({
    name: 'trellis_control_certificates_issued_total',
    help: 'Workload certificates the CA signed.',
    registers: [this.#registry],
  });
  readonly #csrRefused = new client.Counter({
    name: 'trellis_control_csr_refused_total',
    help: 'Certificate signing requests not signed: reason="invalid" (malformed, oversize, bad signature, asks for a name), "ca-unavailable" or "busy" (one already in progress on the stream).',
    labelNames: ['reason'],
    registers: [this.#registry],
  });
  readonly #healthTransitions = new client.Counter({
    name: 'trellis_control_health_transitions_total',
    help: "Changes of an instance's health status found by the control plane's health checks, by from and to (unknown, healthy, unhealthy).",
    labelNames: ['from', 'to'],
    registers: [this.#registry],
  });
  /** Seconds until the earliest of the CA's issuer and roots expires (set by the control plane). */
  readonly caExpiry = new client.Gauge({
    name: 'trellis_control_ca_expiry_seconds',
    help: "Seconds until the CA's issuer or a trust-bundle root expires, whichever is first.",
    registers: [this.#registry],
  });

  /**
   * How long the event loop was blocked (issue 17: a control plane that stalls delays
   * every ACK, admin answer and health check). Sampled every 10 ms by Node's own
   * monitor; each scrape reads the p50, p99 and max since the scrape before, and resets.
   */
  readonly #loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  readonly #loopDelayGauge = new client.Gauge({
    name: 'trellis_control_event_loop_delay_seconds',
    help: "The control plane's event-loop delay since the previous scrape: quantile 0.5, 0.99 and 1 (the longest block).",
    labelNames: ['quantile'],
    registers: [this.#registry],
    collect: () => this.#collectLoopDelay(),
  });

  /** What {@link countSkipped} reads at each scrape. */
  #skipped?: { readonly kinds: readonly string[]; readonly read: () => readonly { readonly kind: string }[] };
  readonly #skippedGauge = new client.Gauge({
    name: 'trellis_control_kubernetes_objects_skipped',
    help: 'Route, policy, Gateway and TLS Secret objects of the Kubernetes API left out for their problems (control --kubernetes logs each, with why), by kind.',
    labelNames: ['kind'],
    registers: [this.#registry],
    collect: () => {
      if (!this.#skipped) return;
      const counts = new Map(this.#skipped.kinds.map((k) => [k, 0]));
      for (const s of this.#skipped.read()) if (counts.has(s.kind)) counts.set(s.kind, counts.get(s.kind)! + 1);
      for (const [kind, n] of counts) this.#skippedGauge.set({ kind }, n);
    },
  });

  /** What {@link countUnlisted} reads at each scrape. */
  #unlisted?: { readonly kinds: readonly string[]; readonly read: () => readonly { readonly kind: string }[] };
  readonly #unlistedGauge = new client.Gauge({
    name: 'trellis_control_kubernetes_kind_unlisted',
    help: 'A security policy kind (AuthorizationPolicy, PeerAuthentication) control --kubernetes has never listed from the API (RBAC 403, CRD missing 404, errors): 1 while it has not, and every proxy is refused at hello meanwhile (fail closed); by kind.',
    labelNames: ['kind'],
    registers: [this.#registry],
    collect: () => {
      if (!this.#unlisted) return;
      const now = new Set(this.#unlisted.read().map((u) => u.kind));
      for (const kind of this.#unlisted.kinds) this.#unlistedGauge.set({ kind }, now.has(kind) ? 1 : 0);
    },
  });

  constructor() {
    this.#loopDelay.enable();
    for (const reason of ['missing', 'wrong']) this.#helloRefused.inc({ reason }, 0);
    for (const reason of ['missing', 'wrong']) this.#adminRefused.inc({ reason }, 0);
    for (const reason of ['invalid', 'ca-unavailable', 'busy']) this.#csrRefused.inc({ reason }, 0);
    for (const reason of ['max-connections', 'accept-error']) this.#connectionsRefused.inc({ reason }, 0);
  }

  helloRefused(reason: CredentialRefusal): void {
    this.#helloRefused.inc({ reason });
  }

  adminRefused(reason: AdminRefusal): void {
    this.#adminRefused.inc({ reason });
  }

  connectionRefused(reason: ConnectionRefusal): void {
    this.#connectionsRefused.inc({ reason });
  }

  /** A request's head or body did not arrive in time (408). */
  requestTimedOut(): void {
    this.#requestTimeouts.inc();
  }

  /** A proxy stream was ended for want of an accepted hello. */
  helloTimeout(): void {
    this.#helloTimeouts.inc();
  }

  issued(): void {
    this.#issued.inc();
  }

  /** An instance's health status changed (the labels are the model's three statuses, nothing else). */
  healthTransition(from: HealthStatus, to: HealthStatus): void {
    this.#healthTransitions.inc({ from, to });
  }

  csrRefused(reason: CsrRefusal): void {
    this.#csrRefused.inc({ reason });
  }

  /** Counts the Kubernetes objects `read` says are skipped, per kind of `kinds` (a fixed list: the labels). */
  countSkipped(kinds: readonly string[], read: () => readonly { readonly kind: string }[]): void {
    this.#skipped = { kinds, read };
  }

  /** Reports the security kinds `read` says never listed, per kind of `kinds` (a fixed list: the labels). */
  countUnlisted(kinds: readonly string[], read: () => readonly { readonly kind: string }[]): void {
    this.#unlisted = { kinds, read };
  }

  #collectLoopDelay(): void {
    const h = this.#loopDelay;
    // Before the first sample the histogram reads a huge min/max; report 0 then.
    const seconds = (ns: number): number => (h.count > 0 && Number.isFinite(ns) ? ns / 1e9 : 0);
    this.#loopDelayGauge.set({ quantile: '0.5' }, seconds(h.percentile(50)));
    this.#loopDelayGauge.set({ quantile: '0.99' }, seconds(h.percentile(99)));
    this.#loopDelayGauge.set({ quantile: '1' }, seconds(h.max));
    h.reset();
  }

  /** Stops the event-loop monitor (the control plane is closing). */
  close(): void {
    this.#loopDelay.disable();
  }

  get contentType(): string {
    return this.#registry.contentType;
  }

  text(): Promise<string> {
    return this.#registry.metrics();
  }
}
