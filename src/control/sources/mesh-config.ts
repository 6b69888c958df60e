import type { GatewayConfig } from '../../config/check-gateways.js';
import type { ExternalServiceConfig } from '../../config/check-external-services.js';
// The narrow view of the loaded mesh configuration that the control plane reads.
// `MeshConfig` from src/config/ is structurally assignable to `ControlConfig`; the
// control plane depends on these few fields only, so its compiler and tests can be fed
// plain objects.
import type { IdentityConfig } from '../../config/identity.js';
import type { BalancerType, MtlsMode, Protocol, ProxyLimitsSnapshot, RedirectStatus, TracingSnapshot } from '../../api/protocol.js';
import { serviceKey } from '../../api/names.js';

/** Active health check settings of one service (durations already in milliseconds). */
export type HealthConfig = {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
} & ({ readonly type: 'http'; readonly path: string /** Absent: any 2xx is healthy. */; readonly status?: number } | { readonly type: 'tcp' });

/** One port of a multi-port service: the number callers address, and how it speaks. */
export interface ServicePortConfig {
  readonly name?: string;
  readonly port: number;
  readonly protocol: Protocol;
}

export interface VersionConfig {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly replicas: number;
}

export interface ServiceConfig {
  readonly name: string;
  /** Absent: `default`. The service's mesh-wide key is {@link keyOf}. */
  readonly namespace?: string;
  readonly protocol: Protocol;
  readonly public?: { readonly port?: number };
  /** `service` is the called service's key (src/api/names.ts); `servicePort` a port of a multi-port service (absent: its first). */
  readonly upstreams: readonly { readonly service: string; readonly port?: number; readonly servicePort?: number }[];
  /** A multi-port service's ports, in the order written (the first is its default); absent: one port. */
  readonly ports?: readonly ServicePortConfig[];
  readonly health: HealthConfig;
  readonly versions: readonly VersionConfig[];
  /** HTTP/1.1 upgrade protocols the service accepts (lower case); absent: DEFAULT_UPGRADES. */
  readonly upgrades?: readonly string[];
  /**
   * The SPIFFE IDs its workloads present, when a discovery source knows them (on
   * Kubernetes: its pods' ServiceAccounts); absent: the service is its own account.
   */
  readonly identities?: readonly string[];
}

/** A service's mesh-wide key: `name`, or `name.namespace` outside default (src/api/names.ts). */
export function keyOf(service: { readonly name: string; readonly namespace?: string }): string {
  return serviceKey(service.name, service.namespace);
}

export interface HTTPRouteMatchConfig {
  readonly path?: { readonly type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; readonly value?: string };
  readonly method?: string;
  readonly headers?: readonly { readonly type?: 'Exact' | 'RegularExpression'; readonly name: string; readonly value: string }[];
  readonly queryParams?: readonly { readonly type?: 'Exact' | 'RegularExpression'; readonly name: string; readonly value: string }[];
}

interface HeaderModifierConfig {
  readonly set?: readonly { readonly name: string; readonly value: string }[];
  readonly add?: readonly { readonly name: string; readonly value: string }[];
  readonly remove?: readonly string[];
}

interface PathModifierConfig {
  readonly type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  readonly replaceFullPath?: string;
  readonly replacePrefixMatch?: string;
}

/** A Gateway API route filter: `type` names which one of the other fields applies. */
export interface RouteFilterConfig {
  readonly type: 'RequestHeaderModifier' | 'ResponseHeaderModifier' | 'RequestRedirect' | 'URLRewrite' | 'RequestMirror';
  readonly requestHeaderModifier?: HeaderModifierConfig;
  readonly responseHeaderModifier?: HeaderModifierConfig;
  readonly requestRedirect?: {
    readonly scheme?: 'http' | 'https';
    readonly hostname?: string;
    readonly path?: PathModifierConfig;
    readonly port?: number;
    readonly statusCode?: RedirectStatus;
  };
  readonly urlRewrite?: { readonly hostname?: string; readonly path?: PathModifierConfig };
  readonly requestMirror?: {
    readonly backendRef: { readonly name: string; readonly namespace?: string };
    readonly percent?: number;
    readonly fraction?: { readonly numerator: number; readonly denominator?: number };
  };
}

export interface BackendRefConfig {
  readonly name: string;
  /** Absent: the route's namespace. */
  readonly namespace?: string;
  readonly kind?: string;
  readonly group?: string;
  readonly port?: number;
  readonly weight?: number;
  readonly filters?: readonly RouteFilterConfig[];
}

export interface HTTPRouteRuleConfig {
  readonly name?: string;
  readonly timeouts?: { readonly request?: string; readonly backendRequest?: string };
  readonly retry?: { readonly codes?: readonly number[]; readonly attempts?: number; readonly backoff?: string };
  readonly matches?: readonly HTTPRouteMatchConfig[];
  readonly filters?: readonly RouteFilterConfig[];
  readonly backendRefs?: readonly BackendRefConfig[];
}

type ParentRefConfig = { readonly group?: string; readonly kind?: string; readonly name: string; readonly namespace?: string; readonly port?: number };
type RouteMetadata = { readonly name: string; readonly namespace?: string; readonly creationTimestamp?: string };

/** A Gateway API HTTPRoute, as far as the control plane reads it (no `kind`: an HTTPRoute). */
export interface HTTPRouteConfig {
  readonly kind?: 'HTTPRoute';
  readonly metadata: RouteMetadata;
  readonly spec: {
    readonly parentRefs: readonly ParentRefConfig[];
    readonly hostnames?: readonly string[];
    readonly rules: readonly HTTPRouteRuleConfig[];
  };
}

export interface GRPCRouteMatchConfig {
  readonly method?: { readonly type?: 'Exact' | 'RegularExpression'; readonly service?: string; readonly method?: string };
  readonly headers?: HTTPRouteMatchConfig['headers'];
}

/** A Gateway API GRPCRoute. */
export interface GRPCRouteConfig {
  readonly kind: 'GRPCRoute';
  readonly metadata: RouteMetadata;
  readonly spec: {
    readonly parentRefs: readonly ParentRefConfig[];
    readonly hostnames?: readonly string[];
    readonly rules: readonly {
      readonly matches?: readonly GRPCRouteMatchConfig[];
      readonly filters?: readonly RouteFilterConfig[];
      readonly backendRefs?: readonly BackendRefConfig[];
    }[];
  };
}

/** A Gateway API TCPRoute (v1alpha2): weighted backends for every connection. */
export interface TCPRouteConfig {
  readonly kind: 'TCPRoute';
  readonly metadata: RouteMetadata;
  readonly spec: {
    readonly parentRefs: readonly ParentRefConfig[];
    readonly rules: readonly { readonly backendRefs?: readonly BackendRefConfig[] }[];
  };
}

/** Any route kind. */
export type RouteConfig = HTTPRouteConfig | GRPCRouteConfig | TCPRouteConfig;
/** A policy's target: an HTTPRoute (optionally one rule by name) or a Service. */
export interface PolicyTargetConfig {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly sectionName?: string;
}

type OutlierCountField =
  | 'consecutive5xx'
  | 'consecutiveGatewayFailure'
  | 'maxEjectionPercent'
  | 'successRateMinimumHosts'
  | 'successRateRequestVolume'
  | 'successRateStdevFactor'
  | 'failurePercentageThreshold'
  | 'failurePercentageMinimumHosts'
  | 'failurePercentageRequestVolume';
type OutlierDurationField = 'interval' | 'baseEjectionTime' | 'maxEjectionTime';

/** The resilience policies, as far as the control plane reads them. */
export type PolicyConfig = {
  readonly metadata: { readonly name: string; readonly namespace?: string };
} & (
  | {
      readonly kind: 'FaultInjection';
      readonly spec: {
        readonly targetRefs: readonly PolicyTargetConfig[];
        readonly delay?: { readonly fixedDelay: string; readonly percent: number };
        readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: string; readonly percent: number };
      };
    }
  | {
      readonly kind: 'RetryPolicy';
      readonly spec: { readonly targetRefs: readonly PolicyTargetConfig[]; readonly retryNonIdempotent?: boolean; readonly maxBufferedBodyBytes?: number };
    }
  | {
      readonly kind: 'BackendPolicy';
      readonly spec: {
        readonly targetRefs: readonly PolicyTargetConfig[];
        readonly loadBalancer?: {
          readonly type?: BalancerType;
          readonly hashOn?: { readonly header?: string; readonly cookie?: string; readonly source?: Record<string, never> };
        };
        readonly outlierDetection?: { readonly enabled?: boolean } & { readonly [K in OutlierCountField]?: number } & {
          readonly [K in OutlierDurationField]?: string;
        };
        readonly panicThreshold?: number;
        readonly circuitBreaker?: {
          readonly maxConnections?: number;
          readonly maxPendingRequests?: number;
          readonly maxRequests?: number;
          readonly maxRetries?: number;
        };
        readonly failover?: { readonly enabled?: boolean; readonly version?: string };
      };
    }
  | {
      readonly kind: 'XBackendTrafficPolicy';
      readonly spec: {
        readonly targetRefs: readonly PolicyTargetConfig[];
        readonly retryConstraint?: {
          readonly budget?: { readonly percent?: number; readonly interval?: string };
          readonly minRetryRate?: { readonly count?: number; readonly interval?: string };
        };
      };
    }
);

/** A RateLimitPolicy, as far as the control plane reads it (schema: src/config/schema/rate-limit-policy.ts). */
export interface RateLimitPolicyConfig {
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    readonly targetRefs?: readonly PolicyTargetConfig[];
    readonly limits: readonly {
      readonly name: string;
      readonly requests: number;
      readonly interval: string;
      readonly burst?: number;
      readonly key?: { readonly source?: Record<string, never>; readonly header?: string };
      readonly maxKeys?: number;
      readonly global?: boolean;
    }[];
    readonly responseHeaders?: boolean;
  };
}

/** A Gateway API ReferenceGrant: routes of the `from` namespaces may send traffic to the `to` Services of its namespace. */
export interface ReferenceGrantConfig {
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    readonly from: readonly { readonly group: string; readonly kind: string; readonly namespace: string }[];
    readonly to: readonly { readonly group: string; readonly kind: string; readonly name?: string }[];
  };
}

/** A RequestAuthentication, as far as the compiler reads it (src/config/schema/request-authentication.ts has every field). */
export interface RequestAuthenticationConfig {
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    /** Absent: every Service of the policy's namespace. */
    readonly targetRefs?: readonly PolicyTargetConfig[];
    readonly jwtRules: readonly {
      readonly issuer: string;
      readonly audiences?: readonly string[];
      readonly jwksUri?: string;
      readonly fromHeaders?: readonly { readonly name: string; readonly prefix?: string }[];
      readonly fromParams?: readonly string[];
      readonly forwardOriginalToken?: boolean;
      readonly outputClaimToHeaders?: readonly { readonly header: string; readonly claim: string }[];
      readonly algorithms?: readonly string[];
      readonly clockSkew?: string;
      readonly maxTokenBytes?: number;
      readonly jwksRefreshInterval?: string;
      readonly jwksMaxStale?: string;
    }[];
  };
}

/** An AuthorizationPolicy, as far as the control plane reads it (src/config/schema/authorization-policy.ts). */
export interface AuthorizationPolicyConfig {
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    readonly targetRefs?: readonly PolicyTargetConfig[];
    readonly action?: 'ALLOW' | 'DENY' | 'AUDIT';
    readonly rules?: readonly {
      readonly from?: readonly { readonly source: { readonly [K in AuthorizationSourceField]?: readonly string[] } }[];
      readonly to?: readonly {
        readonly operation: { readonly [K in AuthorizationOperationField]?: readonly string[] } & {
          readonly ports?: readonly (string | number)[];
          readonly notPorts?: readonly (string | number)[];
        };
      }[];
      readonly when?: readonly { readonly key: string; readonly values?: readonly string[]; readonly notValues?: readonly string[] }[];
    }[];
    readonly dryRun?: boolean;
  };
}

type AuthorizationSourceField = 'principals' | 'notPrincipals' | 'namespaces' | 'notNamespaces' | 'requestPrincipals' | 'notRequestPrincipals';
type AuthorizationOperationField = 'hosts' | 'notHosts' | 'methods' | 'notMethods' | 'paths' | 'notPaths';

export interface ControlConfig {
  readonly services: readonly ServiceConfig[];
  /** In file order: the tie-breaker of route precedence when no creationTimestamp is set. */
  readonly routes: readonly { readonly file: string; readonly resource: RouteConfig }[];
  /** FaultInjection, RetryPolicy and XBackendTrafficPolicy resources, in file order; absent: none. */
  readonly policies?: readonly { readonly file: string; readonly resource: PolicyConfig }[];
  /** RateLimitPolicies, in file order; absent: none. */
  readonly rateLimitPolicies?: readonly { readonly file: string; readonly resource: RateLimitPolicyConfig }[];
  /** ReferenceGrants; absent: none (a backendRef into another namespace is then invalid). */
  readonly referenceGrants?: readonly { readonly file: string; readonly resource: ReferenceGrantConfig }[];
  /**
   * RequestAuthentications in file order, each rule's key set as JSON text (inline, or the
   * jwksFile's content the loader read; undefined for a jwksUri rule); absent: none.
   */
  readonly requestAuthentications?: readonly {
    readonly file: string;
    readonly resource: RequestAuthenticationConfig;
    readonly jwks: readonly (string | undefined)[];
  }[];
  /** AuthorizationPolicies, in file order; absent: none (every caller is allowed). */
  readonly authorizationPolicies?: readonly { readonly file: string; readonly resource: AuthorizationPolicyConfig }[];
  /** The domain of `svc.ns.svc.<domain>` host names; absent: cluster.local. */
  readonly clusterDomain?: string;
  /** The Mesh's `spec.proxyLimits` (milliseconds and bytes); absent: proxy defaults. */
  readonly proxyLimits?: ProxyLimitsSnapshot;
  /** The Mesh's `spec.telemetry.tracing` as proxies take it; absent: tracing off (the loader fills the default, on at 1%). */
  readonly tracing?: TracingSnapshot;
  /** The Mesh's `spec.identity` with defaults; absent (a config from before it): the defaults. The CA reads it at start. */
  readonly identity?: IdentityConfig;
  /** Gateway API Gateways with their certificates read; absent: none. */
  readonly gateways?: readonly GatewayConfig[];
  /** The mesh-wide mTLS mode (`Mesh.spec.mtls.mode`); absent: STRICT. */
  readonly mtlsMode?: MtlsMode;
  /** PeerAuthentications, in file order; absent: none. */
  readonly peerAuthentications?: readonly { readonly file: string; readonly resource: PeerAuthenticationConfig }[];
  /** ExternalServices (their CA bundles read); absent: none. */
  readonly externalServices?: readonly ExternalServiceConfig[];
  /** The Mesh's `outboundTrafficPolicy.mode`; absent: ALLOW_ANY. */
  readonly outboundTrafficPolicy?: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  /** The egress gateway every ExternalService call goes through; absent: none (sidecars call them directly). */
  readonly egressGateway?: { readonly name: string; readonly port?: number };
}

/** A PeerAuthentication, as far as the compiler reads it (src/control/compile/mtls.ts). */
export interface PeerAuthenticationConfig {
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    readonly targetRefs?: readonly { readonly group: string; readonly kind: string; readonly name: string }[];
    readonly mtls: { readonly mode: MtlsMode };
    readonly portLevelMtls?: Readonly<Record<string, { readonly mode: MtlsMode }>>;
  };
}

/** Health settings used for instances whose service is not (or no longer) in the config. */
export const DEFAULT_HEALTH: HealthConfig = {
  type: 'tcp',
  intervalMs: 2000,
  timeoutMs: 1000,
  healthyThreshold: 1,
  unhealthyThreshold: 2,
};

export const EMPTY_CONFIG: ControlConfig = { services: [], routes: [] };
