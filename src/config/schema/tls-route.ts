// The Gateway API `TLSRoute` kind (gateway.networking.k8s.io/v1alpha2): TLS connections a
// Gateway's TLS listener (tls.mode Passthrough) does not terminate, routed by the server
// name the client sent (SNI) to a backend, which terminates them itself.
import { Type, type Static } from '@sinclair/typebox';
import { GATEWAY_API_ALPHA_VERSION, Metadata, strict } from './common.js';
import { BackendRef, ParentRef } from './route-common.js';
import { ListenerHostname } from './gateway.js';

// A TLS connection shows nothing but its SNI before the handshake: the hostnames choose
// the route, and a rule only spreads connections over its backends by weight.
const TLSRouteRule = Type.Object(
  { name: Type.Optional(Type.String({ maxLength: 253 })), backendRefs: Type.Array(BackendRef, { minItems: 1, maxItems: 16 }) },
  strict,
);

/** Schema of the Gateway API `TLSRoute` kind (v1alpha2). */
export const TLSRouteSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_ALPHA_VERSION),
    kind: Type.Literal('TLSRoute'),
    metadata: Metadata,
    spec: Type.Object(
      {
        parentRefs: Type.Array(ParentRef, { minItems: 1, maxItems: 32 }),
        hostnames: Type.Optional(Type.Array(ListenerHostname, { maxItems: 16, description: 'the server names (SNI) it takes; absent: any' })),
        rules: Type.Array(TLSRouteRule, { minItems: 1, maxItems: 1 }),
      },
      strict,
    ),
  },
  { ...strict, title: 'TLSRoute', description: 'Gateway API TLSRoute: TLS passed through a Gateway TLS listener, routed by SNI.' },
);

/** A Gateway API `TLSRoute` (v1alpha2). */
export type TLSRouteResource = Static<typeof TLSRouteSchema>;
