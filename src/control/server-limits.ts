// The limits the control plane's one HTTP server (admin API, dashboard, proxy stream)
// holds every client to, as src/proxy/listeners/limits.ts does for the proxies'
// listeners: connections, how long a request may take to arrive, how long a proxy
// stream may go without a hello. Each has a default with its reason; `trellis control`
// takes each as a flag. Anything that can reach the control plane's port (any process on
// the machine, locally) is held to them before it has shown a credential.
import { TrellisError } from '../errors.js';

/** The limits of the control plane's HTTP server. */
export interface ControlServerLimits {
  /**
   * Open connections (proxy streams, admin and dashboard requests); more are closed as
   * they arrive (Node's server.maxConnections) and counted. 10,000: the bench's scale
   * run holds 1,000 proxies with one stream each (bench/scale.ts), ten times that leaves
   * room for dashboards and CLIs, and is the proxies' maxConnectionsPerListener: a
   * local flood cannot take every file descriptor and lock the proxies out.
   */
  readonly maxConnections: number;
  /**
   * Longest wait for a request's head, from its connection or its first byte (then 408
   * and close). Node's headersTimeout is 60 s, nginx's client_header_timeout 60 s; 30 s,
   * as the proxies' requestHeaderTimeoutMs: slow-header clients hold a connection half as long.
   */
  readonly headersTimeoutMs: number;
  /**
   * Longest wait for a whole request (head and body; then 408 and close). Node's
   * requestTimeout is 300 s. It ends once the request has arrived: a long answer (none
   * today; the dashboard polls) is not cut, and an upgraded proxy stream leaves the
   * HTTP server's timers. The largest body, an OTLP batch of 4 MiB, needs a fraction of
   * that on any link that reaches the control plane; 60 s.
   */
  readonly requestTimeoutMs: number;
  /**
   * A proxy stream whose hello is not accepted this long after its upgrade is ended with
   * a protocol error and counted. A proxy sends its hello with the upgrade; the rest is
   * the control plane's own work (a registration storm's queue, a TokenReview). Envoy's
   * listener_filters_timeout, its wait for a connection's first bytes, is 15 s; 10 s.
   */
  readonly helloTimeoutMs: number;
}

/** Defaults (see each field for the reason). */
export const DEFAULT_CONTROL_SERVER_LIMITS: ControlServerLimits = Object.freeze({
  maxConnections: 10_000,
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 60_000,
  helloTimeoutMs: 10_000,
});

/** The `trellis control` flag of each limit (what an error names). */
export const CONTROL_LIMIT_FLAGS: Readonly<Record<keyof ControlServerLimits, string>> = Object.freeze({
  maxConnections: '--max-connections',
  headersTimeoutMs: '--header-timeout',
  requestTimeoutMs: '--request-timeout',
  helloTimeoutMs: '--hello-timeout',
});

/**
 * Defaults with `overrides` applied (absent or undefined fields keep their default).
 * Throws TRELLIS_E_USAGE on a value that is not a positive whole number (none of them
 * can be turned off) and on a header timeout longer than the request timeout (Node
 * refuses that too).
 */
export function controlServerLimits(overrides: Partial<ControlServerLimits> = {}): ControlServerLimits {
  const out: Record<string, number> = { ...DEFAULT_CONTROL_SERVER_LIMITS };
  for (const k of Object.keys(DEFAULT_CONTROL_SERVER_LIMITS) as (keyof ControlServerLimits)[]) {
    const v = overrides[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `${CONTROL_LIMIT_FLAGS[k]} (${k}) must be a positive whole number, got ${JSON.stringify(v)}` });
    out[k] = v;
  }
  const limits = out as unknown as ControlServerLimits;
  if (limits.headersTimeoutMs > limits.requestTimeoutMs)
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `--header-timeout (${limits.headersTimeoutMs} ms) must not be longer than --request-timeout (${limits.requestTimeoutMs} ms)`,
    });
  return Object.freeze(limits);
}

/**
 * How often Node's server looks for requests over their timeouts. Its default, 30 s,
 * would let a 30 s header timeout run to 60 s; a tenth of the shorter timeout, between
 * 10 ms and 1 s, keeps the overrun small. A check walks only the connections still
 * receiving a request (not upgraded streams, not idle keep-alive ones).
 */
export function connectionsCheckingIntervalMs(limits: ControlServerLimits): number {
  return Math.min(1000, Math.max(10, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10)));
}
