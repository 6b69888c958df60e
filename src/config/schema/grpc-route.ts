// The Gateway API `GRPCRoute` kind (gateway.networking.k8s.io/v1), the GAMMA way: its
// parentRefs name an http Service.
import { Type, type Static } from '@sinclair/typebox';
import { GATEWAY_API_VERSION, Metadata, strict } from './common.js';
import { BackendRef, HeaderMatch, HeaderModifier, ParentRef, RequestMirror, RouteHostnames } from './route-common.js';

// GRPCRoute has no redirect or URL rewrite: a gRPC client follows neither.
const GRPCRouteFilter = Type.Object(
  {
    type: Type.Union([Type.Literal('RequestHeaderModifier'), Type.Literal('ResponseHeaderModifier'), Type.Literal('RequestMirror')]),
    requestHeaderModifier: Type.Optional(HeaderModifier),
    responseHeaderModifier: Type.Optional(HeaderModifier),
    requestMirror: Type.Optional(RequestMirror),
  },
  strict,
);

const GRPCBackendRef = Type.Object({ ...BackendRef.properties, filters: Type.Optional(Type.Array(GRPCRouteFilter, { maxItems: 16 })) }, strict);

const GRPCMethodMatch = Type.Object(
  {
    type: Type.Optional(Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression')], { default: 'Exact' })),
    service: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    method: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  },
  strict,
);

const GRPCRouteMatch = Type.Object({ method: Type.Optional(GRPCMethodMatch), headers: Type.Optional(Type.Array(HeaderMatch, { maxItems: 16 })) }, strict);

const GRPCRouteRule = Type.Object(
  {
    matches: Type.Optional(Type.Array(GRPCRouteMatch, { maxItems: 64 })),
    filters: Type.Optional(Type.Array(GRPCRouteFilter, { maxItems: 16 })),
    backendRefs: Type.Array(GRPCBackendRef, { minItems: 1, maxItems: 16 }),
  },
  strict,
);

/** Schema of the Gateway API `GRPCRoute` kind. */
export const GRPCRouteSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_VERSION),
    kind: Type.Literal('GRPCRoute'),
    metadata: Metadata,
    spec: Type.Object(
      {
        parentRefs: Type.Array(ParentRef, { minItems: 1, maxItems: 32 }),
        hostnames: RouteHostnames,
        rules: Type.Array(GRPCRouteRule, { minItems: 1, maxItems: 16 }),
      },
      strict,
    ),
  },
  { ...strict, title: 'GRPCRoute', description: 'Gateway API GRPCRoute; in the mesh its parentRefs name an http Service.' },
);

/** A Gateway API `GRPCRoute`. */
export type GRPCRouteResource = Static<typeof GRPCRouteSchema>;
