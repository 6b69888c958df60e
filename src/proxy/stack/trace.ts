// The trace layer: right inside telemetry in every stack, so its span covers everything
// below and ends on the `end` outcome. Outbound it is the hop's client span, inbound
// its server span (OpenTelemetry's HTTP semantic conventions name the attributes).
//
// The hot path decides once per request, from the headers in place (trace-context.ts):
// - the caller did not sample it: nothing is made; the headers pass on unchanged;
// - the caller sampled it, or this proxy samples a new trace (the head rate): a span
//   object, and the request goes on carrying this span's context;
// - a new trace this proxy does not sample: a traceparent with the sampled flag off is
//   added (the one allocation), so later hops share the trace id and the decision.
// Errors are always exported: when a request that was not sampled fails, its span is
// made as it ends, from what the exchange holds (start time, route, endpoint, status).
//
// Retries and mirrored copies are spans of their own, children of the hop's span, each
// carrying its own context to the peer (`traceAttempts` below; request-mirror.ts).
import type { AttributeValue, FinishedSpan } from '../../telemetry/tracing/span.js';
import { ActiveSpan, SpanKind, unixMs } from '../../telemetry/tracing/span.js';
import type { Tracer } from '../../telemetry/tracing/tracer.js';
import { newSpanId, newTraceId } from '../../telemetry/tracing/ids.js';
import {
  contextLines,
  extractTraceContext,
  newUnsampledContextLine,
  REPLACED_TRACE_HEADERS,
  scanTraceContext,
  soleTraceparent,
  TRACE_HEADERS,
  traceparentSpanIdAt,
  TraceScan,
  type TraceContext,
} from '../../telemetry/tracing/trace-context.js';
import { requestFailed, type Direction } from '../../telemetry/metrics.js';
import { HopSpanWriter, spanAttributes, spanMethod } from './span-attributes.js';
import { HeadEdits } from '../filters/head-edits.js';
import type { HeaderModifier } from '../filters/header-modifier.js';
import type { Exchange } from './exchange.js';
import type { Routed } from './decisions.js';
import type { Layer } from './layer.js';
import type { Outcome } from './outcome.js';

export interface TraceOptions {
  readonly direction: Direction;
  /** This proxy's service (the source outbound, the destination inbound) and version. */
  readonly service: string;
  readonly version: string;
  readonly tracer: Tracer;
  /**
   * A Gateway's listener: its requests come from outside the mesh, so the sampling
   * decision they carry is the client's wish, not the mesh's. Unless the Mesh sets
   * `tracing.trustIncomingSampling`, the edge samples at its own rate (keeping the
   * client's trace id and parent), as for a B3 context that defers: otherwise any
   * client could make every proxy of its request trace and export (100% sampling).
   */
  readonly edge?: boolean;
}

/** Headers a sampled span replaces (tracestate passes on as it came). */
const REPLACE: HeaderModifier = { drop: REPLACED_TRACE_HEADERS, append: [] };
/** Headers dropped when none of them made a valid context (tracestate too: it belongs to no trace now). */
const DROP_ALL: HeaderModifier = { drop: TRACE_HEADERS, append: [] };

function dropHeaders(ex: Exchange, m: HeaderModifier): void {
  (ex.headEdits ??= new HeadEdits(ex.req)).headers(m);
}

/** The trace layer of one stack (see the top of this file). */
export function trace(o: TraceOptions): Layer {
  const outbound = o.direction === 'outbound';
  const kind = outbound ? SpanKind.Client : SpanKind.Server;
  const tracer = o.tracer;
  const edge = o.edge === true;
  const hop = new HopSpanWriter(o, kind);

  /** Starts this hop's span as a child of `parent` (undefined: a new trace) and makes the request carry it. */
  const start = (ex: Exchange, parent: TraceContext | undefined): void => {
    const span = new ActiveSpan(tracer, parent?.traceId ?? newTraceId(), newSpanId(), parent?.spanId ?? '', parent?.traceState ?? '', parent?.format ?? 'w3c');
    ex.trace = span;
    ex.extraHead += span.lines;
  };

  /**
   * Inbound, a sampled caller's traceparent the only trace header: this hop's span id is
   * written over the caller's in the header, in the raw head's bytes (forwarded as they
   * came, HTTP/1.1) and in its line (a head rebuilt, HTTP/2), instead of the header being
   * dropped, the head rebuilt and a new header added: the request the app gets is the
   * same but for the header's place (bench --only tracing: the rebuild was 2.0 us of a
   * sampled request, the patch 0.2). Inbound only: outbound, retries and mirrored copies
   * swap the span's lines in extraHead (ActiveSpan.swapLines). False: not done, the
   * head is as it was (its bytes not found as parsed).
   */
  const startInPlace = (ex: Exchange): boolean => {
    const lines = ex.req.lines;
    const at = soleTraceparent(lines);
    if (at < 0) return false;
    const line = lines[at]!;
    const head = ex.head;
    // The line as it stands in the raw head, between two CRLFs (an HTTP/2 request has no raw head).
    const offset = head.length === 0 ? -1 : head.indexOf(`\r\n${line}\r\n`, 0, 'latin1');
    if (head.length > 0 && offset < 0) return false;
    const ctx = extractTraceContext(lines);
    if (ctx === undefined) return false;
    const span = new ActiveSpan(tracer, ctx.traceId, newSpanId(), ctx.spanId, ctx.traceState, 'w3c');
    const idAt = traceparentSpanIdAt(line);
    if (offset >= 0) head.write(span.spanId, offset + 2 + idAt, 'latin1');
    // The exchange's own lines (the parser made them for this request): what a later
    // layer's edits and an HTTP/2 forward build the head from.
    (lines as string[])[at] = `${line.slice(0, idAt)}${span.spanId}${line.slice(idAt + 16)}`;
    ex.trace = span;
    return true;
  };

  const finished = (ex: Exchange, traceId: string, spanId: string, parentSpanId: string, traceState: string, failed: boolean): FinishedSpan => ({
    traceId,
    spanId,
    parentSpanId,
    traceState,
    name: `${spanMethod(ex.req.method)} ${outbound ? ex.service || 'unknown' : o.service}`,
    kind,
    startMs: unixMs(ex.startedAt),
    endMs: unixMs(performance.now()),
    attributes: spanAttributes(o, ex, failed),
    error: failed,
  });

  const end = (ex: Exchange): void => {
    const failed = requestFailed(ex.status, ex.grpcStatus) || ex.errorToken !== '';
    const span = ex.trace;
    if (span !== undefined) {
      span.attempt?.end(attemptAttributes(ex, ex.status, ex.errorToken, outbound), failed);
      // Written only when the exporter has room (a full queue counts the drop instead).
      const w = tracer.beginSpan();
      if (w === undefined) return;
      try {
        hop.write(w, ex, span.traceId, span.spanId, span.parentSpanId, span.traceState, unixMs(ex.startedAt), unixMs(performance.now()), failed);
      } catch (err) {
        tracer.abortSpan(String(err));
        return;
      }
      tracer.endSpan();
      return;
    }
    if (!failed || !tracer.enabled) return;
    // Not sampled, but failed: exported all the same, in the trace its request carried.
    let traceId: string;
    let spanId: string;
    let parent = '';
    let state = '';
    if (ex.traceHead !== '') {
      // `traceparent: 00-<trace id>-<span id>-00\r\n`, as this layer wrote it.
      traceId = ex.traceHead.slice(16, 48);
      spanId = ex.traceHead.slice(49, 65);
    } else {
      const ctx = extractTraceContext(ex.req.lines);
      traceId = ctx?.traceId ?? newTraceId();
      spanId = newSpanId();
      parent = ctx?.spanId ?? '';
      state = ctx?.traceState ?? '';
    }
    tracer.errorSpans++;
    const s = finished(ex, traceId, spanId, parent, state, true);
    (s.attributes as Record<string, AttributeValue>)['trellis.sampled_by'] = 'error';
    tracer.record(s);
  };

  return (next) => ({
    request(ex) {
      if (!tracer.enabled) return next(ex);
      let scan = scanTraceContext(ex.req.lines);
      if (edge && (scan === TraceScan.Sampled || scan === TraceScan.Unsampled) && !tracer.trustIncomingSampling) scan = TraceScan.Deferred;
      if (scan === TraceScan.Unsampled) return next(ex);
      if (scan === TraceScan.Sampled) {
        if (outbound || ex.headEdits !== undefined || !startInPlace(ex)) {
          dropHeaders(ex, REPLACE);
          start(ex, extractTraceContext(ex.req.lines));
        }
      } else if (scan === TraceScan.Deferred) {
        // A B3 context that left the decision to us: ours goes on in its format.
        const ctx = extractTraceContext(ex.req.lines);
        dropHeaders(ex, REPLACE);
        if (tracer.sample()) start(ex, ctx);
        else if (ctx !== undefined) {
          ex.traceHead = contextLines(ctx.traceId, newSpanId(), false, 'w3c');
          ex.extraHead += contextLines(ctx.traceId, ex.traceHead.slice(49, 65), false, ctx.format);
        }
      } else {
        if (scan === TraceScan.Malformed) dropHeaders(ex, DROP_ALL);
        if (tracer.sample()) start(ex, undefined);
        else {
          ex.traceHead = newUnsampledContextLine();
          ex.extraHead += ex.traceHead;
        }
      }
      next(ex);
    },
    back(ex, outcome, outer) {
      const r = outer(ex, outcome);
      // After the layers outside (telemetry) have recorded: they read ex.trace for exemplars.
      if (outcome.kind === 'end') end(ex);
      return r;
    },
  });
}

function attemptAttributes(ex: Exchange, status: number, error: string, outbound: boolean): Record<string, AttributeValue> {
  const a: Record<string, AttributeValue> = {
    'http.request.method': spanMethod(ex.req.method),
    'trellis.retry.attempt': ex.attempts,
    'http.request.resend_count': ex.attempts - 1,
    'trellis.destination.service': outbound ? ex.service || 'unknown' : 'unknown',
  };
  if (ex.route !== undefined) a['http.route'] = ex.route.name;
  const e = ex.endpoint;
  if (e !== undefined) {
    a['server.address'] = e.host;
    a['server.port'] = e.port;
    a['trellis.endpoint'] = e.id;
    a['trellis.destination.version'] = e.version;
  }
  if (status > 0) a['http.response.status_code'] = status;
  if (error !== '') a['error.type'] = error;
  return a;
}

/**
 * Retry attempts as spans of their own: right inside retry, so it sees each attempt
 * retry sends. The first attempt is the hop's span itself; each retry (the exchange's
 * `attempts` above 1) starts a child span and the request carries that span's context,
 * so the peer's server span of the retry is its child. On the way back, before retry
 * decides, the attempt's outcome ends its span.
 */
export const traceAttempts: Layer<Routed> = (next) => ({
  request(ex) {
    const span = ex.trace;
    if (span !== undefined && ex.attempts > 1) {
      const a = span.child(`${spanMethod(ex.req.method)} ${ex.service} retry ${ex.attempts - 1}`, SpanKind.Client);
      ex.extraHead = span.swapLines(ex.extraHead, a);
      span.attempt = a;
    }
    next(ex);
  },
  back(ex, o, outer) {
    const r = outer(ex, o);
    const a = ex.trace?.attempt;
    if (a !== undefined && attemptOver(o, r)) {
      const status = o.kind === 'head' ? o.status : 0;
      const error = o.kind === 'head' || o.kind === 'end' ? '' : o.code;
      a.end(attemptAttributes(ex, status, error, true), error !== '' || status >= 500);
    }
    return r;
  },
});

/** Whether the attempt an outcome reports is over: a failure, or a head a layer took (retried) instead of delivering. */
function attemptOver(o: Outcome, delivered: boolean): boolean {
  if (o.kind === 'end') return false; // the hop's span ends it (trace above), with the exchange's final status
  if (o.kind === 'head') return !delivered;
  return true;
}
