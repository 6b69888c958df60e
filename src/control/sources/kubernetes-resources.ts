// Routes and policies from the Kubernetes API (`trellis control --kubernetes`): each
// Gateway API route and trellis.dev policy object becomes the same resource the YAML
// loader makes of a document, through the same checks: its kind's schema
// (src/config/schema-errors.ts) and the cross-resource checks (check-routes.ts,
// check-policies.ts, ...) against the services in force (the files' and the cluster's).
// An object from the API is input like any other: one that fails is skipped, with its
// problems, and the rest apply; nothing an object holds can stop the control plane.
// The files win a clash: a route or policy also defined in a file is the file's.
import { Value } from '@sinclair/typebox/value';
import { checkAuthorizationPolicies, type AuthorizationPolicySource } from '../../config/check-authorization.js';
import { attachTlsRoutes, type GatewayConfig, type TLSRouteSource } from '../../config/check-gateways.js';
import { checkReferenceGrants, type GrantSource } from '../../config/check-grants.js';
import { checkPeerAuthentications, type PeerAuthenticationSource } from '../../config/check-peer-authentication.js';
import { checkRequestAuthenticationsWith, type RequestAuthenticationSource } from '../../config/check-request-authentication.js';
import { checkPolicies, type PolicySource } from '../../config/check-policies.js';
import { checkRateLimitPolicies, type RateLimitPolicySource } from '../../config/check-rate-limits.js';
import { checkRoutes, type RouteSource } from '../../config/check-routes.js';
import type { Problem } from '../../config/problems.js';
import { checkSchema } from '../../config/schema-errors.js';
import {
  GATEWAY_API_ALPHA_VERSION,
  GATEWAY_API_BETA_VERSION,
  GATEWAY_API_VERSION,
  RESOURCE_KINDS,
  TRELLIS_API_VERSION,
  type MeshResource,
  type ReferenceGrantResource,
} from '../../config/schema.js';
import type { SourceDocument } from '../../config/yaml-source.js';
import { trellisKindPath, WATCHED_KINDS } from '../../k8s/source/kinds.js';
import type { KindPath, KubeObject } from '../../k8s/source/reflector.js';
import { isSecretGrant } from './kubernetes-gateways.js';
import type { ControlConfig } from './mesh-config.js';

/** A kind read from the API: where it is listed, and the apiVersion its schema is kept under. */
export interface ResourceKind extends KindPath {
  readonly apiVersion: string;
}

/**
 * The kinds read: the Gateway API routes and grants the install's CRDs serve
 * (deploy/kubernetes/gateway-api; TCPRoute at v1 there, its v1alpha2 no longer served,
 * the same fields as the loader's v1alpha2 schema) and the trellis.dev policies. A kind
 * whose CRD is missing never lists, and holds up the start by the sync timeout.
 * Gateways and their Secrets are read beside them (kubernetes-gateways.ts).
 * RequestAuthentications with their key sets inline or at a jwksUri (a jwksFile is
 * refused: an API object never names a file the control plane would read).
 * TLSRoutes (v1 there too, the loader's v1alpha2 fields) attach to the TLS listeners of
 * the API's Gateways (not the files': a file Gateway's routes are the files').
 * Not read: ExternalServices and the Mesh.
 */
export const RESOURCE_KINDS_READ: readonly ResourceKind[] = [
  { ...WATCHED_KINDS.HTTPRoute, apiVersion: GATEWAY_API_VERSION },
  { ...WATCHED_KINDS.GRPCRoute, apiVersion: GATEWAY_API_VERSION },
  { ...WATCHED_KINDS.TCPRoute, apiVersion: GATEWAY_API_ALPHA_VERSION },
  { ...WATCHED_KINDS.TLSRoute, apiVersion: GATEWAY_API_ALPHA_VERSION },
  { ...WATCHED_KINDS.ReferenceGrant, apiVersion: GATEWAY_API_BETA_VERSION },
  ...['AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication', 'FaultInjection', 'RetryPolicy', 'BackendPolicy', 'RateLimitPolicy'].map(
    (kind) => ({
      ...trellisKindPath(kind),
      apiVersion: TRELLIS_API_VERSION,
    }),
  ),
];

/** What the API adds to the files' config: lists in the ControlConfig's shapes, each entry's `file` naming its object. */
export interface ClusterResources {
  readonly routes: NonNullable<ControlConfig['routes']>;
  readonly policies: NonNullable<ControlConfig['policies']>;
  readonly rateLimitPolicies: NonNullable<ControlConfig['rateLimitPolicies']>;
  readonly referenceGrants: NonNullable<ControlConfig['referenceGrants']>;
  readonly authorizationPolicies: NonNullable<ControlConfig['authorizationPolicies']>;
  readonly peerAuthentications: NonNullable<ControlConfig['peerAuthentications']>;
  readonly requestAuthentications: NonNullable<ControlConfig['requestAuthentications']>;
  /** The API's Gateways given, their TLS listeners with the TLSRoutes attached. */
  readonly gateways: GatewayConfig[];
}

/** An object left out, and why (its problems, at field paths of the object). */
export interface SkippedObject {
  /** `kubernetes:<Kind>/<namespace>/<name>`. */
  readonly object: string;
  readonly kind: string;
  readonly problems: readonly Problem[];
}

/** The prefix of every object's name in problems and in the config's `file` fields. */
export const OBJECT_PREFIX = 'kubernetes:';
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const safe = (v: unknown): string => (typeof v === 'string' && NAME.test(v) ? v : '<invalid>');

type Candidate = { readonly kind: string; readonly doc: SourceDocument; readonly resource: { metadata: { name: string; namespace?: string } } };

/** The Mesh the checks look services up in: every service in force, with the versions their endpoints run. */
function meshOf(config: ControlConfig, versions: ReadonlyMap<string, ReadonlySet<string>>): MeshResource {
  const services = config.services.map((s) => {
    const key = s.namespace && s.namespace !== 'default' ? `${s.name}.${s.namespace}` : s.name;
    const names = new Set([...s.versions.map((v) => v.name), ...(versions.get(key) ?? [])]);
    return {
      name: s.name,
      ...(s.namespace ? { namespace: s.namespace } : {}),
      protocol: s.protocol,
      ...(s.ports ? { ports: s.ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol })) } : {}),
      ...(names.size > 0 ? { versions: [...names].sort().map((name) => ({ name })) } : {}),
    };
  });
  return { apiVersion: TRELLIS_API_VERSION, kind: 'Mesh', metadata: { name: 'kubernetes' }, spec: { services } } as unknown as MeshResource;
}

/** A resource of the files, as a source for the checks (their problems were the loader's). */
function fileDoc<T>(entry: { readonly file: string; readonly resource: T }): { doc: SourceDocument; resource: T } {
  return { doc: { file: entry.file, index: 0, value: entry.resource, locate: () => undefined }, resource: entry.resource };
}

/**
 * The routes and policies of the API's objects that pass the loader's checks against
 * `config` (the files' config with the cluster's services), and the objects skipped.
 * `objects`: per kind, as listed (items of a list carry no apiVersion or kind: the
 * kind's are used). `versions`: service key → versions its endpoints run. `apiGateways`:
 * the API's Gateways (kubernetes-gateways.ts), which the TLSRoutes attach to.
 */
export function clusterResources(
  objects: ReadonlyMap<string, readonly KubeObject[]>,
  config: ControlConfig,
  versions: ReadonlyMap<string, ReadonlySet<string>> = new Map(),
  apiGateways: readonly GatewayConfig[] = [],
): { resources: ClusterResources; skipped: SkippedObject[] } {
  const skipped: SkippedObject[] = [];
  let candidates: Candidate[] = [];
  for (const kind of RESOURCE_KINDS_READ) {
    const schema = RESOURCE_KINDS[`${kind.apiVersion}/${kind.kind}`]!.schema;
    const sorted = [...(objects.get(kind.kind) ?? [])].map((item) => {
      // Whatever a list or watch held: anything but a mapping is an object with nothing valid in it.
      const o: KubeObject = typeof item === 'object' && item !== null && !Array.isArray(item) ? item : {};
      return { o, id: `${OBJECT_PREFIX}${kind.kind}/${safe(o.metadata?.namespace)}/${safe(o.metadata?.name)}` };
    });
    sorted.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const { o, id } of sorted) {
      const m = (typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {}) as Record<string, unknown>;
      // The document the loader would read: the object's kind, name, namespace, labels,
      // annotations and spec; what the API server adds (uid, managedFields, status) is not config.
      const value = {
        apiVersion: kind.apiVersion,
        kind: kind.kind,
        metadata: {
          name: m.name,
          ...(m.namespace !== undefined ? { namespace: m.namespace } : {}),
          ...(m.labels !== undefined ? { labels: m.labels } : {}),
          ...(m.annotations !== undefined ? { annotations: m.annotations } : {}),
        },
        spec: o.spec,
      };
      const doc: SourceDocument = { file: id, index: 1, value, locate: () => undefined };
      const problems = checkSchema(doc, schema);
      if (problems.length > 0) {
        skipped.push({ object: id, kind: kind.kind, problems });
        continue;
      }
      const resource = Value.Default(schema, structuredClone(value)) as Candidate['resource'];
      // The creation time orders routes of equal precedence, as the Gateway API has it.
      if (typeof m.creationTimestamp === 'string' && (kind.kind === 'HTTPRoute' || kind.kind === 'GRPCRoute')) {
        (resource.metadata as Record<string, unknown>).creationTimestamp = m.creationTimestamp;
      }
      candidates.push({ kind: kind.kind, doc, resource });
    }
  }

  // A grant that lets Gateways name Secrets is the Gateways' (kubernetes-gateways.ts), not a mesh grant.
  candidates = candidates.filter((c) => c.kind !== 'ReferenceGrant' || !isSecretGrant(c.resource as unknown as ReferenceGrantResource));
  const mesh = meshOf(config, versions);
  const gateways = new Map((config.gateways ?? []).map((g) => [`${g.namespace}/${g.name}`, new Set(g.listeners.map((l) => l.name))]));
  const externals = (config.externalServices ?? []).map((e) => ({
    resource: { metadata: { name: e.name, namespace: e.namespace }, spec: { ports: [{ protocol: e.protocol }] } },
  }));
  const of = <T>(kinds: readonly string[]): { doc: SourceDocument; resource: T }[] =>
    candidates.filter((c) => kinds.includes(c.kind)).map((c) => ({ doc: c.doc, resource: c.resource as T }));
  // Dropping an object can make another fail (a policy targeting a route that was
  // skipped): check again until every object left passes. Each round drops one at least.
  for (;;) {
    const routes = [...config.routes.map(fileDoc), ...of<RouteSource['resource']>(['HTTPRoute', 'GRPCRoute', 'TCPRoute'])] as RouteSource[];
    const problems = [
      ...checkRoutes(mesh, routes, [], gateways, externals),
      ...checkPolicies(mesh, routes, [...(config.policies ?? []).map(fileDoc), ...of(['FaultInjection', 'RetryPolicy', 'BackendPolicy'])] as PolicySource[]),
      ...checkReferenceGrants(mesh, [...(config.referenceGrants ?? []).map(fileDoc), ...of(['ReferenceGrant'])] as GrantSource[]),
      ...checkRateLimitPolicies(mesh, routes, [...(config.rateLimitPolicies ?? []).map(fileDoc), ...of(['RateLimitPolicy'])] as RateLimitPolicySource[]),
      ...checkPeerAuthentications(mesh, [...(config.peerAuthentications ?? []).map(fileDoc), ...of(['PeerAuthentication'])] as PeerAuthenticationSource[]),
      ...checkRequestAuthenticationsWith(mesh, of(['RequestAuthentication']) as RequestAuthenticationSource[]).problems,
      ...checkAuthorizationPolicies(mesh, [
        ...(config.authorizationPolicies ?? []).map(fileDoc),
        ...of(['AuthorizationPolicy']),
      ] as AuthorizationPolicySource[]),
    ];
    const failed = new Map<string, Problem[]>();
    for (const p of problems) if (p.file.startsWith(OBJECT_PREFIX)) failed.set(p.file, [...(failed.get(p.file) ?? []), p]);
    const dropped = candidates.filter((c) => failed.has(c.doc.file));
    if (dropped.length === 0) break;
    for (const c of dropped) skipped.push({ object: c.doc.file, kind: c.kind, problems: failed.get(c.doc.file)! });
    candidates = candidates.filter((c) => !failed.has(c.doc.file));
  }

  // TLSRoutes attach to the API Gateways' TLS listeners (new listener objects: the given
  // Gateways are the gateway source's, kept across calls). One that does not attach
  // everywhere it names is skipped whole, tried first on a copy.
  const fresh = (): GatewayConfig[] =>
    apiGateways.map((g) => ({ ...g, listeners: g.listeners.map((l) => (l.protocol === 'TLS' ? { ...l, passthrough: [] } : l)) }));
  const attached = fresh();
  for (const r of of<TLSRouteSource['resource']>(['TLSRoute'])) {
    const problems: Problem[] = [];
    attachTlsRoutes([r], fresh(), problems);
    if (problems.length > 0) {
      skipped.push({ object: r.doc.file, kind: 'TLSRoute', problems });
      continue;
    }
    attachTlsRoutes([r], attached, problems);
  }

  const entries = <T>(kinds: readonly string[]) => of<T>(kinds).map((s) => ({ file: s.doc.file, resource: s.resource }));
  // Every one left passed: its rules' key sets (inline, or undefined for a jwksUri).
  const authns = of<RequestAuthenticationSource['resource']>(['RequestAuthentication']);
  const authnKeys = checkRequestAuthenticationsWith(mesh, authns).jwks;
  return {
    resources: {
      routes: entries(['HTTPRoute', 'GRPCRoute', 'TCPRoute']),
      policies: entries(['FaultInjection', 'RetryPolicy', 'BackendPolicy']),
      rateLimitPolicies: entries(['RateLimitPolicy']),
      referenceGrants: entries(['ReferenceGrant']),
      authorizationPolicies: entries(['AuthorizationPolicy']),
      peerAuthentications: entries(['PeerAuthentication']),
      requestAuthentications: authns.map((a, i) => ({ file: a.doc.file, resource: a.resource, jwks: authnKeys[i] ?? [] })),
      gateways: attached,
    },
    skipped: skipped.sort((a, b) => (a.object < b.object ? -1 : a.object > b.object ? 1 : 0)),
  };
}
