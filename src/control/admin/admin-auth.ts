// Who may use the admin API: whoever presents the admin token (admin-token.ts) as
// `Authorization: Bearer <token>`. Only liveness (/healthz) is open. Every other path is
// locked, reads included: the services, instances, proxies, snapshots, identities,
// metrics and Prometheus targets are a map of the mesh, and Istio (istiod's debug and
// config endpoints) and Linkerd (its API behind the Kubernetes API's RBAC) keep theirs
// behind a credential too. The proxy stream (/v1/stream) has its own door: the bootstrap
// credential of each instance (distribute/distributor.ts).
//
// A refusal is a TrellisError from the one table (401 without a credential, 403 with a
// wrong one), counted in trellis_control_admin_refused_total, and logged at most
// REFUSAL_LOG_PER_MINUTE times a minute (anyone who reaches the port can send requests;
// the metric counts every one). The log names the method, the path and the peer's
// address, never a header's value.
import { LogLimiter } from '../../log-limiter.js';
import type { IncomingMessage } from 'node:http';
import { TrellisError } from '../../errors.js';
import { AdminTokenCheck } from '../../security/admin-token.js';
import type { AdminRefusal, ControlMetrics } from '../control-metrics.js';

/**
 * Paths anyone may read: liveness only (the runner and supervisors poll it before any
 * credential is at hand). Paths the proxies call (an OTLP receiver for their spans, say)
 * do not belong here nor behind the admin token, which proxies never hold: serve them
 * before the admin handler (control-plane.ts, where the stream's upgrade is routed) and
 * check the caller's bootstrap credential there (src/security/bootstrap-credential.ts).
 */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz']);

/** Refusals logged per minute at most; the rest are counted in one line, and every one in the metric. */
export const REFUSAL_LOG_PER_MINUTE = 20;

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS']);

export interface AdminAuthOptions {
  /** The admin token. */
  token: string;
  metrics?: ControlMetrics;
  log: (line: string) => void;
  /** The clock of the log's rate limit (tests). */
  now?: () => number;
}

/** A request line's path as it may appear in a log: printable ASCII, at most 100 characters. */
function loggablePath(path: string): string {
  const clean = path.replace(/[^\x21-\x7e]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 100)}…` : clean;
}

export class AdminAuth {
  readonly #check: AdminTokenCheck;
  readonly #metrics?: ControlMetrics;
  readonly #refusals: LogLimiter;

  constructor(o: AdminAuthOptions) {
    this.#check = new AdminTokenCheck(o.token);
    this.#metrics = o.metrics;
    this.#refusals = new LogLimiter({
      perMinute: REFUSAL_LOG_PER_MINUTE,
      log: o.log,
      dropped: (n) => `control: admin API: ${n} more refusals not logged in the last minute`,
      ...(o.now ? { now: o.now } : {}),
    });
  }

  /** Undefined when the request may go on; else the error to answer it with (already counted and logged). */
  check(req: IncomingMessage, path: string): TrellisError | undefined {
    if (OPEN_PATHS.has(path)) return undefined;
    const header = req.headers.authorization;
    if (header === undefined || header.trim() === '') {
      return this.#refuse(req, path, 'missing', new TrellisError('TRELLIS_E_ADMIN_CREDENTIAL_MISSING', { reason: 'the request has no Authorization header' }));
    }
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (m === null) {
      return this.#refuse(
        req,
        path,
        'wrong',
        new TrellisError('TRELLIS_E_ADMIN_CREDENTIAL_REFUSED', { reason: 'the Authorization header is not a Bearer token' }),
      );
    }
    if (!this.#check.matches(m[1]!)) {
      return this.#refuse(req, path, 'wrong', new TrellisError('TRELLIS_E_ADMIN_CREDENTIAL_REFUSED', { reason: 'the bearer token is not the admin token' }));
    }
    return undefined;
  }

  #refuse(req: IncomingMessage, path: string, reason: AdminRefusal, err: TrellisError): TrellisError {
    this.#metrics?.adminRefused(reason);
    this.#refusals.write(() => {
      const method = METHODS.has(req.method ?? '') ? req.method : 'other';
      const why = reason === 'missing' ? 'no credential' : String(err.params.reason);
      return `control: admin API: refused ${method} ${loggablePath(path)} from ${req.socket.remoteAddress ?? '?'}: ${why} (${err.status})`;
    });
    return err;
  }
}
