// The web dashboard the control plane serves at /dashboard/: the page (static-files.ts),
// and its JSON API under /dashboard/api/, every call of which needs the dashboard's
// credential (dashboard-auth.ts). Read views: the model and config (`mesh`), the
// proxies' golden metrics (`stats`, mesh-stats.ts), recent traces (trace-client.ts) and
// the bench's last report. Changes: a service's weights (the weights API the CLI uses)
// and canaries (canaries.ts). The page polls; each answer is one bounded JSON body,
// so a slow browser costs the control plane one response at a time, never a queue.
//
// control-plane.ts registers it in one line: `dashboard.handle(req, res)` answers the
// paths under /dashboard and says false for every other.
import { readBody } from '../../http-body.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorBody, TrellisError } from '../../errors.js';
import type { MeshView, ServiceWeights } from '../../api/dashboard.js';
import type { WeightsChange, WeightsView } from '../../api/admin.js';
import type { ConfigProblem, MeshModel } from '../model.js';
import { configView, proxyView, servicesView } from '../admin/admin-api.js';
import type { WeightsApi } from '../admin/weights-api.js';
import { keyOf } from '../sources/mesh-config.js';
import { DashboardAuth } from './dashboard-auth.js';
import { MeshStats, type MeshStatsOptions } from './mesh-stats.js';
import { Canaries } from './canaries.js';
import { BenchReports } from './bench-report.js';
import { StaticFiles } from './static-files.js';
import type { TraceSource } from './trace-client.js';

export interface DashboardOptions {
  readonly model: MeshModel;
  readonly weights: WeightsApi;
  readonly formatProblem: (p: ConfigProblem) => string;
  /** The admin token: the dashboard's credential. */
  readonly adminToken: string;
  /** Where recent traces come from; absent: the traces section says there are none. */
  readonly traces?: TraceSource;
  /** Where the bench keeps its reports (default: bench/results in the repository). */
  readonly benchResultsDir?: string;
  readonly stats?: Omit<MeshStatsOptions, 'model'>;
  readonly log?: (line: string) => void;
}

const MAX_BODY = 16 * 1024;
const WEIGHTS = /^\/dashboard\/api\/services\/([^/]+)\/weights$/;
const CANARY_ACTION = /^\/dashboard\/api\/canaries\/([^/]+)\/(pause|resume|rollback)$/;
const TRACE = /^\/dashboard\/api\/traces\/([^/]+)$/;

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: TrellisError): void {
  send(res, err.status, errorBody(err));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const text = await readBody(req, MAX_BODY);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: 'the body is not JSON' });
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export class Dashboard {
  readonly #o: DashboardOptions;
  readonly #auth: DashboardAuth;
  readonly #stats: MeshStats;
  readonly #canaries: Canaries;
  readonly #bench: BenchReports;
  readonly #files: StaticFiles;
  /** The last change the dashboard made to each service's weights, to show its ACKs (one per service). */
  readonly #changes = new Map<string, { at: number; change: WeightsChange }>();

  constructor(o: DashboardOptions) {
    this.#o = o;
    this.#auth = new DashboardAuth({ token: o.adminToken });
    this.#stats = new MeshStats({ model: o.model, ...o.stats });
    this.#canaries = new Canaries({ model: o.model, weights: o.weights, ...(o.log ? { log: o.log } : {}) });
    this.#bench = new BenchReports(o.benchResultsDir ?? new URL('../../../../bench/results', import.meta.url).pathname);
    this.#files = new StaticFiles();
  }

  /** Answers a request under /dashboard; false for any other path (the admin API's). */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = new URL(req.url ?? '/', 'http://control').pathname;
    if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
    const done = (err: unknown): void => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof TrellisError) return sendError(res, err);
      this.#o.log?.(`control: dashboard: ${req.method} ${path} failed: ${err instanceof Error ? err.message : String(err)}`);
      sendError(res, new TrellisError('TRELLIS_E_USAGE', { reason: 'the dashboard could not answer; see the control plane log' }));
    };
    this.#route(path, req, res).catch(done);
    return true;
  }

  close(): void {
    this.#canaries.close();
  }

  async #route(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if (path === '/dashboard') {
      res.writeHead(308, { location: '/dashboard/' });
      return void res.end();
    }
    if (!path.startsWith('/dashboard/api/')) return this.#static(path.slice('/dashboard/'.length), method, res);

    if (path === '/dashboard/api/session') return this.#session(method, req, res);
    const auth = this.#auth.authenticate(req);
    if (auth !== 'ok') {
      return sendError(
        res,
        new TrellisError('TRELLIS_E_DASHBOARD_LOGIN_REQUIRED', { reason: auth === 'missing' ? 'no session' : 'the session or token is not valid' }),
      );
    }
    if (method === 'GET' || method === 'HEAD') return this.#read(path, req, res);
    if (!DashboardAuth.sameOrigin(req)) return sendError(res, new TrellisError('TRELLIS_E_DASHBOARD_CSRF'));

    const weights = WEIGHTS.exec(path);
    if (weights && method === 'PUT') {
      const service = safeDecode(weights[1]!);
      const answer = await this.#o.weights.set(service, await readJson(req));
      if (answer.status === 200) this.#changes.set(service, { at: Date.now(), change: answer.body as WeightsChange });
      return send(res, answer.status, answer.body);
    }
    if (path === '/dashboard/api/canaries' && method === 'POST') return send(res, 201, this.#canaries.start(await readJson(req)));
    const action = CANARY_ACTION.exec(path);
    if (action && method === 'POST') {
      const service = safeDecode(action[1]!);
      const view = this.#canaries.control(service, action[2] as 'pause' | 'resume' | 'rollback');
      if (!view) return sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `no canary of ${service} is running` }));
      return send(res, 200, view);
    }
    return sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `no dashboard endpoint ${method} ${path}` }));
  }

  async #static(rel: string, method: string, res: ServerResponse): Promise<void> {
    if (method !== 'GET' && method !== 'HEAD') {
      return sendError(res, new TrellisError('TRELLIS_E_METHOD_NOT_ALLOWED', { path: `/dashboard/${rel}`, allowed: 'GET', method }));
    }
    const file = await this.#files.get(rel);
    if (!file) return sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason: 'no such dashboard file' }));
    res.writeHead(200, {
      'content-type': file.type,
      'content-length': file.body.length,
      'cache-control': 'no-cache',
      'content-security-policy': await this.#files.csp(),
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    res.end(method === 'HEAD' ? undefined : file.body);
  }

  /** POST: trade the login code for a session cookie; DELETE: log out. */
  async #session(method: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A forged login (a page logging the browser in) is a CSRF too: the same checks as changes.
    if (!DashboardAuth.sameOrigin(req)) return sendError(res, new TrellisError('TRELLIS_E_DASHBOARD_CSRF'));
    if (method === 'DELETE') return send(res, 200, { loggedIn: false }, { 'set-cookie': DashboardAuth.clearCookie() });
    if (method !== 'POST') {
      return sendError(res, new TrellisError('TRELLIS_E_METHOD_NOT_ALLOWED', { path: '/dashboard/api/session', allowed: 'POST or DELETE', method }));
    }
    const body = await readJson(req);
    if (!this.#auth.loginCodeValid((body as { code?: unknown } | null)?.code)) {
      return sendError(res, new TrellisError('TRELLIS_E_DASHBOARD_LOGIN_REQUIRED', { reason: 'that login code is not valid for this control plane' }));
    }
    send(res, 200, { loggedIn: true }, { 'set-cookie': this.#auth.newSessionCookie() });
  }

  async #read(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (path === '/dashboard/api/mesh') return send(res, 200, this.meshView());
    if (path === '/dashboard/api/stats') return send(res, 200, await this.#stats.view());
    if (path === '/dashboard/api/bench') return send(res, 200, { report: await this.#bench.latest() });
    if (path === '/dashboard/api/traces') {
      const limit = Number(new URL(req.url ?? '/', 'http://control').searchParams.get('limit') ?? 20);
      return send(res, 200, this.#o.traces ? await this.#o.traces.list(Number.isFinite(limit) ? limit : 20) : { available: false, traces: [] });
    }
    const trace = TRACE.exec(path);
    if (trace) {
      const detail = this.#o.traces ? await this.#o.traces.get(safeDecode(trace[1]!)) : undefined;
      if (!detail) return sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason: 'no such trace' }));
      return send(res, 200, detail);
    }
    return sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `no dashboard endpoint ${path}` }));
  }

  /** The model and the configuration, as the page shows them. */
  meshView(): MeshView {
    const { model } = this.#o;
    const weights: ServiceWeights[] = [];
    for (const s of model.config.services) {
      if (s.versions.length < 2 || s.protocol === 'tcp') continue;
      const answer = this.#o.weights.view(keyOf(s));
      if (answer.status !== 200) continue;
      const last = this.#changes.get(keyOf(s));
      weights.push({
        ...(answer.body as WeightsView),
        lastChange: last
          ? {
              at: new Date(last.at).toISOString(),
              after: last.change.after,
              callers: last.change.callers.map((c) => ({ id: c.id, version: c.version, acked: (model.proxy(c.id)?.ackedVersion ?? 0) >= c.version })),
            }
          : null,
      });
    }
    const policies = (model.config.policies ?? []).map((p) => {
      const r = p.resource as { kind: string; metadata: { name: string; namespace?: string }; spec?: { targetRefs?: readonly { name?: unknown }[] } };
      const targets = Array.isArray(r.spec?.targetRefs) ? r.spec.targetRefs.map((t) => String(t.name ?? '')).slice(0, 50) : [];
      return { kind: r.kind, namespace: r.metadata.namespace ?? 'default', name: r.metadata.name, targets };
    });
    return {
      services: servicesView(model),
      proxies: model.proxies().map(proxyView),
      config: configView(model, this.#o.formatProblem),
      weights,
      canaries: this.#canaries.list(),
      policies,
    };
  }
}
