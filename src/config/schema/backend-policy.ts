// The Trellis `BackendPolicy` kind: how the sidecars calling a Service (or one version
// of it) balance its endpoints, eject failing ones, bound their work and fail over.
import { Type, type Static } from '@sinclair/typebox';
import { gatewayDuration, Metadata, strict, TRELLIS_API_VERSION } from './common.js';
import { percent, PolicyTargetRef } from './policy-target.js';

const count = (description: string, max = 1_000_000) => Type.Integer({ minimum: 0, maximum: max, description });

/** The balancers a BackendPolicy may name; PeakEWMA is the default. */
export const BALANCER_TYPES = ['PeakEWMA', 'LeastRequest', 'RoundRobin', 'Random', 'RingHash', 'Maglev'] as const;

/**
 * Schema of the Trellis `BackendPolicy` kind: how the sidecars calling a Service (or one
 * version of it, by sectionName) balance its endpoints and watch their health.
 */
export const BackendPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('BackendPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        loadBalancer: Type.Optional(
          Type.Object(
            {
              type: Type.Optional(
                Type.Union(
                  BALANCER_TYPES.map((t) => Type.Literal(t)),
                  { default: 'PeakEWMA', description: `a balancer (${BALANCER_TYPES.join(', ')})` },
                ),
              ),
              // The affinity key of RingHash and Maglev; exactly one of the three.
              hashOn: Type.Optional(
                Type.Object(
                  {
                    header: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", maxLength: 256, description: 'a header name' })),
                    cookie: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", maxLength: 256, description: 'a cookie name' })),
                    source: Type.Optional(Type.Object({}, strict)),
                  },
                  strict,
                ),
              ),
            },
            strict,
          ),
        ),
        // Envoy's outlier_detection fields and defaults.
        outlierDetection: Type.Optional(
          Type.Object(
            {
              enabled: Type.Optional(Type.Boolean({ default: true })),
              consecutive5xx: Type.Optional(count('a number of responses in a row; 0 turns the detector off', 10_000)),
              consecutiveGatewayFailure: Type.Optional(count('a number of responses in a row; 0 turns the detector off', 10_000)),
              interval: Type.Optional(gatewayDuration('how often success rates are judged; default 10s')),
              baseEjectionTime: Type.Optional(gatewayDuration("the first ejection's length, multiplied by the times ejected; default 30s")),
              maxEjectionTime: Type.Optional(gatewayDuration('the longest ejection; default 300s')),
              maxEjectionPercent: Type.Optional(percent()),
              successRateMinimumHosts: Type.Optional(count('a number of endpoints')),
              successRateRequestVolume: Type.Optional(count('a number of requests per interval')),
              successRateStdevFactor: Type.Optional(count("Envoy's stdev_factor: the threshold is mean - factor/1000 x stdev")),
              failurePercentageThreshold: Type.Optional(percent()),
              failurePercentageMinimumHosts: Type.Optional(count('a number of endpoints')),
              failurePercentageRequestVolume: Type.Optional(count('a number of requests per interval')),
            },
            strict,
          ),
        ),
        // Envoy's circuit breakers that bound a request's work: over a limit, fail at once (503 overflow).
        circuitBreaker: Type.Optional(
          Type.Object(
            {
              maxConnections: Type.Optional(count('a number of connections open to the service; default 1024')),
              maxPendingRequests: Type.Optional(count('a number of requests waiting for a connection; default 1024')),
              maxRequests: Type.Optional(count('a number of requests in flight to the service; default 1024')),
              maxRetries: Type.Optional(count('a number of retries outstanding to the service; default 3')),
            },
            strict,
          ),
        ),
        // Where a version's requests go when none of its endpoints can take them: the
        // service's other versions (default), one named version, or nowhere (enabled: false).
        failover: Type.Optional(
          Type.Object(
            {
              enabled: Type.Optional(Type.Boolean({ default: true })),
              version: Type.Optional(Type.String({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63, description: 'a version name of the service' })),
            },
            strict,
          ),
        ),
        // Envoy's healthy_panic_threshold: below this share of usable endpoints, balance over all of them.
        panicThreshold: Type.Optional(percent()),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'BackendPolicy',
    description: 'Trellis policy: the balancer and the passive health checks (outlier detection) of a Service, or of one version of it (sectionName).',
  },
);

/** A `BackendPolicy` as written (defaults applied). */
export type BackendPolicyResource = Static<typeof BackendPolicySchema>;
