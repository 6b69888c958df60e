// Checks of routes (HTTPRoute, GRPCRoute, TCPRoute) against the mesh they route in:
// parents and backends must be mesh services (or `<service>-<version>` backends) of
// the right protocol, a rule must be able to send traffic somewhere, regular
// expressions must compile, and filters must be able to apply (the pairing of `type`
// and config, and the combinations the Gateway API's CEL rules refuse). Runs only on
// routes that passed their schema (with defaults applied) and a Mesh that passed its own.
import { didYouMean, type Problem, type Segment } from './problems.js';
import { MESH_DEFAULTS, type MeshResource, type RouteResource } from './schema.js';
import { namespaceOf, ServiceIndex } from './service-index.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** A schema-valid route and the document it came from. */
export interface RouteSource {
  doc: SourceDocument;
  resource: RouteResource;
}

type Filter = {
  type: string;
  requestHeaderModifier?: HeaderModifier;
  responseHeaderModifier?: HeaderModifier;
  requestRedirect?: { path?: PathModifier };
  urlRewrite?: { path?: PathModifier };
  requestMirror?: {
    backendRef: { name: string; kind?: string; group?: string; namespace?: string };
    percent?: number;
    fraction?: { numerator: number; denominator?: number };
  };
};
type HeaderModifier = { set?: { name: string }[]; add?: { name: string }[]; remove?: string[] };
type PathModifier = { type: string; replaceFullPath?: string; replacePrefixMatch?: string };

/** The config field each filter type needs (the Gateway API's pairing). */
const FILTER_FIELD: Record<string, keyof Filter> = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
};

// Framing and hop-by-hop headers: editing them would desynchronize the connection.
const PROTECTED_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer']);
// Identity headers name the calling service, and only the proxy sets them
// (src/proxy/identity.ts): a request filter that could would let a route forge a caller.
const IDENTITY_HEADERS = new Set(['trellis-source']);

function regexProblem(value: string): string | undefined {
  try {
    new RegExp(value);
    return undefined;
  } catch (err) {
    return `is not a valid regular expression: ${(err as Error).message}`;
  }
}

/** The kind and group a route names an ExternalService by (as Istio's routes name a ServiceEntry). */
export const EXTERNAL_KIND = 'ExternalService';
export const EXTERNAL_GROUP = 'trellis.dev';

/**
 * Every problem of the routes against the mesh, plus routes defined twice. What is no
 * error but worth telling goes to `warnings`: a backendRef naming no service (the route
 * works; its share of requests is answered 500, as the Gateway API has it).
 */
/**
 * `gateways`: the Gateways of the config (`<namespace>/<name>` → its listener names), which
 * a route's parentRef of kind Gateway must name (and its sectionName one of the listeners).
 */
export function checkRoutes(
  mesh: MeshResource,
  routes: readonly RouteSource[],
  warnings: Problem[] = [],
  gateways: ReadonlyMap<string, ReadonlySet<string>> = new Map(),
  externals: readonly { resource: { metadata: { name: string; namespace?: string }; spec: { ports: readonly { protocol: string }[] } } }[] = [],
): Problem[] {
  const index = new ServiceIndex(mesh);
  // ExternalServices by `<namespace>/<name>` → whether they speak HTTP (routes of kind ExternalService name them).
  const external = new Map(
    externals.map((e) => [`${e.resource.metadata.namespace ?? 'default'}/${e.resource.metadata.name}`, e.resource.spec.ports[0]?.protocol === 'HTTP']),
  );
  /** A reference of kind ExternalService (group trellis.dev): checked here; true when it was one. */
  const externalRef = (
    r: { name: string; kind?: string; group?: string; namespace?: string },
    ns: string,
    path: Segment[],
    at: (path: Segment[], message: string) => void,
    wantHttp: boolean,
  ): boolean => {
    if (r.kind !== EXTERNAL_KIND) return false;
    if (r.group !== EXTERNAL_GROUP) at([...path, 'group'], `must be ${EXTERNAL_GROUP} for kind ${EXTERNAL_KIND} (got "${r.group ?? ''}")`);
    const http = external.get(`${r.namespace ?? ns}/${r.name}`);
    if (http === undefined)
      at([...path, 'name'], `names ExternalService "${r.name}", which is not in the config (ExternalServices: ${[...external.keys()].join(', ') || 'none'})`);
    else if (http !== wantHttp)
      at(
        [...path, 'name'],
        `ExternalService "${r.name}" ${http ? 'speaks HTTP; a TCPRoute applies to TCP ports' : 'is not HTTP; only an HTTP ExternalService takes HTTP routes'}`,
      );
    return true;
  };

  const problems: Problem[] = [];
  const seen = new Map<string, RouteSource>();
  /** tcp service → the TCPRoute that already claims it. */
  const tcpParents = new Map<string, RouteSource>();
  for (const route of routes) {
    const { doc, resource } = route;
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
    const kind = resource.kind;
    const wantProtocol = kind === 'TCPRoute' ? 'tcp' : 'http';

    const routeNs = namespaceOf(resource);
    const id = `${routeNs}/${resource.metadata.name}`;
    const first = seen.get(`${kind}/${id}`);
    if (first) {
      const where = first.doc.locate(['metadata', 'name']);
      at(['metadata', 'name'], `${kind} "${id}" is defined twice (also ${first.doc.file}${where ? `:${where.line}` : ''}); route names must be unique`);
    } else {
      seen.set(`${kind}/${id}`, route);
    }

    // backendRefs and parentRefs without a namespace are in the route's (Gateway API).
    /** `mirror`: a RequestMirror's backendRef, which must exist (a weighted backendRef that does not is only invalid). */
    const checkBackend = (b: { name: string; kind?: string; group?: string; namespace?: string }, path: Segment[], mirror = false): void => {
      if (externalRef(b, routeNs, path, at, wantProtocol !== 'tcp')) return;
      if ((b.kind ?? 'Service') !== 'Service') {
        at([...path, 'kind'], `kind "${b.kind}" is not supported; a backend is a mesh Service (kind: Service)`);
        return;
      }
      if ((b.group ?? '') !== '') {
        at([...path, 'group'], `must be "" (the core group) for kind Service (got "${b.group}")`);
        return;
      }
      const ns = b.namespace ?? routeNs;
      if (!index.hasNamespace(ns) && (b.namespace !== undefined || ns !== MESH_DEFAULTS.namespace)) {
        at(
          [...path, b.namespace !== undefined ? 'namespace' : 'name'],
          `names namespace ${ns}, which no service of the mesh is in (namespaces: ${index.namespaces().join(', ') || 'none'})`,
        );
        return;
      }
      const { known, listed } = index.backends(ns);
      if (!known.has(b.name)) {
        const what = `names "${b.name}", which is neither a mesh service${ServiceIndex.where(ns)} nor <service>-<version> of one (backends${ServiceIndex.where(ns)}: ${listed.join(', ') || 'none'})${didYouMean(b.name, listed)}`;
        if (mirror) at([...path, 'name'], what);
        else warnings.push(problemAt(doc, [...path, 'name'], `${what}; the backendRef is invalid, and the requests its weight would take are answered 500`));
      }
    };

    for (const [i, p] of resource.spec.parentRefs.entries()) {
      const path: Segment[] = ['spec', 'parentRefs', i];
      // A Gateway parent: the route attaches to its listeners (which ones, by sectionName, port and allowedRoutes, when it is compiled).
      if (p.kind === 'Gateway') {
        if (kind === 'TCPRoute') {
          at([...path, 'kind'], 'a TCPRoute attaches to a Service; Gateways serve HTTPRoutes and GRPCRoutes (TLS and TCP listeners are not served yet)');
        } else if (p.group !== undefined && p.group !== '' && p.group !== 'gateway.networking.k8s.io') {
          at([...path, 'group'], `must be gateway.networking.k8s.io for kind Gateway (got "${p.group}")`);
        } else {
          const gwKey = `${p.namespace ?? routeNs}/${p.name}`;
          const listeners = gateways.get(gwKey);
          if (listeners === undefined) {
            at([...path, 'name'], `names Gateway "${gwKey}", which is not in the config (Gateways: ${[...gateways.keys()].join(', ') || 'none'})`);
          } else if (p.sectionName !== undefined && !listeners.has(p.sectionName)) {
            at(
              [...path, 'sectionName'],
              `names listener "${p.sectionName}", which Gateway "${gwKey}" does not have (its listeners: ${[...listeners].join(', ')})`,
            );
          }
        }
        continue;
      }
      if (externalRef(p, routeNs, path, at, wantProtocol !== 'tcp')) continue;
      if ((p.kind ?? 'Service') !== 'Service') {
        at(
          [...path, 'kind'],
          `kind "${p.kind}" is not supported; a route's parent is a Service (kind: Service) or, for an HTTPRoute or GRPCRoute, a Gateway (group gateway.networking.k8s.io)`,
        );
        continue;
      }
      if ((p.group ?? '') !== '') {
        at([...path, 'group'], `must be "" (the core group) for kind Service (got "${p.group}")`);
        continue;
      }
      const parentNs = p.namespace ?? routeNs;
      const service = index.get(parentNs, p.name);
      if (!service) {
        if (!index.hasNamespace(parentNs) && p.namespace !== undefined) {
          at(
            [...path, 'namespace'],
            `names namespace ${parentNs}, which no service of the mesh is in (namespaces: ${index.namespaces().join(', ') || 'none'})`,
          );
          continue;
        }
        at(
          [...path, 'name'],
          `names service "${p.name}"${ServiceIndex.where(parentNs)}, which is not in the mesh (${index.listing(parentNs)})${didYouMean(p.name, index.names(parentNs))}`,
        );
        continue;
      }
      let protocol = service.protocol ?? MESH_DEFAULTS.protocol;
      /** The service ports the route binds to: one, every one, or none listed (a one-port service). */
      let bound: number[] = [];
      if (p.port !== undefined) {
        const ports = service.ports;
        if (ports === undefined) {
          at(
            [...path, 'port'],
            `binds to port ${p.port} of service "${p.name}"${ServiceIndex.where(parentNs)}, which lists no ports (it has one port); remove port, or give "${p.name}" a ports: list`,
          );
          continue;
        }
        const port = ports.find((x) => x.port === p.port);
        if (port === undefined) {
          at(
            [...path, 'port'],
            `binds to port ${p.port}, which service "${p.name}"${ServiceIndex.where(parentNs)} does not have (its ports: ${ports.map((x) => x.port).join(', ')})`,
          );
          continue;
        }
        protocol = port.protocol ?? protocol;
        bound = [port.port];
      } else if (service.ports !== undefined) {
        // Without a port the route binds to every port it can apply to: it is refused only when there is none.
        const fit = service.ports.filter((x) => ((x.protocol ?? protocol) === 'tcp') === (wantProtocol === 'tcp'));
        if (fit.length > 0) protocol = fit[0]?.protocol ?? protocol;
        else protocol = service.ports[0]?.protocol ?? protocol;
        bound = fit.map((x) => x.port);
      }
      // HTTP routes also apply to a service whose protocol is detected; a TCPRoute needs a declared tcp.
      if (wantProtocol === 'tcp' ? protocol !== 'tcp' : protocol === 'tcp') {
        at(
          [...path, 'name'],
          kind === 'TCPRoute'
            ? `names service "${p.name}", whose protocol is ${protocol === 'detect' ? 'not declared (detected per connection); declare protocol: tcp to give it a TCPRoute' : `${protocol}; a TCPRoute only applies to tcp services (use an HTTPRoute)`}`
            : `names service "${p.name}", whose protocol is tcp; an ${kind} only applies to http services`,
        );
        continue;
      }
      if (kind === 'TCPRoute') {
        // One TCPRoute per tcp port (a one-port service: per service).
        const parentKey = `${parentNs}/${p.name}`;
        const keys = bound.length === 0 ? [parentKey] : bound.map((n) => `${parentKey}:${n}`);
        const clash = keys.map((k) => tcpParents.get(k)).find((c) => c !== undefined && c !== route);
        if (clash) {
          at(
            [...path, 'name'],
            `service "${p.name}"${ServiceIndex.where(parentNs)}${bound.length === 1 ? ` port ${bound[0]}` : ''} already has a TCPRoute (${clash.resource.metadata.name} in ${clash.doc.file}); a tcp port takes one`,
          );
        } else {
          for (const k of keys) tcpParents.set(k, route);
        }
      }
    }

    /** Checks filters at `path`; `prefixOnly` is set when every match of the rule is a PathPrefix. */
    const checkFilters = (filters: readonly Filter[] | undefined, path: Segment[], level: 'rule' | 'backendRef', prefixOnly: boolean): void => {
      if (!filters) return;
      const count = new Map<string, number>();
      for (const [i, f] of filters.entries()) {
        const fp: Segment[] = [...path, i];
        const field = FILTER_FIELD[f.type]!;
        for (const other of Object.values(FILTER_FIELD)) {
          if (other !== field && f[other] !== undefined) at([...fp, other], `is set, but the filter's type is ${f.type}; set only ${field}`);
        }
        if (f[field] === undefined) {
          at([...fp, field], `is required for a filter of type ${f.type}`);
          continue;
        }
        count.set(f.type, (count.get(f.type) ?? 0) + 1);
        if (f.type !== 'RequestMirror' && count.get(f.type) === 2) {
          at([...fp, 'type'], `a second ${f.type} filter; each filter type except RequestMirror may appear once`);
        }
        if (f.type === 'RequestRedirect' && level === 'backendRef') {
          at([...fp, 'type'], 'RequestRedirect answers the client and sends nothing to a backend; put it on the rule');
        }
        const modifier = f.requestHeaderModifier ?? f.responseHeaderModifier;
        if (modifier) {
          const mp: Segment[] = [...fp, field];
          const request = f.requestHeaderModifier !== undefined;
          const names = new Set<string>();
          const checkName = (name: string, p: Segment[]) => {
            const lower = name.toLowerCase();
            if (PROTECTED_HEADERS.has(lower)) at(p, `"${name}" frames the message or the connection and can't be edited by a filter`);
            else if (request && IDENTITY_HEADERS.has(lower)) at(p, `"${name}" names the calling service; only the proxy sets it, a filter can't`);
            else if (names.has(lower)) at(p, `"${name}" is edited twice in one filter; name each header once across set, add and remove`);
            names.add(lower);
          };
          for (const [k, h] of modifier.set?.entries() ?? []) checkName(h.name, [...mp, 'set', k, 'name']);
          for (const [k, h] of modifier.add?.entries() ?? []) checkName(h.name, [...mp, 'add', k, 'name']);
          for (const [k, n] of modifier.remove?.entries() ?? []) checkName(n, [...mp, 'remove', k]);
        }
        const pm = f.requestRedirect?.path ?? f.urlRewrite?.path;
        if (pm) {
          const pp: Segment[] = [...fp, field, 'path'];
          const want = pm.type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
          const other = pm.type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
          if (pm[want] === undefined) at([...pp, want], `is required when path.type is ${pm.type}`);
          if (pm[other] !== undefined) at([...pp, other], `is set, but path.type is ${pm.type}; set only ${want}`);
          if (pm.type === 'ReplacePrefixMatch' && !prefixOnly) {
            at([...pp, 'type'], 'ReplacePrefixMatch replaces the matched path prefix, so every match of the rule must be a PathPrefix path match');
          }
        }
        const mirror = f.requestMirror;
        if (mirror) {
          const mp: Segment[] = [...fp, 'requestMirror'];
          checkBackend(mirror.backendRef, [...mp, 'backendRef'], true);
          if (mirror.percent !== undefined && mirror.fraction !== undefined) at([...mp, 'fraction'], 'set either percent or fraction, not both');
          if (mirror.fraction && mirror.fraction.numerator > (mirror.fraction.denominator ?? 100)) {
            at([...mp, 'fraction', 'numerator'], `must be at most the denominator (${mirror.fraction.denominator ?? 100})`);
          }
        }
      }
      if (count.has('RequestRedirect') && count.has('URLRewrite')) {
        at(path, 'has both RequestRedirect and URLRewrite; a request is either redirected or rewritten, so keep one');
      }
    };

    (
      resource.spec.rules as readonly {
        matches?: readonly {
          path?: { type?: string; value?: string };
          method?: { type?: string; service?: string; method?: string } | string;
          headers?: readonly { type?: string; value: string }[];
          queryParams?: readonly { type?: string; value: string }[];
        }[];
        filters?: readonly Filter[];
        backendRefs?: readonly { name: string; kind?: string; group?: string; weight?: number; filters?: readonly Filter[] }[];
      }[]
    ).forEach((rule, r) => {
      const rulePath: Segment[] = ['spec', 'rules', r];
      const refs = rule.backendRefs ?? [];
      const redirects = rule.filters?.some((f) => f.type === 'RequestRedirect') ?? false;
      const prefixOnly = (rule.matches ?? [{}]).every((m) => (m.path?.type ?? 'PathPrefix') === 'PathPrefix');
      refs.forEach((b, k) => {
        checkBackend(b, [...rulePath, 'backendRefs', k]);
        checkFilters(b.filters, [...rulePath, 'backendRefs', k, 'filters'], 'backendRef', prefixOnly);
      });
      if (refs.length === 0 && !redirects) {
        at([...rulePath, 'backendRefs'], 'is required: give the rule at least one backendRef (or a RequestRedirect filter, which needs none)');
      } else if (refs.length > 0 && refs.every((b) => (b.weight ?? 1) === 0)) {
        at([...rulePath, 'backendRefs'], 'every backendRef has weight 0, so the rule could send traffic nowhere; give at least one a weight above 0');
      }
      checkFilters(rule.filters, [...rulePath, 'filters'], 'rule', prefixOnly);
      rule.matches?.forEach((m, i) => {
        const mp: Segment[] = [...rulePath, 'matches', i];
        if (kind === 'HTTPRoute' && m.path?.value !== undefined) {
          if (m.path.type === 'RegularExpression') {
            const bad = regexProblem(m.path.value);
            if (bad) at([...mp, 'path', 'value'], bad);
          } else if (!m.path.value.startsWith('/')) {
            at([...mp, 'path', 'value'], `must be a path starting with / (got "${m.path.value}")`);
          }
        }
        const gm = typeof m.method === 'object' ? m.method : undefined;
        if (gm) {
          if (gm.service === undefined && gm.method === undefined) at([...mp, 'method'], 'names neither service nor method; set at least one');
          for (const part of ['service', 'method'] as const) {
            const v = gm[part];
            if (v === undefined) continue;
            if (gm.type === 'RegularExpression') {
              const bad = regexProblem(v);
              if (bad) at([...mp, 'method', part], bad);
            } else if (v.includes('/')) {
              at([...mp, 'method', part], `must not contain "/" (got "${v}")`);
            }
          }
        }
        m.headers?.forEach((h, k) => {
          if (h.type !== 'RegularExpression') return;
          const bad = regexProblem(h.value);
          if (bad) at([...mp, 'headers', k, 'value'], bad);
        });
        m.queryParams?.forEach((q, k) => {
          if (q.type !== 'RegularExpression') return;
          const bad = regexProblem(q.value);
          if (bad) at([...mp, 'queryParams', k, 'value'], bad);
        });
      });
    });
  }
  return problems;
}
