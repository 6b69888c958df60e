// The authorization layer of the inbound stack: right inside the identity layer (and
// the request authentication one), it judges a known caller before anything reaches
// the app. A refusal is `TRELLIS_E_FORBIDDEN` through the one rescue point (403, or
// PERMISSION_DENIED for a gRPC call); a dry-run refusal or an audit goes on, noted for
// the access log, and an allowed one keeps the note of the policy that let it in (its
// trace span names it). With no policy for the service it costs one property read.
import type { Layer } from '../stack/layer.js';
import { principalOf, type AuthzEngine } from './engine.js';
import type { AuthzMetrics } from './metrics.js';

export interface AuthorizationParts {
  /** This proxy's service (the `service` of the error). */
  readonly service: string;
  /** The port the listener serves (a multi-port service's port; else the app's). */
  readonly port: number;
  /** The engine of the snapshot in force. */
  readonly engine: () => AuthzEngine;
  readonly metrics: AuthzMetrics;
}

export function authorization(p: AuthorizationParts): Layer {
  return (next) => ({
    request(ex) {
      const engine = p.engine();
      if (engine.empty) {
        next(ex);
        return;
      }
      const verdict = engine.checkHttp(ex, p.port);
      if (verdict === undefined) {
        // Who let it in, for the trace span (a note made once per snapshot: no allocation).
        ex.authz = engine.allowed;
      } else {
        ex.authz = verdict;
        p.metrics.count(verdict, 'http');
        if (verdict.result === 'denied') {
          ex.fail('TRELLIS_E_FORBIDDEN', { service: p.service, principal: ex.peer === undefined ? 'an unidentified caller' : principalOf(ex.peer) });
          return;
        }
      }
      next(ex);
    },
  });
}
