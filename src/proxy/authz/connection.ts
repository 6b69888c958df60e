// L4 authorization: the check an inbound TCP connection (a declared tcp service, or a
// detected one that is not HTTP) passes where it is accepted, before the connection to
// the app is opened. Only the caller and the port exist at L4 (engine.ts says how HTTP
// rules read there). A refused connection is closed without a byte to the app, counted
// (trellis_authz_denials_total{protocol="tcp"}) and logged with the policy's name.
import type { AccessLog } from '../../telemetry/access-log.js';
import type { WorkloadName } from '../../security/spiffe.js';
import { principalOf, type AuthzEngine } from './engine.js';
import type { AuthzMetrics } from './metrics.js';

export interface ConnectionCheck {
  readonly engine: AuthzEngine;
  readonly metrics: AuthzMetrics;
  readonly accessLog: AccessLog;
  /** This proxy's service, the destination of the log line. */
  readonly destination: string;
}

/**
 * Whether a connection from `peer` (undefined: not known; every TCP peer until mTLS
 * gives one) on `port` may reach the app. Counts and logs what the engine said.
 */
export function authorizeConnection(c: ConnectionCheck, peer: WorkloadName | undefined, port: number): boolean {
  if (c.engine.empty) return true;
  const verdict = c.engine.checkTcp(peer, port);
  if (verdict === undefined) return true;
  c.metrics.count(verdict, 'tcp');
  if (c.accessLog.enabled) {
    c.accessLog.write({
      ts: new Date().toISOString(),
      direction: 'inbound',
      protocol: 'tcp',
      source: peer === undefined ? 'unknown' : principalOf(peer),
      destination: c.destination,
      port,
      error: verdict.result === 'denied' ? 'forbidden' : undefined,
      authz_policy: verdict.policy,
      authz_action: verdict.action,
      authz_result: verdict.result,
    });
  }
  return verdict.result !== 'denied';
}
