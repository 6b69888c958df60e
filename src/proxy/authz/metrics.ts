// Authorization's metrics, on the proxy's registry (so they carry proxy_service and
// proxy_id like every other series). Labels come from config only: the policy is
// `<namespace>/<name>` of a policy in the snapshot (a refusal by default names the
// service's ALLOW policies), the action one of three, the protocol http or tcp.
import { Counter, type Registry } from '../../telemetry/prom-client-parts.js';
import type { Verdict } from './engine.js';

export type AuthzProtocol = 'http' | 'tcp';

export class AuthzMetrics {
  readonly #denied: Counter;
  readonly #dryRun: Counter;
  readonly #audited: Counter;

  constructor(registry: Registry) {
    this.#denied = new Counter({
      name: 'trellis_authz_denials_total',
      help: 'Requests (http) and connections (tcp) an AuthorizationPolicy refused, by policy (<namespace>/<name>; refused because no ALLOW policy allowed it: the ALLOW policies, comma-separated) and its action (DENY, ALLOW).',
      labelNames: ['policy', 'action', 'protocol'],
      registers: [registry],
    });
    this.#dryRun = new Counter({
      name: 'trellis_authz_dry_run_denials_total',
      help: 'Requests and connections a dryRun AuthorizationPolicy would have refused (let through), by policy and action.',
      labelNames: ['policy', 'action', 'protocol'],
      registers: [registry],
    });
    this.#audited = new Counter({
      name: 'trellis_authz_audits_total',
      help: 'Requests and connections an AUDIT AuthorizationPolicy matched, by policy.',
      labelNames: ['policy', 'protocol'],
      registers: [registry],
    });
  }

  /** Counts what the engine said of one request or connection. */
  count(v: Verdict, protocol: AuthzProtocol): void {
    if (v.result === 'denied') this.#denied.labels(v.policy, v.action, protocol).inc();
    else if (v.result === 'dry-run-denied') this.#dryRun.labels(v.policy, v.action, protocol).inc();
    else this.#audited.labels(v.policy, protocol).inc();
  }
}
