// What the routes' and Gateways' Gateway API status is judged against
// (src/k8s/source/route-status.ts, gateway-status.ts), from the control plane's model:
// the services in force (the files' and the cluster's), the Gateways Trellis serves and
// their refused listeners, the ReferenceGrants, the versions endpoints run, and the
// route objects the loader skipped. A backendRef is resolved as the compiler resolves it
// (compile/routes.ts backendTarget), so ResolvedRefs says what the proxies do.
import { splitServiceKey } from '../../api/names.js';
import { EXTERNAL_KIND } from '../../config/check-routes.js';
import { gatewayClassOwner, type GatewayWorld } from '../../k8s/source/gateway-status.js';
import type { KubeObject } from '../../k8s/source/reflector.js';
import { routeAttachments, type RouteWorld, type StatusListener } from '../../k8s/source/route-status.js';
import { backendTarget } from '../compile/routes.js';
import type { DiscoveredEndpoint } from '../model.js';
import type { ControlConfig, ServiceConfig } from './mesh-config.js';
import type { RefusedListener } from './kubernetes-gateways.js';
import { OBJECT_PREFIX, type SkippedObject } from './kubernetes-resources.js';

/** A route world and what it was made of (the same object while none of it changed). */
export interface RouteWorldMemo {
  readonly world: RouteWorld;
  readonly config: ControlConfig;
  readonly versions: string;
  readonly skipped: readonly SkippedObject[];
  readonly refused: readonly RefusedListener[];
}

/**
 * The world of `config`, the versions `endpoints` run and the `skipped` objects; the same
 * object as `previous` gave when none of them changed (endpoints come and go far more often
 * than versions do), so the status writer can tell nothing needs judging again.
 */
export function routeWorld(
  config: ControlConfig,
  endpoints: readonly DiscoveredEndpoint[],
  skipped: readonly SkippedObject[],
  previous?: RouteWorldMemo,
  refused: readonly RefusedListener[] = [],
): RouteWorldMemo {
  const services = new Map(config.services.map((s) => [`${s.namespace ?? 'default'}/${s.name}`, s]));
  const versions = new Map<string, Set<string>>();
  for (const s of config.services) versions.set(`${s.namespace ?? 'default'}/${s.name}`, new Set(s.versions.map((v) => v.name)));
  for (const e of endpoints) {
    const { name, namespace } = splitServiceKey(e.service);
    versions.get(`${namespace}/${name}`)?.add(e.version);
  }
  const versionsKey = JSON.stringify([...versions].map(([k, v]) => [k, [...v].sort()]));
  if (previous && previous.config === config && previous.skipped === skipped && previous.versions === versionsKey && previous.refused === refused)
    return previous;
  /** Services by namespace: a `<service>-<version>` name is looked up among its namespace's. */
  const byNamespace = new Map<string, ServiceConfig[]>();
  for (const s of config.services) {
    const ns = s.namespace ?? 'default';
    byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), s]);
  }
  /** The Service a backend name stands for: itself, or the service of `<service>-<version>`. */
  const resolve = (namespace: string, name: string): string | undefined => {
    if (services.has(`${namespace}/${name}`)) return name;
    for (const s of byNamespace.get(namespace) ?? []) {
      if (!name.startsWith(`${s.name}-`)) continue;
      if (versions.get(`${namespace}/${s.name}`)?.has(name.slice(s.name.length + 1))) return s.name;
    }
    return undefined;
  };
  const gateways = new Map((config.gateways ?? []).map((g) => [`${g.namespace}/${g.name}`, g]));
  const externals = new Set((config.externalServices ?? []).map((e) => `${e.namespace}/${e.name}`));
  const skippedBy = new Map(skipped.map((s) => [s.object, s]));
  const world: RouteWorld = {
    hasService: (namespace, name) => services.has(`${namespace}/${name}`),
    // A TLS listener without allowedRoutes.kinds takes TLSRoutes (its protocol's), not the HTTP kinds.
    gateway: (namespace, name) =>
      gateways.get(`${namespace}/${name}`)?.listeners.map((l) => {
        const kinds = l.kinds ?? (l.protocol === 'TLS' ? ['TLSRoute'] : undefined);
        return { name: l.name, port: l.port, from: l.from, ...(kinds ? { kinds } : {}) };
      }),
    backend: (ref, route) => {
      const namespace = ref.namespace ?? route.namespace;
      if (ref.kind === EXTERNAL_KIND) {
        return externals.has(`${namespace}/${ref.name}`) ? undefined : { reason: 'BackendNotFound', message: `no ExternalService ${namespace}/${ref.name}` };
      }
      if ((ref.kind ?? 'Service') !== 'Service' || (ref.group ?? '') !== '')
        return { reason: 'InvalidKind', message: `a backendRef of kind ${(ref.kind ?? 'Service').slice(0, 63)} is not a Service` };
      const target = backendTarget(ref, route, {
        grants: config.referenceGrants,
        resolve,
        portsOf: (ns, name) => {
          const service = resolve(ns, name);
          return service === undefined ? undefined : services.get(`${ns}/${service}`)?.ports?.map((p) => p.port);
        },
      });
      return target.invalid;
    },
    refusedListener: (namespace, name, listener) => {
      const r = refused.find((x) => x.gateway === `${namespace}/${name}` && x.listener === listener);
      return r === undefined ? undefined : `${r.type} ${r.status} ${r.reason}: ${r.message}`;
    },
    skipped: (kind, namespace, name) => {
      const s = skippedBy.get(`${OBJECT_PREFIX}${kind}/${namespace}/${name}`);
      const p = s?.problems[0];
      return s === undefined ? undefined : p === undefined ? 'it has problems' : `${p.path ? `${p.path}: ` : ''}${p.message}`;
    },
  };
  return { world, config, versions: versionsKey, skipped, refused };
}

type Obj = Record<string, unknown>;
const rec = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * A Gateway object's listeners as its spec has them (refused ones too), for attaching
 * routes: allowedRoutes `All` or else its own namespace (a selector counts as its own),
 * and the kinds it names or its protocol's (TLSRoute for TLS).
 */
function specListeners(gateway: KubeObject): StatusListener[] {
  return arr(rec(gateway.spec).listeners)
    .map(rec)
    .filter((l) => typeof l.name === 'string' && typeof l.port === 'number')
    .map((l) => {
      const allowed = rec(l.allowedRoutes);
      const named = arr(allowed.kinds)
        .map((k) => rec(k).kind)
        .filter((k): k is string => typeof k === 'string');
      const kinds = named.length > 0 ? named : l.protocol === 'TLS' ? ['TLSRoute'] : undefined;
      return {
        name: l.name as string,
        port: l.port as number,
        from: rec(allowed.namespaces).from === 'All' ? ('All' as const) : ('Same' as const),
        ...(kinds ? { kinds } : {}),
      };
    });
}

/**
 * What the Gateways' status is judged against (src/k8s/source/gateway-status.ts): the
 * Gateways in force in `config`, the `skipped` objects, the listeners `refused` for their
 * certificateRefs, and the routes attached to each listener of the `gateways` objects of
 * class trellis (by parentRefs and allowedRoutes alone, as the Gateway API counts them).
 */
export function gatewayWorld(
  config: ControlConfig,
  skipped: readonly SkippedObject[],
  refused: readonly RefusedListener[],
  routes: ReadonlyMap<string, readonly KubeObject[]>,
  gateways: readonly KubeObject[],
  classes: readonly KubeObject[] = [],
): GatewayWorld {
  const ours = gatewayClassOwner(classes);
  const inForce = new Set((config.gateways ?? []).map((g) => `${g.namespace}/${g.name}`));
  const skippedBy = new Map(skipped.map((s) => [s.object, s]));
  const listenersOf = new Map<string, StatusListener[]>();
  for (const g of gateways) {
    if (!ours(rec(g.spec).gatewayClassName)) continue;
    listenersOf.set(`${g.metadata?.namespace ?? 'default'}/${g.metadata?.name ?? ''}`, specListeners(g));
  }
  const attachWorld = { hasService: () => false, gateway: (namespace: string, name: string) => listenersOf.get(`${namespace}/${name}`) };
  const attached = new Map<string, number>();
  for (const [kind, objects] of routes) {
    for (const route of objects) {
      for (const a of routeAttachments(kind, route, attachWorld))
        attached.set(`${a.gateway}/${a.listener}`, (attached.get(`${a.gateway}/${a.listener}`) ?? 0) + 1);
    }
  }
  return {
    ours: (className) => ours(className),
    verdict: (namespace, name) => {
      const s = skippedBy.get(`${OBJECT_PREFIX}Gateway/${namespace}/${name}`);
      if (s !== undefined) {
        const p = s.problems[0];
        return { inForce: false, problem: p === undefined ? 'it has problems' : `${p.path ? `${p.path}: ` : ''}${p.message}` };
      }
      return inForce.has(`${namespace}/${name}`) ? { inForce: true } : undefined;
    },
    refused: (namespace, name) => refused.filter((r) => r.gateway === `${namespace}/${name}`),
    attachedRoutes: (namespace, name, listener) => attached.get(`${namespace}/${name}/${listener}`) ?? 0,
  };
}
