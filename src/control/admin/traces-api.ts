// The control plane's trace endpoints, all in this one file: the OTLP/HTTP receiver
// (`POST /v1/traces`, JSON) that sidecars and apps export to, and the reads the dashboard
// and `trellis trace` use (`GET /v1/traces`, `GET /v1/traces/<traceId>`).
//
// Who may call them: `authorize` is the hook, set by control-plane.ts: the reads take the
// admin token, as the rest of the admin API; the receiver also takes spans from processes
// on the control plane's machine (loopback), as the apps `trellis up` starts export there
// without a credential of their own, and from proxies that send their bootstrap
// credential with every export (`trellis-proxy-kind`, `-service`, `-id` and
// `trellis-credential`: security/bootstrap-credential.ts), wherever they run (an isolated
// sidecar's namespace, another machine).
//
// The receiver keeps a body as its bytes and answers at once; bodies are decoded into
// the store when traces are read (traces/pending-bodies.ts says why and how). So a body
// is refused 400 on arrival only for what is cheap to see (not a JSON object from its
// first byte to its last); one found wrong when decoded was answered 200 and is counted
// in what GET /v1/traces answers (`rejected`), as are the spans it rejected.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorBody, TrellisError } from '../../errors.js';
import type { TraceListView } from '../../api/traces.js';
import { TraceStore, type TraceStoreLimits } from '../traces/trace-store.js';
import { PendingBodies, precheckBody, type PendingBodiesLimits } from '../traces/pending-bodies.js';
import { headersCarryCredential } from '../../security/bootstrap-credential.js';
import { isLoopbackAddress } from '../../security/loopback.js';

/** Every trace endpoint, for the admin API's index and for whoever locks the admin API. */
export const TRACES_API = {
  receive: { method: 'POST', path: '/v1/traces' },
  list: { method: 'GET', path: '/v1/traces' },
  show: { method: 'GET', path: '/v1/traces/<traceId>' },
} as const;

/** OTLP bodies over this many bytes are refused 413 (the OpenTelemetry Collector's default is far larger; a proxy's batch of 512 spans is about 400 KB). */
export const DEFAULT_MAX_OTLP_BODY = 4 * 1024 * 1024;

export interface TracesApiOptions extends TraceStoreLimits, PendingBodiesLimits {
  /** Largest body `POST /v1/traces` takes (bytes). */
  readonly maxBodyBytes?: number;
  /** The lock (see the top of this file): false answers 401. Absent: every caller may. */
  readonly authorize?: (req: IncomingMessage, endpoint: keyof typeof TRACES_API) => boolean;
}

/**
 * The lock described at the top of this file: the reads take the admin token (`admin`);
 * the receiver also takes a caller on loopback or one with a valid proxy credential.
 */
export function traceAccess(o: { readonly bootstrapSecret: string; readonly admin: (req: IncomingMessage) => boolean }): TracesApiOptions['authorize'] {
  return (req, endpoint) =>
    (endpoint === 'receive' && (isLoopbackAddress(req.socket.remoteAddress) || headersCarryCredential(o.bootstrapSecret, req.headers))) || o.admin(req);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, err: TrellisError): void {
  res.setHeader('trellis-error', err.token);
  send(res, err.status, errorBody(err));
}

export class TracesApi {
  readonly store: TraceStore;
  /** Bodies taken, not yet decoded into `store` (decoded when traces are read). */
  readonly pending: PendingBodies;
  readonly #o: TracesApiOptions;
  readonly #maxBody: number;
  /** Bodies refused on arrival (media type, size, not a JSON object); what decoding found is `pending.counts`. */
  readonly counts = { bodiesRefused: 0 };

  constructor(o: TracesApiOptions = {}) {
    this.#o = o;
    this.store = new TraceStore(o);
    this.pending = new PendingBodies(this.store, o);
    this.#maxBody = o.maxBodyBytes ?? DEFAULT_MAX_OTLP_BODY;
  }

  /** Whether `path` is one of these endpoints (then `handle` answers it). */
  owns(path: string): boolean {
    return path === '/v1/traces' || path.startsWith('/v1/traces/');
  }

  handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): void {
    if (path === '/v1/traces' && req.method === 'POST') {
      if (this.#o.authorize !== undefined && !this.#o.authorize(req, 'receive')) return this.#unauthorized(req, res);
      return this.#receive(req, res);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', path === '/v1/traces' ? 'GET, HEAD, POST' : 'GET, HEAD');
      return sendError(
        res,
        new TrellisError('TRELLIS_E_METHOD_NOT_ALLOWED', { path, allowed: path === '/v1/traces' ? 'GET or POST' : 'GET', method: req.method }),
      );
    }
    if (path === '/v1/traces') {
      if (this.#o.authorize !== undefined && !this.#o.authorize(req, 'list')) return this.#unauthorized(req, res);
      const limit = Math.min(1000, Math.max(1, Number.parseInt(query.get('limit') ?? '50', 10) || 50));
      const service = query.get('service') ?? undefined;
      // What arrived before this read is decoded first (pending-bodies.ts).
      void this.pending.settle().then(() => {
        const c = this.pending.counts;
        const list: TraceListView = {
          traces: this.store.list(limit, service),
          kept: this.store.size,
          evicted: this.store.evicted,
          refusedBodies: this.counts.bodiesRefused,
          rejected: { bodies: c.rejectedBodies, spans: c.spansRejected, lastProblem: c.lastProblem },
          skippedBodies: c.skippedBodies,
        };
        send(res, 200, list);
      });
      return;
    }
    if (this.#o.authorize !== undefined && !this.#o.authorize(req, 'show')) return this.#unauthorized(req, res);
    const id = path.slice('/v1/traces/'.length);
    if (!/^[0-9a-fA-F]{32}$/.test(id)) return this.#noTrace(res, id);
    void this.pending.settle().then(() => {
      const trace = this.store.get(id);
      if (trace === undefined) this.#noTrace(res, id);
      else send(res, 200, trace);
    });
  }

  #noTrace(res: ServerResponse, id: string): void {
    sendError(res, new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `no trace ${id.length <= 64 ? id : `${id.slice(0, 64)}…`} is kept; see /v1/traces` }));
  }

  #unauthorized(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    res.setHeader('www-authenticate', 'Bearer realm="trellis-admin"');
    sendError(res, new TrellisError('TRELLIS_E_ADMIN_CREDENTIAL_MISSING', { reason: 'the trace reads take the admin token' }));
  }

  #receive(req: IncomingMessage, res: ServerResponse): void {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      this.counts.bodiesRefused++;
      req.resume();
      return sendError(res, new TrellisError('TRELLIS_E_OTLP_MEDIA_TYPE', { type: type === '' ? 'no content-type' : type.slice(0, 64) }));
    }
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > this.#maxBody) {
      this.counts.bodiesRefused++;
      res.setHeader('connection', 'close');
      sendError(res, new TrellisError('TRELLIS_E_BODY_TOO_LARGE', { limit: this.#maxBody }));
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > this.#maxBody) {
        // Chunked and too big: answered at once, the rest never read.
        over = true;
        this.counts.bodiesRefused++;
        res.setHeader('connection', 'close');
        sendError(res, new TrellisError('TRELLIS_E_BODY_TOO_LARGE', { limit: this.#maxBody }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => {});
    req.on('end', () => {
      if (over) return;
      const problem = precheckBody(chunks);
      if (problem !== '') {
        this.counts.bodiesRefused++;
        return sendError(res, new TrellisError('TRELLIS_E_OTLP_INVALID', { reason: problem }));
      }
      // Kept as the chunks it came in (pending-bodies.ts says why that holds no more than its bytes).
      this.pending.push(chunks, size);
      // OTLP's answer of success; what decoding rejects later is counted (see the top of this file).
      send(res, 200, {});
    });
  }
}
