// The kinds the Kubernetes source lists and watches, and where: one reflector each.
import type { KindPath } from './reflector.js';

/** Kinds the model is built from (core, discovery, Gateway API, trellis.dev). */
export const WATCHED_KINDS = {
  Service: { kind: 'Service', path: '/api/v1/services' },
  EndpointSlice: { kind: 'EndpointSlice', path: '/apis/discovery.k8s.io/v1/endpointslices' },
  Pod: { kind: 'Pod', path: '/api/v1/pods' },
  Namespace: { kind: 'Namespace', path: '/api/v1/namespaces' },
  ServiceAccount: { kind: 'ServiceAccount', path: '/api/v1/serviceaccounts' },
  HTTPRoute: { kind: 'HTTPRoute', path: '/apis/gateway.networking.k8s.io/v1/httproutes' },
  GRPCRoute: { kind: 'GRPCRoute', path: '/apis/gateway.networking.k8s.io/v1/grpcroutes' },
  // TCPRoute and TLSRoute at v1: the install's Gateway API v1.6.1 standard CRDs serve only v1 (v1alpha2/v1alpha3 served: false).
  TCPRoute: { kind: 'TCPRoute', path: '/apis/gateway.networking.k8s.io/v1/tcproutes' },
  TLSRoute: { kind: 'TLSRoute', path: '/apis/gateway.networking.k8s.io/v1/tlsroutes' },
  GatewayClass: { kind: 'GatewayClass', path: '/apis/gateway.networking.k8s.io/v1/gatewayclasses' },
  Gateway: { kind: 'Gateway', path: '/apis/gateway.networking.k8s.io/v1/gateways' },
  ReferenceGrant: { kind: 'ReferenceGrant', path: '/apis/gateway.networking.k8s.io/v1beta1/referencegrants' },
} as const satisfies Record<string, KindPath>;

/** The collection path of a trellis.dev/v1alpha1 kind (`TrafficPolicy` → `/apis/trellis.dev/v1alpha1/trafficpolicies`). */
export function trellisKindPath(kind: string): KindPath {
  const lower = kind.toLowerCase();
  const plural = lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : lower.endsWith('s') ? `${lower}es` : `${lower}s`;
  return { kind, path: `/apis/trellis.dev/v1alpha1/${plural}` };
}
