// What this proxy would do with a request, without sending it (`trellis explain`): which
// destination its Host names, which route of the snapshot in force takes it and why each
// route before it does not, the matched rule's policies, and the candidate endpoints as
// the balancers see them now. It runs the request path's own pieces (the upstream
// layer's host parsing, the router's matcher), never a second copy of them.
import { errorMessage, ERRORS, type ErrorCode } from '../../errors.js';
import type { RouteEntry, Snapshot } from '../../api/protocol.js';
import type { BreakerView, EndpointView, ExplainView } from '../../api/views.js';
import type { RequestHead } from '../../http1/http1-parser.js';
import { addressOf, hostPort, hostToService, type AddressedInstance } from './layers.js';
import { explainRoutes, type CompiledUpstream } from './router.js';

/** The request to explain, as the admin server takes it (JSON). */
export interface ExplainRequest {
  readonly method: string;
  /** The Host (authority) the app would send. */
  readonly authority: string;
  /** The request target: path and query. */
  readonly target: string;
  readonly headers: readonly (readonly [string, string])[];
}

/** What explain reads of the proxy: the snapshot in force and its indexes, and the balancing state. */
export interface ExplainSource {
  readonly proxy: string;
  /** This proxy's own SPIFFE ID (the caller the destination's policies see); null before its certificate. */
  readonly caller: string | null;
  readonly snapshot: Snapshot | null;
  readonly lookupHost: (host: string) => CompiledUpstream | undefined | null;
  readonly lookupAddress: (address: string) => AddressedInstance | undefined | null;
  readonly endpoints: () => readonly EndpointView[];
  readonly breakers: () => readonly BreakerView[];
}

/** Longest method, authority, target and header a request to explain may have. */
const MAX_FIELD = 4096;
const MAX_HEADERS = 100;

/** Checks a request to explain as JSON (anything else is a reason string). */
export function parseExplainRequest(body: unknown): ExplainRequest | string {
  if (typeof body !== 'object' || body === null) return 'the body is not a JSON object';
  const b = body as Record<string, unknown>;
  const str = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_FIELD;
  if (!str(b.method) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(b.method)) return 'method must be an HTTP token';
  if (!str(b.authority) || b.authority === '') return 'authority must be a host name';
  if (!str(b.target) || !b.target.startsWith('/')) return 'target must be a path starting with /';
  const headers: [string, string][] = [];
  if (b.headers !== undefined) {
    if (!Array.isArray(b.headers) || b.headers.length > MAX_HEADERS) return `headers must be a list of at most ${MAX_HEADERS} [name, value] pairs`;
    for (const h of b.headers) {
      if (!Array.isArray(h) || h.length !== 2 || !str(h[0]) || !str(h[1])) return 'each header must be a [name, value] pair of strings';
      headers.push([h[0], h[1]]);
    }
  }
  return { method: b.method, authority: b.authority, target: b.target, headers };
}

/** The head the request to explain would arrive with (what the stack's layers read). */
export function requestHead(r: ExplainRequest): RequestHead {
  const q = r.target.indexOf('?');
  return {
    method: r.method,
    target: r.target,
    path: q === -1 ? r.target : r.target.slice(0, q),
    minor: 1,
    host: r.authority,
    contentLength: -1,
    chunked: false,
    keepAlive: true,
    upgrade: false,
    rewrite: false,
    lines: r.headers.map(([n, v]) => `${n}: ${v}`),
    headBytes: 0,
  };
}

/** Explains `r` against the proxy's snapshot in force, as its HTTP-proxy listener would take it (the Host names the destination). */
export function explain(src: ExplainSource, r: ExplainRequest): ExplainView {
  const req = requestHead(r);
  const base = {
    proxy: src.proxy,
    caller: src.caller,
    snapshotVersion: src.snapshot?.version ?? null,
    request: { method: r.method, authority: r.authority, path: r.target },
    routes: [],
    endpoints: [],
    breakers: [],
    authorization: null,
  } as const;
  const failed = (destination: string | undefined, code: ErrorCode, params: Record<string, unknown>): ExplainView => ({
    ...base,
    destination,
    error: { token: ERRORS[code].token, message: errorMessage(code, params) },
  });
  // As the upstream layer (layers.ts): an address names an instance, a name a service.
  let upstream: CompiledUpstream | undefined;
  let pinned = false;
  const address = addressOf(req.host);
  if (address !== undefined) {
    const found = src.lookupAddress(address);
    if (found === null) return failed(undefined, 'TRELLIS_E_NO_CONFIG', {});
    if (found === undefined) return failed(undefined, 'TRELLIS_E_UNKNOWN_ADDRESS', { address });
    upstream = found.upstream;
    pinned = true;
  } else {
    const service = hostToService(req.host);
    const found = src.lookupHost(service);
    if (found === null) return failed(undefined, 'TRELLIS_E_NO_CONFIG', {});
    if (found === undefined) return failed(undefined, 'TRELLIS_E_UNKNOWN_SERVICE', { service });
    upstream = found;
    if (found.ports !== undefined) {
      const port = hostPort(req.host);
      upstream = found.ports.get(port);
      if (upstream === undefined) return failed(found.service, 'TRELLIS_E_UNKNOWN_PORT', { service: found.service, port, ports: found.portList });
    }
    if (upstream.protocol === 'tcp') return failed(upstream.service, 'TRELLIS_E_UNKNOWN_SERVICE', { service });
  }
  const verdicts = pinned ? [{ route: upstream.direct, result: 'matched' as const }] : explainRoutes(upstream, req);
  const routes = verdicts.map((v) => ({
    name: v.route.name,
    result: v.result,
    ...('condition' in v && v.condition !== undefined ? { condition: v.condition, reason: v.reason } : {}),
  }));
  const matched = verdicts.find((v) => v.result === 'matched')?.route;
  if (matched === undefined) {
    return {
      ...base,
      destination: upstream.key,
      routes,
      error: {
        token: ERRORS.TRELLIS_E_NO_ROUTE.token,
        message: errorMessage('TRELLIS_E_NO_ROUTE', { service: upstream.service, method: req.method, path: req.path }),
      },
    };
  }
  const entry = routeEntry(src.snapshot, matched.name);
  const backends = matched.backends.map((name, i) => ({
    name,
    weight: matched.cumulative[i]! - (i === 0 ? 0 : matched.cumulative[i - 1]!),
    ...(matched.invalid?.[i] !== undefined ? { invalid: matched.invalid[i].reason } : {}),
  }));
  const names = new Set(matched.backends);
  return {
    ...base,
    destination: upstream.key,
    routes,
    matched: {
      name: matched.name,
      backends,
      filters: entry?.filters ?? [],
      ...(matched.timeouts !== undefined ? { timeouts: matched.timeouts } : {}),
      ...(matched.retry !== undefined ? { retry: matched.retry } : {}),
      ...(matched.fault !== undefined ? { fault: matched.fault } : {}),
    },
    endpoints: src.endpoints().filter((e) => e.service === upstream.key && names.has(e.backend)),
    breakers: src.breakers().filter((b) => b.service === upstream.key),
  };
}

/** The snapshot's route entry of that name (its filters as written), in any upstream or port. */
function routeEntry(s: Snapshot | null, name: string): RouteEntry | undefined {
  if (s === null) return undefined;
  for (const u of Object.values(s.upstreams)) {
    for (const one of u.ports ?? [u]) {
      const found = one.routes.find((r) => r.name === name);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
