// The Trellis `FaultInjection` kind: delays and aborts on a route (or one rule) or a Service.
import { Type, type Static } from '@sinclair/typebox';
import { gatewayDuration, Metadata, strict, TRELLIS_API_VERSION } from './common.js';
import { percent, PolicyTargetRef } from './policy-target.js';

const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** The gRPC status codes by name, in numeric order (`UNAVAILABLE` is 14). */
export const GRPC_STATUS_CODES: readonly string[] = GRPC_CODES;

/** Schema of the Trellis `FaultInjection` kind: delays and aborts on a route or a service. */
export const FaultInjectionSchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('FaultInjection'),
    metadata: Metadata,
    spec: Type.Object(
      {
        targetRefs: Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 }),
        delay: Type.Optional(Type.Object({ fixedDelay: gatewayDuration('how long to hold the request'), percent: percent() }, strict)),
        // httpStatus and grpcStatus are both optional here so that "both given" is
        // reported by the route checks with a message, not as a union mismatch.
        abort: Type.Optional(
          Type.Object(
            {
              httpStatus: Type.Optional(Type.Integer({ minimum: 200, maximum: 599, description: 'an HTTP status code from 200 to 599' })),
              grpcStatus: Type.Optional(
                Type.Union(
                  GRPC_CODES.map((c) => Type.Literal(c)),
                  { description: `a gRPC status name (${GRPC_CODES.join(', ')})` },
                ),
              ),
              percent: percent(),
            },
            strict,
          ),
        ),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'FaultInjection',
    description: 'Trellis policy: delay or abort a share of the requests of an HTTPRoute (or one rule of it) or a Service.',
  },
);

/** A `FaultInjection` policy as written. */
export type FaultInjectionResource = Static<typeof FaultInjectionSchema>;
