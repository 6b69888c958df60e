// The Trellis `RateLimitPolicy` kind: token buckets a service's own sidecars hold for the
// requests that reach it, per route (or rule), per caller, per header value, or for the
// whole service; local to each replica, or one global rate shared by all of them
// (quotas the control plane rebalances; docs/contracts.md, "Rate limits").
import { Type, type Static } from '@sinclair/typebox';
import { DnsLabel, gatewayDuration, Metadata, strict, TRELLIS_API_VERSION } from './common.js';
import { PolicyTargetRef } from './policy-target.js';

/** Most keys a keyed limit tracks unless its `maxKeys` says otherwise. */
export const DEFAULT_MAX_KEYS = 10_000;

const RateLimit = Type.Object(
  {
    name: { ...DnsLabel, description: "the limit's name (a DNS label): the `limit` metric label and the policy name in the RateLimit headers" },
    requests: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'requests allowed per interval' }),
    interval: gatewayDuration('the period of `requests`, 1ms to 24h (e.g. 1s, 1m)'),
    burst: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000_000,
        description: 'the most requests taken at once after a quiet spell (the bucket size); default `requests`',
      }),
    ),
    key: Type.Optional(
      Type.Object(
        {
          source: Type.Optional(Type.Object({}, { ...strict, description: 'one bucket per calling workload (its mesh identity)' })),
          header: Type.Optional(
            Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", maxLength: 256, description: 'one bucket per value of this request header' }),
          ),
        },
        { ...strict, description: 'what gets a bucket of its own (exactly one of source, header); absent: one bucket for every request the limit covers' },
      ),
    ),
    maxKeys: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000,
        description: `a keyed limit: buckets kept at most, the least recently used dropped first (default ${DEFAULT_MAX_KEYS})`,
      }),
    ),
    global: Type.Optional(
      Type.Boolean({
        description:
          'true: `requests` per interval for all replicas of the service together, split into quotas by the control plane (no key); default false: per replica',
      }),
    ),
  },
  strict,
);

/** Schema of the Trellis `RateLimitPolicy` kind. */
export const RateLimitPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('RateLimitPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Optional(Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 })),
        limits: Type.Array(RateLimit, { minItems: 1, maxItems: 16 }),
        responseHeaders: Type.Optional(
          Type.Boolean({ description: 'true: allowed responses carry the RateLimit-Policy and RateLimit headers too (refusals always do); default false' }),
        ),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'RateLimitPolicy',
    description:
      'Trellis policy: token-bucket rate limits on the requests that reach a Service (or an HTTPRoute / GRPCRoute, or one rule of it); without targetRefs, every service of its namespace.',
  },
);

/** A `RateLimitPolicy` as written. */
export type RateLimitPolicyResource = Static<typeof RateLimitPolicySchema>;
