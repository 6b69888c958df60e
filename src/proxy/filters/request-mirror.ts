// RequestMirror: a copy of the request goes to another backend, fire-and-forget. The
// copy is sent on its own short-lived connection (never the pool the real request
// uses), its response is read and discarded, and nothing about it (refused, slow,
// reset) reaches the real request.
//
// Bodies: a request is mirrored only when all of it is already in hand when its
// route is matched: no body, or a body that arrived with the head (small bodies, the
// common case). A request whose body is still streaming is not mirrored, because
// copying it would mean holding the real request back or buffering without bound.
import net from 'node:net';
import type { Exchange } from '../stack/exchange.js';
import type { CompiledBackend } from '../routing/router.js';
import { HeadEdits } from './head-edits.js';
import { SpanKind } from '../../telemetry/tracing/span.js';

/** Mirrors in flight at once per process; beyond it copies are dropped, not queued. */
const MAX_IN_FLIGHT = 256;
/** A mirror target that hasn't answered by then is dropped. */
const MIRROR_TIMEOUT_MS = 10_000;

let inFlight = 0;

/** What happened to one mirror decision (for tests and metrics). */
export type MirrorOutcome = 'sent' | 'sampled-out' | 'body-streaming' | 'no-endpoint' | 'overloaded';

/**
 * Mirrors `ex` to `backend` with probability `percent`/100. `edits` are the request's
 * head edits so far (the copy carries them), if any.
 */
export function mirror(ex: Exchange, backend: CompiledBackend | undefined, percent: number, edits: HeadEdits | undefined, random = Math.random): MirrorOutcome {
  if (percent < 100 && random() * 100 >= percent) return 'sampled-out';
  if (!ex.requestBodyDone || ex.req.upgrade) return 'body-streaming';
  if (inFlight >= MAX_IN_FLIGHT) return 'overloaded';
  const picked = backend?.balancer.pick();
  if (picked === undefined || picked.type !== 'pick') return 'no-endpoint';
  const body = ex.bodyQueue;
  // A sampled request's copy is a span of its own, a child of the hop's, carrying its own context.
  const parent = ex.trace;
  const span = parent?.child(`${ex.req.method.length <= 16 ? ex.req.method : '_OTHER'} ${backend?.name ?? 'mirror'} mirror`, SpanKind.Client);
  const extra = parent === undefined ? ex.extraHead : parent.swapLines(ex.extraHead, span);
  // `connection: close` makes the mirror target end the connection after its answer,
  // so the copy's lifetime needs no response parsing here.
  const bytes = Buffer.from((edits ?? new HeadEdits(ex.req)).serialize(ex.req, `${extra}connection: close\r\n`), 'latin1');
  inFlight++;
  const socket = net.connect({ host: picked.endpoint.host, port: picked.endpoint.port, noDelay: true });
  let done = false;
  let status = 0;
  const end = (): void => {
    if (done) return;
    done = true;
    inFlight--;
    socket.destroy();
    span?.end(
      {
        'trellis.mirror': true,
        'trellis.destination.service': backend?.name ?? 'unknown',
        'server.address': picked.endpoint.host,
        'server.port': picked.endpoint.port,
        'trellis.endpoint': picked.endpoint.id,
        ...(status > 0 ? { 'http.response.status_code': status } : {}),
      },
      status === 0 || status >= 500,
    );
  };
  // The copy's status, for its span: the three digits after `HTTP/1.x ` of the first bytes back.
  if (span !== undefined) {
    socket.once('data', (c: Buffer) => {
      const n = Number(c.toString('latin1', 9, 12));
      if (Number.isInteger(n) && n >= 100 && n <= 599) status = n;
    });
  }
  socket.setTimeout(MIRROR_TIMEOUT_MS, end);
  socket.on('error', end);
  socket.on('close', end);
  socket.resume(); // the answer is read and discarded
  socket.once('connect', () => {
    socket.cork();
    socket.write(bytes);
    if (body !== undefined) for (const chunk of body) socket.write(chunk);
    socket.uncork();
  });
  return 'sent';
}
