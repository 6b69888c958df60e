// Gateway API route status, as Trellis sees each route (HTTPRoute, GRPCRoute, TCPRoute):
// per parentRef one entry of `status.parents[]` with `controllerName:
// trellis.dev/gateway-controller` and two conditions, Accepted (True; False with
// NoMatchingParent, NotAllowedByListeners, or UnsupportedValue when the loader skipped
// the route) and ResolvedRefs (True; False with BackendNotFound, RefNotPermitted or
// InvalidKind), with the route's `observedGeneration` (GEP-1364 conditions; the
// RouteParentStatus of the Gateway API's v1 types). Entries of other controllers are kept
// as they are; a Gateway parent Trellis does not serve gets no entry of ours (its status
// is its own controller's).
//
// Written through the status subresource by the Lease leader only, and only when what it
// would write differs from what the object holds (status-writer.ts: no write loop). A
// condition keeps its lastTransitionTime while its status stays.
import type { KubeObject } from './reflector.js';
import { sameJson, StatusWriter, type StatusWriterOptions } from './status-writer.js';

/** The controllerName Trellis writes its route status entries under. */
export const CONTROLLER_NAME = 'trellis.dev/gateway-controller';

/** The route kinds whose status is written, and their collection paths (the versions the install's CRDs serve). */
export const STATUS_ROUTE_KINDS: Readonly<Record<string, { readonly group: string; readonly version: string; readonly plural: string }>> = {
  HTTPRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' },
  GRPCRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes' },
  TCPRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'tcproutes' },
  TLSRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'tlsroutes' },
};

export type AcceptedReason = 'Accepted' | 'NoMatchingParent' | 'NotAllowedByListeners' | 'UnsupportedValue';
export type ResolvedRefsReason = 'ResolvedRefs' | 'BackendNotFound' | 'RefNotPermitted' | 'InvalidKind';

export interface Condition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration: number;
  readonly lastTransitionTime: string;
}

/** A listener of a Gateway Trellis serves, as far as attaching a route goes. */
export interface StatusListener {
  readonly name: string;
  readonly port: number;
  /** Which namespaces' routes may attach: the Gateway's own, or any. */
  readonly from: 'Same' | 'All';
  /** Route kinds allowed; absent: HTTPRoute and GRPCRoute. */
  readonly kinds?: readonly string[];
}

/** What the status of a route is judged against (the control plane's model, narrowed). */
export interface RouteWorld {
  /** Whether Service `name` is in the mesh in `namespace`. */
  hasService(namespace: string, name: string): boolean;
  /** The listeners of a Gateway Trellis serves; undefined: not one of Trellis's (no entry of ours). */
  gateway(namespace: string, name: string): readonly StatusListener[] | undefined;
  /** Why a backendRef does not resolve; undefined when it does. */
  backend(
    ref: { readonly name: string; readonly namespace?: string; readonly kind?: string; readonly group?: string; readonly port?: number },
    route: { readonly kind: string; readonly namespace: string; readonly parents: readonly { readonly namespace: string; readonly name: string }[] },
  ): { readonly reason: Exclude<ResolvedRefsReason, 'ResolvedRefs'>; readonly message: string } | undefined;
  /** Why a listener of a Gateway Trellis serves is refused (its certificateRef); undefined: it is not (or there is no such listener). */
  refusedListener?(namespace: string, name: string, listener: string): string | undefined;
  /** The route's first problem when the loader skipped it (it is not in force); undefined when it is in force. */
  skipped(kind: string, namespace: string, name: string): string | undefined;
}

type Obj = Record<string, unknown>;
const rec = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
/** A message as the API's Condition takes it (at most 32768 characters). */
const clip = (s: string): string => (s.length > 1024 ? `${s.slice(0, 1021)}...` : s);

/** A parentRef's identity, as written in the spec (the entry of status.parents that echoes it). */
function refKey(ref: unknown): string {
  const r = rec(ref);
  return JSON.stringify([str(r.group) ?? null, str(r.kind) ?? null, str(r.namespace) ?? null, str(r.name) ?? null, str(r.sectionName) ?? null, r.port ?? null]);
}

/** Accepted for one parentRef, before the loader's verdict on the whole route. */
function acceptedFor(
  kind: string,
  namespace: string,
  ref: Obj,
  world: Pick<RouteWorld, 'gateway' | 'hasService' | 'refusedListener'>,
): { readonly ours: false } | { readonly ours: true; readonly reason: AcceptedReason; readonly message: string; readonly listeners?: readonly string[] } {
  const name = str(ref.name) ?? '';
  const ns = str(ref.namespace) ?? namespace;
  // A parentRef without a kind is a Service here (the loader's reading, GAMMA).
  const parentKind = str(ref.kind) ?? 'Service';
  if (parentKind === 'Gateway') {
    const listeners = world.gateway(ns, name);
    if (listeners === undefined) return { ours: false };
    const section = str(ref.sectionName);
    const port = typeof ref.port === 'number' ? ref.port : undefined;
    const named = listeners.filter((l) => (section === undefined || l.name === section) && (port === undefined || l.port === port));
    const refused = named.length === 0 && section !== undefined ? world.refusedListener?.(ns, name, section) : undefined;
    if (refused !== undefined)
      return { ours: true, reason: 'NoMatchingParent', message: clip(`listener "${section}" of Gateway ${ns}/${name} does not serve: ${refused}`) };
    if (named.length === 0)
      return {
        ours: true,
        reason: 'NoMatchingParent',
        message: `Gateway ${ns}/${name} has no listener${section !== undefined ? ` named "${section}"` : ''}${port !== undefined ? ` on port ${port}` : ''}`,
      };
    const allowed = named.filter((l) => (l.from === 'All' || ns === namespace) && (l.kinds ?? ['HTTPRoute', 'GRPCRoute']).includes(kind));
    if (allowed.length === 0)
      return {
        ours: true,
        reason: 'NotAllowedByListeners',
        message: `no listener of Gateway ${ns}/${name} allows ${kind}s from namespace ${namespace} (allowedRoutes)`,
      };
    return {
      ours: true,
      reason: 'Accepted',
      message: `attached to Gateway ${ns}/${name} (${allowed.map((l) => l.name).join(', ')})`,
      listeners: allowed.map((l) => l.name),
    };
  }
  if (parentKind !== 'Service' || (str(ref.group) ?? '') !== '')
    return { ours: true, reason: 'NoMatchingParent', message: `a parent of kind ${parentKind.slice(0, 63)} is not one Trellis serves (Service or Gateway)` };
  if (!world.hasService(ns, name)) return { ours: true, reason: 'NoMatchingParent', message: `no Service ${ns}/${name} in the mesh` };
  return { ours: true, reason: 'Accepted', message: `routes traffic to Service ${ns}/${name}` };
}

/**
 * The Gateway listeners a route is attached to, by its parentRefs and the listeners'
 * allowedRoutes alone (a Gateway's status counts them as its listeners' attachedRoutes:
 * the Gateway API counts a route whatever its own or the listener's status).
 */
export function routeAttachments(
  kind: string,
  route: KubeObject,
  world: Pick<RouteWorld, 'gateway' | 'hasService' | 'refusedListener'>,
): { readonly gateway: string; readonly listener: string }[] {
  const namespace = str(route.metadata?.namespace) ?? 'default';
  const out = new Map<string, { gateway: string; listener: string }>();
  for (const ref of arr(rec(route.spec).parentRefs)) {
    const r = rec(ref);
    if (str(r.kind) !== 'Gateway') continue;
    const accepted = acceptedFor(kind, namespace, r, world);
    if (!accepted.ours || accepted.reason !== 'Accepted') continue;
    const gateway = `${str(r.namespace) ?? namespace}/${str(r.name) ?? ''}`;
    for (const listener of accepted.listeners ?? []) out.set(`${gateway}/${listener}`, { gateway, listener });
  }
  return [...out.values()];
}

/** ResolvedRefs for the whole route (every parent the same): the first backendRef that does not resolve. */
function resolvedRefs(kind: string, namespace: string, spec: Obj, world: RouteWorld): { reason: ResolvedRefsReason; message: string } {
  // The Services the route is attached to: a backendRef to one of them needs no grant (routes.ts).
  const parents = arr(spec.parentRefs)
    .filter((p) => (str(rec(p).kind) ?? 'Service') === 'Service')
    .map((p) => ({ namespace: str(rec(p).namespace) ?? namespace, name: str(rec(p).name) ?? '' }));
  for (const [r, rule] of arr(spec.rules).entries()) {
    const refs = [
      ...arr(rec(rule).backendRefs).map((b, i) => ({ b: rec(b), at: `spec.rules[${r}].backendRefs[${i}]` })),
      ...arr(rec(rule).filters).flatMap((f, i) => {
        const mirror = rec(rec(f).requestMirror).backendRef;
        return mirror === undefined ? [] : [{ b: rec(mirror), at: `spec.rules[${r}].filters[${i}].requestMirror.backendRef` }];
      }),
    ];
    for (const { b, at } of refs) {
      const ref = {
        name: str(b.name) ?? '',
        ...(str(b.namespace) !== undefined ? { namespace: str(b.namespace)! } : {}),
        ...(str(b.kind) !== undefined ? { kind: str(b.kind)! } : {}),
        ...(str(b.group) !== undefined ? { group: str(b.group)! } : {}),
        ...(typeof b.port === 'number' ? { port: b.port } : {}),
      };
      const bad = world.backend(ref, { kind, namespace, parents });
      if (bad) return { reason: bad.reason, message: clip(`${at}: ${bad.message}`) };
    }
  }
  return { reason: 'ResolvedRefs', message: 'every backendRef resolves' };
}

/**
 * The `status.parents` a route should have: the entries of other controllers as they are,
 * then Trellis's, one per parentRef it serves, in spec order. `now`: the time a condition
 * that changed status gets (one that kept it keeps its lastTransitionTime).
 */
export function desiredParents(kind: string, route: KubeObject, world: RouteWorld, now: string): unknown[] {
  const namespace = str(route.metadata?.namespace) ?? 'default';
  const name = str(route.metadata?.name) ?? '';
  const generation = typeof route.metadata?.generation === 'number' ? route.metadata.generation : 0;
  const spec = rec(route.spec);
  const current = arr(rec(route.status).parents);
  const others = current.filter((p) => str(rec(p).controllerName) !== CONTROLLER_NAME);
  const previous = new Map(current.filter((p) => str(rec(p).controllerName) === CONTROLLER_NAME).map((p) => [refKey(rec(p).parentRef), rec(p)]));
  const skipped = world.skipped(kind, namespace, name);
  const refs = resolvedRefs(kind, namespace, spec, world);
  const ours: unknown[] = [];
  const seen = new Set<string>();
  for (const ref of arr(spec.parentRefs)) {
    const key = refKey(ref);
    if (seen.has(key)) continue;
    seen.add(key);
    const accepted = acceptedFor(kind, namespace, rec(ref), world);
    if (!accepted.ours) continue;
    // The loader left the route out (it is not in force): not Accepted, whatever the parent says.
    const acceptedCond =
      accepted.reason !== 'Accepted'
        ? { status: 'False' as const, reason: accepted.reason, message: accepted.message }
        : skipped !== undefined
          ? { status: 'False' as const, reason: 'UnsupportedValue', message: clip(`the route is not in force: ${skipped}`) }
          : { status: 'True' as const, reason: 'Accepted', message: accepted.message };
    const before = new Map(arr(previous.get(key)?.conditions).map((c) => [str(rec(c).type), rec(c)]));
    const condition = (type: Condition['type'], c: { status: 'True' | 'False'; reason: string; message: string }): Condition => {
      const old = before.get(type);
      const kept = old !== undefined && str(old.status) === c.status ? str(old.lastTransitionTime) : undefined;
      return { type, status: c.status, reason: c.reason, message: c.message, observedGeneration: generation, lastTransitionTime: kept ?? now };
    };
    ours.push({
      parentRef: ref,
      controllerName: CONTROLLER_NAME,
      conditions: [
        condition('Accepted', acceptedCond),
        condition('ResolvedRefs', { status: refs.reason === 'ResolvedRefs' ? 'True' : 'False', reason: refs.reason, message: refs.message }),
      ],
    });
  }
  return [...others, ...ours];
}

export { sameJson };

export interface RouteStatusWriterOptions extends Omit<StatusWriterOptions<RouteWorld>, 'objects' | 'paths' | 'desired' | 'what'> {
  /** The routes as listed, per kind of STATUS_ROUTE_KINDS that is read. */
  readonly routes: () => ReadonlyMap<string, readonly KubeObject[]>;
}

/** Writes the routes' status (status.parents) when it differs from what they hold; only while leading. */
export class RouteStatusWriter extends StatusWriter<RouteWorld> {
  constructor(opts: RouteStatusWriterOptions) {
    const { routes, ...rest } = opts;
    super({
      ...rest,
      what: 'route',
      objects: routes,
      paths: STATUS_ROUTE_KINDS,
      desired: (kind, route, world, now) => {
        const status = rec(route.status);
        const parents = desiredParents(kind, route, world, now);
        // No entry to write and none held: the status as it is (a route with no status gets none).
        return sameJson(parents, arr(status.parents)) ? status : { ...status, parents };
      },
    });
  }
}
