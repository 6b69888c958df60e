// Recent traces for the dashboard's waterfall, read from the control plane's trace store
// (the OTLP receiver keeps recent traces in memory and serves them). The shape the
// dashboard expects is written here; anything else is left out, so a store that answers
// differently, or not at all, costs the dashboard its traces section ("no traces yet"),
// never the page.
//
//   GET /v1/traces?limit=N  → { traces: TraceSummary[] }            newest first
//   GET /v1/traces/<id>     → { traceId, spans: TraceSpan[] }        404 when unknown
//
// Everything in a trace came from requests or apps (span names, attributes): the page
// shows it as text only. Sizes are bounded here: at most 50 traces, 500 spans a trace,
// 30 attributes a span, 256 characters a string.

/** One trace in the list. Times are ms since the epoch (fractions allowed). */
export interface TraceSummary {
  readonly traceId: string;
  /** The service of the root span (or of the earliest span). */
  readonly rootService: string;
  /** The root span's name, e.g. `GET /api/products`. */
  readonly rootName: string;
  readonly startMs: number;
  readonly durationMs: number;
  readonly spanCount: number;
  /** Some span ended with an error status. */
  readonly error: boolean;
}

export interface TraceSpan {
  readonly spanId: string;
  readonly parentSpanId: string | null;
  readonly service: string;
  readonly name: string;
  /** OTLP span kind, lower case: server, client, internal, producer, consumer. */
  readonly kind: string;
  readonly startMs: number;
  readonly durationMs: number;
  readonly error: boolean;
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
}

export interface TraceDetail {
  readonly traceId: string;
  readonly spans: readonly TraceSpan[];
}

/** Where the dashboard reads traces; `available: false` when there is no store (yet). */
export interface TraceSource {
  list(limit: number): Promise<{ available: boolean; traces: TraceSummary[] }>;
  get(id: string): Promise<TraceDetail | undefined>;
}

const MAX_TRACES = 50;
const MAX_SPANS = 500;
const MAX_ATTRIBUTES = 30;
const MAX_STRING = 256;
const TRACE_ID = /^[0-9a-f]{16,32}$/i;

const str = (v: unknown, fallback = ''): string => (typeof v === 'string' ? v.slice(0, MAX_STRING) : fallback);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** The list as the store answered it, cut to the documented shape. */
export function normalizeTraceList(body: unknown): TraceSummary[] {
  const traces = (body as { traces?: unknown } | null)?.traces;
  if (!Array.isArray(traces)) return [];
  const out: TraceSummary[] = [];
  for (const t of traces.slice(0, MAX_TRACES)) {
    if (typeof t !== 'object' || t === null) continue;
    const r = t as Record<string, unknown>;
    if (typeof r.traceId !== 'string' || !TRACE_ID.test(r.traceId)) continue;
    out.push({
      traceId: r.traceId,
      rootService: str(r.rootService, '?'),
      rootName: str(r.rootName, '?'),
      startMs: num(r.startMs),
      durationMs: num(r.durationMs),
      spanCount: Math.round(num(r.spanCount)),
      error: r.error === true,
    });
  }
  return out;
}

/** One trace as the store answered it, cut to the documented shape; undefined when it is not one. */
export function normalizeTrace(body: unknown): TraceDetail | undefined {
  const r = body as { traceId?: unknown; spans?: unknown } | null;
  if (typeof r?.traceId !== 'string' || !TRACE_ID.test(r.traceId) || !Array.isArray(r.spans)) return undefined;
  const spans: TraceSpan[] = [];
  for (const s of r.spans.slice(0, MAX_SPANS)) {
    if (typeof s !== 'object' || s === null) continue;
    const x = s as Record<string, unknown>;
    const attributes: Record<string, string | number | boolean> = {};
    if (typeof x.attributes === 'object' && x.attributes !== null) {
      for (const [k, v] of Object.entries(x.attributes).slice(0, MAX_ATTRIBUTES)) {
        if (typeof v === 'string') attributes[k.slice(0, MAX_STRING)] = v.slice(0, MAX_STRING);
        else if (typeof v === 'number' || typeof v === 'boolean') attributes[k.slice(0, MAX_STRING)] = v;
      }
    }
    spans.push({
      spanId: str(x.spanId),
      parentSpanId: typeof x.parentSpanId === 'string' && x.parentSpanId !== '' ? x.parentSpanId.slice(0, MAX_STRING) : null,
      service: str(x.service, '?'),
      name: str(x.name, '?'),
      kind: str(x.kind, 'internal'),
      startMs: num(x.startMs),
      durationMs: num(x.durationMs),
      error: x.error === true,
      attributes,
    });
  }
  return { traceId: r.traceId, spans };
}

/**
 * Reads traces over HTTP from `base` (the control plane's own URL, where the tracing
 * work serves /v1/traces), sending the admin token. An absent endpoint (404), an error
 * or a timeout reads as "no store".
 */
export function httpTraceSource(base: string, token: string | undefined, timeoutMs = 2000): TraceSource {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const get = async (path: string): Promise<unknown> => {
    const res = await fetch(`${base.replace(/\/+$/, '')}${path}`, { headers, signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    const text = await res.text();
    if (text.length > 8 * 1024 * 1024) return undefined;
    return JSON.parse(text) as unknown;
  };
  return {
    async list(limit) {
      try {
        const body = await get(`/v1/traces?limit=${Math.min(Math.max(1, Math.round(limit)), MAX_TRACES)}`);
        return body === undefined ? { available: false, traces: [] } : { available: true, traces: normalizeTraceList(body) };
      } catch {
        return { available: false, traces: [] };
      }
    },
    async get(id) {
      if (!TRACE_ID.test(id)) return undefined;
      try {
        const body = await get(`/v1/traces/${id}`);
        return body === undefined ? undefined : normalizeTrace(body);
      } catch {
        return undefined;
      }
    },
  };
}
