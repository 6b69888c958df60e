// The Gateway API `TCPRoute` kind (gateway.networking.k8s.io/v1alpha2), the GAMMA way:
// its parentRefs name a tcp Service.
import { Type, type Static } from '@sinclair/typebox';
import { GATEWAY_API_ALPHA_VERSION, Metadata, strict } from './common.js';
import { BackendRef, ParentRef } from './route-common.js';

// A TCP connection carries nothing to match on, so one rule is all a TCPRoute can use.
const TCPRouteRule = Type.Object({ backendRefs: Type.Array(BackendRef, { minItems: 1, maxItems: 16 }) }, strict);

/** Schema of the Gateway API `TCPRoute` kind (v1alpha2). */
export const TCPRouteSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_ALPHA_VERSION),
    kind: Type.Literal('TCPRoute'),
    metadata: Metadata,
    spec: Type.Object(
      {
        parentRefs: Type.Array(ParentRef, { minItems: 1, maxItems: 32 }),
        rules: Type.Array(TCPRouteRule, { minItems: 1, maxItems: 1 }),
      },
      strict,
    ),
  },
  { ...strict, title: 'TCPRoute', description: 'Gateway API TCPRoute; in the mesh its parentRefs name a tcp Service.' },
);

/** A Gateway API `TCPRoute` (v1alpha2). */
export type TCPRouteResource = Static<typeof TCPRouteSchema>;
