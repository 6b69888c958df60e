// The one schema source for Trellis configuration resources, written in TypeBox, one
// file per kind under schema/ (shared scalars and metadata in schema/common.ts). From
// it come the validator (src/config/schema-errors.ts), the TypeScript types (the
// `Static<>` exports), the JSON Schema (schema/trellis.schema.json) and, later, the
// CRDs. Change a resource there and nowhere else; this file is the index callers
// import from.
//
// The kinds: `Mesh` (trellis.dev/v1alpha1), the services of one mesh; the Gateway API
// routes `HTTPRoute`, `GRPCRoute` (gateway.networking.k8s.io/v1) and `TCPRoute`
// (v1alpha2), the GAMMA way: parentRefs name a mesh Service; and the policies
// `FaultInjection`, `RetryPolicy`, `BackendPolicy` (Trellis) and `XBackendTrafficPolicy`
// (Gateway API, experimental), `RateLimitPolicy` (Trellis; loaded as a list of its
// own, its targetRefs being optional) and `RequestAuthentication` (Trellis, Istio's
// shape). Unknown fields are errors everywhere, so a typo is
// refused with its path instead of being silently ignored.
//
// `description` strings double as the "what would be right" half of error messages
// ("must be <description>"), so write them as noun phrases.
export {
  DnsLabel,
  GATEWAY_API_ALPHA_VERSION,
  GATEWAY_API_BETA_VERSION,
  GATEWAY_API_VERSION,
  GATEWAY_X_API_VERSION,
  TRELLIS_API_VERSION,
  type Metadata,
} from './schema/common.js';
export {
  MESH_DEFAULTS,
  OPAQUE_PORTS,
  defaultProtocol,
  MeshSchema,
  type AccessLogSpec,
  type HealthCheck,
  type MeshResource,
  type MeshService,
  type MeshSpec,
  type ProxyLimitsSpec,
  type ServicePort,
  type ServiceVersion,
  type TracingSpec,
  type Upstream,
} from './schema/mesh.js';
export type { BackendRef, HeaderMatch, ParentRef } from './schema/route-common.js';
export {
  HTTPRouteSchema,
  type HTTPMethod,
  type HTTPRouteFilter,
  type HTTPRouteMatch,
  type HTTPRouteResource,
  type HTTPRouteRule,
  type HTTPRouteSpec,
  type PathMatch,
  type QueryParamMatch,
} from './schema/http-route.js';
export { GRPCRouteSchema, type GRPCRouteResource } from './schema/grpc-route.js';
export { GatewaySchema, SecretSchema, type GatewayResource, type SecretResource, type ListenerSpec } from './schema/gateway.js';
export { TLSRouteSchema, type TLSRouteResource } from './schema/tls-route.js';
export { TCPRouteSchema, type TCPRouteResource } from './schema/tcp-route.js';
export type { PolicyTargetRef } from './schema/policy-target.js';
export { FaultInjectionSchema, GRPC_STATUS_CODES, type FaultInjectionResource } from './schema/fault-injection.js';
export { RetryPolicySchema, type RetryPolicyResource } from './schema/retry-policy.js';
export { BackendTrafficPolicySchema, type BackendTrafficPolicyResource } from './schema/backend-traffic-policy.js';
export { BALANCER_TYPES, BackendPolicySchema, type BackendPolicyResource } from './schema/backend-policy.js';
export { DEFAULT_MAX_KEYS, RateLimitPolicySchema, type RateLimitPolicyResource } from './schema/rate-limit-policy.js';
export { ReferenceGrantSchema, type ReferenceGrantResource } from './schema/reference-grant.js';
export { MTLS_MODES, MtlsModeSchema, PeerAuthenticationSchema, type MtlsModeSpec, type PeerAuthenticationResource } from './schema/peer-authentication.js';
export {
  DEFAULT_JWT_ALGORITHMS,
  JWT_ALGORITHMS,
  RequestAuthenticationSchema,
  type JwtRuleSpec,
  type RequestAuthenticationResource,
} from './schema/request-authentication.js';
export { AUTHORIZATION_ACTIONS, AuthorizationPolicySchema, type AuthorizationPolicyResource } from './schema/authorization-policy.js';
export { POLICY_KINDS, RESOURCE_KINDS, type PolicyResource, type RouteResource } from './schema/kinds.js';
