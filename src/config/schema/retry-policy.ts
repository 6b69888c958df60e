// The Trellis `RetryPolicy` kind: whether a route's retries may replay non-idempotent
// requests, and how much body is kept for a replay.
import { Type, type Static } from '@sinclair/typebox';
import { Metadata, strict, TRELLIS_API_VERSION } from './common.js';
import { PolicyTargetRef } from './policy-target.js';

/**
 * Schema of the Trellis `RetryPolicy` kind: what the Gateway API's retry stanza has no
 * word for, the safety limits of replaying a request.
 */
export const RetryPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('RetryPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        // Replaying a POST or PATCH can do its work twice; only the route's owner can say it is safe.
        retryNonIdempotent: Type.Optional(Type.Boolean({ default: false })),
        // Bodies up to this size are kept for a replay; bigger ones are streamed and not retried.
        maxBufferedBodyBytes: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024, default: 65536 })),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'RetryPolicy',
    description: 'Trellis policy: whether the retries of an HTTPRoute (or one rule) may replay non-idempotent requests, and the body size kept for a replay.',
  },
);

/** A `RetryPolicy` as written (defaults applied). */
export type RetryPolicyResource = Static<typeof RetryPolicySchema>;
