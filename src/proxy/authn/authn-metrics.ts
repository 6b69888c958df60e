// The counters of end-user authentication, registered on the proxy's registry (so they
// are in its /metrics). Every label value is one of a fixed set the code names: a refusal
// reason, a cache outcome, a fetch result. Nothing of a token, an issuer or a URL.
import * as client from '../../telemetry/prom-client-parts.js';
import type { Counter } from '../../telemetry/prom-client-parts.js';
import type { JwtRefusal } from './jwt-authenticator.js';

export class AuthnMetrics {
  readonly #refused: Counter;
  readonly #verified: Counter;
  readonly #fetches: Counter;

  constructor(registry: client.Registry) {
    this.#refused = new client.Counter({
      name: 'trellis_proxy_jwt_refused_total',
      help: 'Requests refused 401 because of their JWT, by reason (malformed, too-large, alg-not-allowed, unknown-issuer, unknown-kid, bad-signature, expired, not-yet-valid, wrong-audience, bad-claims, jwks-unavailable).',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.#verified = new client.Counter({
      name: 'trellis_proxy_jwt_verified_total',
      help: 'Requests whose JWT was accepted; cache is "hit" (verified before, still valid) or "miss" (signature checked now).',
      labelNames: ['cache'],
      registers: [registry],
    });
    this.#fetches = new client.Counter({
      name: 'trellis_proxy_jwks_fetches_total',
      help: 'Fetches of a RequestAuthentication jwksUri, by result (changed, unchanged, failed).',
      labelNames: ['result'],
      registers: [registry],
    });
  }

  refused(reason: JwtRefusal): void {
    this.#refused.labels(reason).inc();
  }

  verified(hit: boolean): void {
    this.#verified.labels(hit ? 'hit' : 'miss').inc();
  }

  fetched(result: 'changed' | 'unchanged' | 'failed'): void {
    this.#fetches.labels(result).inc();
  }
}
