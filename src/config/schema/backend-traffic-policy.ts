// The Gateway API `XBackendTrafficPolicy` kind (experimental, GEP-3388): the retry
// budget of a Service.
import { Type, type Static } from '@sinclair/typebox';
import { GATEWAY_X_API_VERSION, gatewayDuration, Metadata, strict } from './common.js';
import { PolicyTargetRef } from './policy-target.js';

/** Schema of the Gateway API `XBackendTrafficPolicy` kind (GEP-3388), its retryConstraint only. */
export const BackendTrafficPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_X_API_VERSION),
    kind: Type.Literal('XBackendTrafficPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        retryConstraint: Type.Optional(
          Type.Object(
            {
              budget: Type.Optional(
                Type.Object(
                  {
                    percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, default: 20, description: 'a percentage from 0 to 100' })),
                    interval: Type.Optional(gatewayDuration('the window over which requests count, 1s to 1h; default 10s')),
                  },
                  strict,
                ),
              ),
              minRetryRate: Type.Optional(
                Type.Object(
                  {
                    count: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000, default: 10, description: 'a number of retries' })),
                    interval: Type.Optional(gatewayDuration('the period of count; default 1s')),
                  },
                  strict,
                ),
              ),
            },
            strict,
          ),
        ),
      },
      strict,
    ),
  },
  { ...strict, title: 'XBackendTrafficPolicy', description: 'Gateway API BackendTrafficPolicy (experimental): the retry budget of a Service.' },
);

/** An `XBackendTrafficPolicy` as written. */
export type BackendTrafficPolicyResource = Static<typeof BackendTrafficPolicySchema>;
