// What leaves the mesh (Mesh outboundTrafficPolicy): under REGISTRY_ONLY a call to a
// host that is neither a service of the snapshot nor an ExternalService is refused, and
// each refusal is counted and, a few times a minute, logged with the host it named. The
// host is the caller's text (a Host header, up to the head limit): the log gets at most
// MAX_LOGGED_HOST characters of it, JSON-escaped (control characters and all), and the
// metric never carries it, only the protocol.
import { LogLimiter } from '../../log-limiter.js';
import { Counter, type Registry } from '../../telemetry/prom-client-parts.js';

/** Characters of a refused host a log line repeats. */
export const MAX_LOGGED_HOST = 128;
/** Refusal lines a minute; the rest are counted (the metric has every one). */
const LOG_PER_MINUTE = 10;

export type EgressProtocol = 'http' | 'tcp';

/** The REGISTRY_ONLY switch of the snapshot in force, its refusal counter and log. */
export class EgressPolicy {
  /** Set from each snapshot (`outboundTrafficPolicy`). */
  registryOnly = false;
  /**
   * The mesh's service keys (the snapshot's meshServices): a Host naming one of them that
   * this caller does not declare is no egress, and keeps its unknown-service answer.
   */
  meshServices: ReadonlySet<string> = new Set();
  readonly #refused: Counter;
  readonly #log: LogLimiter;
  readonly #id: string;

  constructor(registry: Registry, id: string, log: (line: string) => void, now?: () => number) {
    this.#id = id;
    this.#refused = new Counter({
      name: 'trellis_egress_refused_total',
      help: 'Calls to hosts neither the mesh nor an ExternalService declares, refused under outboundTrafficPolicy REGISTRY_ONLY, by protocol (http: 403 egress-refused; tcp: connection closed).',
      labelNames: ['protocol'],
      registers: [registry],
    });
    this.#refused.inc({ protocol: 'http' }, 0);
    this.#refused.inc({ protocol: 'tcp' }, 0);
    this.#log = new LogLimiter({
      perMinute: LOG_PER_MINUTE,
      log,
      ...(now ? { now } : {}),
      dropped: (n) => `proxy ${id}: ${n} more egress refusals not logged in the last minute`,
    });
  }

  /** Counts and logs one refusal of `host` (as the caller wrote it). */
  refused(protocol: EgressProtocol, host: string): void {
    this.#refused.inc({ protocol });
    this.#log.write(
      () =>
        `proxy ${this.#id}: outbound ${protocol} call to ${loggableHost(host)} refused: no service or ExternalService declares it (outboundTrafficPolicy REGISTRY_ONLY)`,
    );
  }
}

/** `host` as a log line may show it: at most MAX_LOGGED_HOST characters, JSON-quoted (escapes control characters and quotes). */
export function loggableHost(host: string): string {
  const cut = host.length > MAX_LOGGED_HOST ? `${host.slice(0, MAX_LOGGED_HOST)}…(${host.length} chars)` : host;
  // JSON escapes C0 controls, quotes and backslashes; DEL, C1 controls and the line separators are escaped too.
  return JSON.stringify(cut).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
