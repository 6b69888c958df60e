// The control plane's JSON API: what the model holds, shaped for people and for
// `trellis status`. Every view is a plain function of the model; the request handler
// only picks the view by path. The one write is a service's weights (weights-api.ts).
import { redactSnapshot } from '../../api/redact.js';
import { readBody } from '../../http-body.js';
import type { IdentityService } from '../ca/identity-service.js';
import type { ControlMetrics } from '../control-metrics.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorBody, TrellisError } from '../../errors.js';
import type { ConfigProblem, HealthState, Instance, MeshModel, ProxyState } from '../model.js';
import { routeKey } from '../compile/routes.js';
import { keyOf } from '../sources/mesh-config.js';
import { DEFAULT_NAMESPACE } from '../../api/names.js';
import type { Answer, WeightsApi } from './weights-api.js';
import { prometheusTargets } from './prometheus-sd.js';
import type { AdminAuth } from './admin-auth.js';
import type { TracesApi } from './traces-api.js';
import type { ConfigView, HealthView, InstanceView, KubernetesUnlistedKind, KubernetesView, ProxyView, ServiceView } from '../../api/admin.js';
export type { ConfigView, HealthView, InstanceView, ProxyView, ServiceView } from '../../api/admin.js';

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

export function healthView(h: HealthState | undefined): HealthView {
  return {
    status: h?.status ?? 'unknown',
    since: iso(h?.since),
    lastCheck: iso(h?.lastCheck),
    lastError: h?.lastError ?? null,
    consecutiveSuccesses: h?.consecutiveSuccesses ?? 0,
    consecutiveFailures: h?.consecutiveFailures ?? 0,
  };
}

export function instanceView(model: MeshModel, i: Instance): InstanceView {
  return {
    id: i.id,
    service: i.service,
    version: i.version,
    app: i.app ?? null,
    inbound: i.inbound ?? null,
    admin: i.admin,
    pid: i.pid,
    registeredAt: iso(i.registeredAt),
    health: healthView(model.health(i.id)),
  };
}

export function servicesView(model: MeshModel): ServiceView[] {
  const instances = model.instances().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return model.config.services.map((s) => ({
    name: keyOf(s),
    ...(s.namespace !== undefined && s.namespace !== DEFAULT_NAMESPACE ? { namespace: s.namespace } : {}),
    protocol: s.protocol,
    public: s.public ? { ...s.public } : null,
    upstreams: s.upstreams.map((u) => ({ ...u })),
    versions: s.versions.map((v) => ({ name: v.name, labels: { ...v.labels }, replicas: v.replicas })),
    instances: instances.filter((i) => i.service === keyOf(s)).map((i) => instanceView(model, i)),
  }));
}

export function proxyView(p: ProxyState): ProxyView {
  return {
    id: p.id,
    service: p.service,
    version: p.version,
    kind: p.kind,
    admin: p.info.admin,
    connected: p.connected,
    connectedAt: iso(p.connectedAt),
    disconnectedAt: iso(p.disconnectedAt),
    sentVersion: p.sentVersion ?? null,
    ackedVersion: p.ackedVersion ?? null,
    lastNack: p.lastNack ? { version: p.lastNack.version, error: p.lastNack.error, at: iso(p.lastNack.at) } : null,
  };
}

export function configView(model: MeshModel, formatProblem: (p: ConfigProblem) => string): ConfigView {
  const state = model.configState;
  return {
    files: [...state.files],
    loadedAt: iso(state.loadedAt),
    services: state.config.services.map(keyOf),
    routes: state.config.routes.map((r) => routeKey(r.resource)),
    policies: [
      ...(state.config.policies ?? []).map((p) => `${p.resource.kind} ${p.resource.metadata.namespace ?? 'default'}/${p.resource.metadata.name}`),
      ...(state.config.authorizationPolicies ?? []).map((p) => `AuthorizationPolicy ${p.resource.metadata.namespace ?? 'default'}/${p.resource.metadata.name}`),
    ],
    reloadFailed: state.failedReload
      ? { at: iso(state.failedReload.at), problems: state.failedReload.problems.map((p) => ({ ...p, text: formatProblem(p) })) }
      : null,
    restoredFrom: state.restored ? { file: state.restored.from, savedAt: iso(state.restored.savedAt) } : null,
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Every error answer of the admin API: the status the error table gives its code. */
function sendError(res: ServerResponse, err: TrellisError): void {
  send(res, err.status, errorBody(err));
}

function notFound(res: ServerResponse, reason: string): void {
  sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason }));
}

export interface AdminApiOptions {
  model: MeshModel;
  formatProblem: (p: ConfigProblem) => string;
  /** Serves /v1/services/<name>/weights; without it that path is a 404. */
  weights?: WeightsApi;
  /** Serves /v1/identity (the CA and every proxy's certificate) and /v1/identity/<proxyId>. */
  identity?: IdentityService;
  /** Serves /metrics. */
  metrics?: ControlMetrics;
  /** Who may use the API (admin-auth.ts): every path but /healthz needs the admin token. */
  auth: AdminAuth;
  /** Serves /v1/traces (the OTLP receiver and recent traces; traces-api.ts). */
  traces?: TracesApi;
  /** With `--kubernetes`: the security kinds never listed, for /v1/kubernetes (absent: `enabled: false`). */
  kubernetes?: { readonly unlisted: KubernetesUnlistedKind[] };
}

const ENDPOINTS = [
  '/healthz',
  '/v1/services',
  '/v1/services/<name>/weights (GET, PUT)',
  '/v1/instances',
  '/v1/proxies',
  '/v1/config',
  '/v1/snapshots/<proxyId>',
  '/v1/identity',
  '/v1/kubernetes',
  '/v1/identity/<proxyId>',
  '/metrics',
  '/v1/prometheus/targets (Prometheus http_sd_configs)',
  '/v1/traces (GET recent traces; POST OTLP/HTTP JSON spans)',
  '/v1/traces/<traceId>',
  '/v1/stream (Upgrade: trellis-stream)',
];

const WEIGHTS_PATH = /^\/v1\/services\/([^/]+)\/weights$/;
const MAX_BODY = 64 * 1024;

function reply(res: ServerResponse, answer: Answer): void {
  send(res, answer.status, answer.body);
}

/**
 * PUT of a service's weights. Browsers send an Origin header with every PUT, and a page
 * must not steer the mesh (a cross-site request, or DNS rebinding to 127.0.0.1), so
 * requests that carry one are refused; the CLI sends none.
 */
function putWeights(api: WeightsApi, service: string, req: IncomingMessage, res: ServerResponse): void {
  if (req.headers.origin !== undefined) {
    return sendError(res, new TrellisError('TRELLIS_E_ORIGIN_REFUSED'));
  }
  readBody(req, MAX_BODY).then(
    (text) => {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return sendError(
          res,
          new TrellisError('TRELLIS_E_WEIGHTS_INVALID', { service, reason: 'the body is not JSON; send {"weights": {"v1": 90, "v2": 10}}' }),
        );
      }
      api.set(service, body).then(
        (answer) => reply(res, answer),
        (err: unknown) => {
          // Not a refusal the weights API made (those come back as answers): the edit failed on the way, e.g. writing the file.
          sendError(res, new TrellisError('TRELLIS_E_WEIGHTS_REFUSED', { service, reason: err instanceof Error ? err.message : String(err) }));
        },
      );
    },
    (err: unknown) => sendError(res, err instanceof TrellisError ? err : new TrellisError('TRELLIS_E_USAGE', { reason: 'the request body could not be read' })),
  );
}

/** The `request` handler of the control plane's HTTP server (the admin API). */
export function createAdminHandler(opts: AdminApiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { model } = opts;
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    // The trace endpoints (one of them a POST) answer in traces-api.ts, with their own lock
    // (control-plane.ts: the reads take the admin token; the receiver also takes spans from this machine).
    if (opts.traces?.owns(path)) return opts.traces.handle(req, res, path, url.searchParams);
    // The door comes first: nothing else of the request is read before the credential is.
    const refused = opts.auth.check(req, path);
    if (refused) {
      if (refused.status === 401) res.setHeader('www-authenticate', 'Bearer realm="trellis-admin"');
      return sendError(res, refused);
    }
    const weights = opts.weights ? WEIGHTS_PATH.exec(path) : null;
    if (weights && opts.weights) {
      const service = safeDecode(weights[1]!);
      if (req.method === 'PUT') return putWeights(opts.weights, service, req, res);
      if (req.method === 'GET' || req.method === 'HEAD') return reply(res, opts.weights.view(service));
      res.setHeader('allow', 'GET, HEAD, PUT');
      return sendError(res, new TrellisError('TRELLIS_E_METHOD_NOT_ALLOWED', { path, allowed: 'GET or PUT', method: req.method }));
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendError(
        res,
        new TrellisError('TRELLIS_E_METHOD_NOT_ALLOWED', {
          path,
          allowed: 'GET only (the admin API is read-only except PUT /v1/services/<name>/weights)',
          method: req.method,
        }),
      );
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      return void res.end('ok\n');
    }
    if (path === '/' || path === '/v1') return send(res, 200, { name: 'trellis control plane', endpoints: ENDPOINTS });
    if (path === '/v1/services') return send(res, 200, { services: servicesView(model) });
    if (path === '/v1/instances') {
      const instances = model.instances().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return send(res, 200, { instances: instances.map((i) => instanceView(model, i)) });
    }
    if (path === '/v1/proxies') return send(res, 200, { proxies: model.proxies().map(proxyView) });
    if (path === '/v1/config') return send(res, 200, configView(model, opts.formatProblem));
    if (path === '/v1/kubernetes') {
      const view: KubernetesView = { enabled: opts.kubernetes !== undefined, unlisted: opts.kubernetes?.unlisted ?? [] };
      return send(res, 200, view);
    }
    if (path === '/v1/prometheus/targets') return send(res, 200, prometheusTargets(model));
    if (path.startsWith('/v1/snapshots/')) {
      const id = safeDecode(path.slice('/v1/snapshots/'.length));
      const snapshot = model.proxy(id)?.lastSnapshot;
      if (!snapshot) return notFound(res, `no snapshot was sent to a proxy with id "${id}"; see /v1/proxies`);
      return send(res, 200, redactSnapshot(snapshot));
    }
    if (path === '/metrics' && opts.metrics) {
      const m = opts.metrics;
      m.text().then(
        (text) => {
          res.writeHead(200, { 'content-type': m.contentType });
          res.end(text);
        },
        (err: unknown) => sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `metrics unavailable: ${String(err)}` })),
      );
      return;
    }
    // Certificates and roots are public; no key is ever held where these views are made.
    if (path === '/v1/identity' && opts.identity) return send(res, 200, { ca: opts.identity.ca.view(), certificates: opts.identity.allIssued() });
    if (path.startsWith('/v1/identity/') && opts.identity) {
      const id = safeDecode(path.slice('/v1/identity/'.length));
      const issued = opts.identity.issued(id);
      if (!issued) return notFound(res, `no certificate was issued to a proxy with id "${id}"; see /v1/identity`);
      return send(res, 200, issued);
    }
    if (path === '/v1/stream') {
      return sendError(res, new TrellisError('TRELLIS_E_UPGRADE_REQUIRED', { protocol: 'trellis-stream' }));
    }
    return notFound(res, `no admin endpoint at ${path}; try one of ${ENDPOINTS.join(', ')}`);
  };
}
