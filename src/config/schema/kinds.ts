// Every kind Trellis reads, by apiVersion and kind: what the loader validates each
// resource of a config file against.
import type { TSchema } from '@sinclair/typebox';
import { GATEWAY_API_ALPHA_VERSION, GATEWAY_API_BETA_VERSION, GATEWAY_API_VERSION, GATEWAY_X_API_VERSION, TRELLIS_API_VERSION } from './common.js';
import { MeshSchema } from './mesh.js';
import { HTTPRouteSchema, type HTTPRouteResource } from './http-route.js';
import { GRPCRouteSchema, type GRPCRouteResource } from './grpc-route.js';
import { TCPRouteSchema, type TCPRouteResource } from './tcp-route.js';
import { FaultInjectionSchema, type FaultInjectionResource } from './fault-injection.js';
import { RetryPolicySchema, type RetryPolicyResource } from './retry-policy.js';
import { BackendTrafficPolicySchema, type BackendTrafficPolicyResource } from './backend-traffic-policy.js';
import { BackendPolicySchema, type BackendPolicyResource } from './backend-policy.js';
import { ReferenceGrantSchema } from './reference-grant.js';
import { RateLimitPolicySchema } from './rate-limit-policy.js';
import { PeerAuthenticationSchema } from './peer-authentication.js';
import { RequestAuthenticationSchema } from './request-authentication.js';
import { AuthorizationPolicySchema } from './authorization-policy.js';
import { GatewaySchema, SecretSchema } from './gateway.js';
import { TLSRouteSchema } from './tls-route.js';
import { ExternalServiceSchema } from './external-service.js';

/** Every kind Trellis reads, keyed by `<apiVersion>/<kind>`. */
export const RESOURCE_KINDS: Readonly<Record<string, { kind: string; apiVersion: string; schema: TSchema }>> = {
  [`${TRELLIS_API_VERSION}/Mesh`]: { kind: 'Mesh', apiVersion: TRELLIS_API_VERSION, schema: MeshSchema },
  [`${GATEWAY_API_VERSION}/HTTPRoute`]: { kind: 'HTTPRoute', apiVersion: GATEWAY_API_VERSION, schema: HTTPRouteSchema },
  [`${GATEWAY_API_VERSION}/GRPCRoute`]: { kind: 'GRPCRoute', apiVersion: GATEWAY_API_VERSION, schema: GRPCRouteSchema },
  [`${GATEWAY_API_ALPHA_VERSION}/TCPRoute`]: { kind: 'TCPRoute', apiVersion: GATEWAY_API_ALPHA_VERSION, schema: TCPRouteSchema },
  [`${GATEWAY_API_ALPHA_VERSION}/TLSRoute`]: { kind: 'TLSRoute', apiVersion: GATEWAY_API_ALPHA_VERSION, schema: TLSRouteSchema },
  [`${TRELLIS_API_VERSION}/FaultInjection`]: { kind: 'FaultInjection', apiVersion: TRELLIS_API_VERSION, schema: FaultInjectionSchema },
  [`${TRELLIS_API_VERSION}/RetryPolicy`]: { kind: 'RetryPolicy', apiVersion: TRELLIS_API_VERSION, schema: RetryPolicySchema },
  [`${GATEWAY_X_API_VERSION}/XBackendTrafficPolicy`]: { kind: 'XBackendTrafficPolicy', apiVersion: GATEWAY_X_API_VERSION, schema: BackendTrafficPolicySchema },
  [`${TRELLIS_API_VERSION}/BackendPolicy`]: { kind: 'BackendPolicy', apiVersion: TRELLIS_API_VERSION, schema: BackendPolicySchema },
  [`${TRELLIS_API_VERSION}/RateLimitPolicy`]: { kind: 'RateLimitPolicy', apiVersion: TRELLIS_API_VERSION, schema: RateLimitPolicySchema },
  [`${GATEWAY_API_VERSION}/Gateway`]: { kind: 'Gateway', apiVersion: GATEWAY_API_VERSION, schema: GatewaySchema },
  'v1/Secret': { kind: 'Secret', apiVersion: 'v1', schema: SecretSchema },
  [`${GATEWAY_API_BETA_VERSION}/ReferenceGrant`]: { kind: 'ReferenceGrant', apiVersion: GATEWAY_API_BETA_VERSION, schema: ReferenceGrantSchema },
  [`${TRELLIS_API_VERSION}/PeerAuthentication`]: { kind: 'PeerAuthentication', apiVersion: TRELLIS_API_VERSION, schema: PeerAuthenticationSchema },
  [`${TRELLIS_API_VERSION}/RequestAuthentication`]: { kind: 'RequestAuthentication', apiVersion: TRELLIS_API_VERSION, schema: RequestAuthenticationSchema },
  [`${TRELLIS_API_VERSION}/AuthorizationPolicy`]: { kind: 'AuthorizationPolicy', apiVersion: TRELLIS_API_VERSION, schema: AuthorizationPolicySchema },
  [`${TRELLIS_API_VERSION}/ExternalService`]: { kind: 'ExternalService', apiVersion: TRELLIS_API_VERSION, schema: ExternalServiceSchema },
};

/** The kinds that attach to routes or services through targetRefs. */
export const POLICY_KINDS: ReadonlySet<string> = new Set(['FaultInjection', 'RetryPolicy', 'XBackendTrafficPolicy', 'BackendPolicy']);

/** Any route kind Trellis reads. */
export type RouteResource = HTTPRouteResource | GRPCRouteResource | TCPRouteResource;
/** Any of the policy kinds. */
export type PolicyResource = FaultInjectionResource | RetryPolicyResource | BackendTrafficPolicyResource | BackendPolicyResource;
