// The control plane's memory of recent traces: spans taken in by the OTLP receiver
// (traces-api.ts) from sidecars and apps, grouped by trace, bounded in every direction.
// Bodies come from anything that can reach the admin port, so everything is checked:
// a span with a malformed id, time or kind is rejected (counted, the rest of the body
// kept, as OTLP's partial success allows), strings are cut, attributes capped, and the
// oldest trace goes when a new one would pass the limit. Nothing here is kept on disk.
import type { SpanView, TraceSummaryView, TraceView } from '../../api/traces.js';

export interface TraceStoreLimits {
  /** Traces kept; the least recently updated goes first (default 1000). */
  readonly maxTraces?: number;
  /** Spans kept per trace; more are counted, not kept (default 1000). */
  readonly maxSpansPerTrace?: number;
  /** Attributes kept per span (default 64). */
  readonly maxAttributes?: number;
  /** Characters kept of a string (names, attribute values; default 512). */
  readonly maxStringLength?: number;
}

export const TRACE_STORE_DEFAULTS = { maxTraces: 1000, maxSpansPerTrace: 1000, maxAttributes: 64, maxStringLength: 512 } as const;

interface StoredTrace {
  readonly spans: SpanView[];
  dropped: number;
}

/** What one body added: spans kept, and spans rejected with the first reason. */
export interface IngestResult {
  accepted: number;
  rejected: number;
  firstProblem: string;
}

/**
 * `v` as a lower-case id of `n` hex digits (either case taken), or '' when it is not one,
 * or is all zero and `zero` is false. A loop rather than toLowerCase and a regular
 * expression: the receiver checks three ids per span, at 100% sampling two spans per
 * request through a pair, on the cores the proxies use.
 */
function hexId(v: unknown, n: number, zero: boolean): string {
  if (typeof v !== 'string' || v.length !== n) return '';
  let upper = false;
  let nonZero = false;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (c !== 48) nonZero = true;
    } else if (c >= 97 && c <= 102) nonZero = true;
    else if (c >= 65 && c <= 70) {
      nonZero = true;
      upper = true;
    } else return '';
  }
  if (!nonZero && !zero) return '';
  return upper ? v.toLowerCase() : v;
}

/** Whether `v` is 1 to `max` decimal digits, after a '-' when `signed`. */
function digits(v: string, max: number, signed: boolean): boolean {
  const from = signed && v.charCodeAt(0) === 45 ? 1 : 0;
  const len = v.length - from;
  if (len < 1 || len > max) return false;
  for (let i = from; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}
/** Attribute keys longer than this are not kept (semantic-convention keys are far shorter). */
const MAX_KEY = 128;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class TraceStore {
  readonly #traces = new Map<string, StoredTrace>();
  readonly #l: Required<TraceStoreLimits>;
  /** Traces evicted to make room (for metrics and the list's note). */
  evicted = 0;

  constructor(limits: TraceStoreLimits = {}) {
    this.#l = { ...TRACE_STORE_DEFAULTS, ...limits };
  }

  get size(): number {
    return this.#traces.size;
  }

  #cut(s: string): string {
    return s.length <= this.#l.maxStringLength ? s : `${s.slice(0, this.#l.maxStringLength)}…`;
  }

  /**
   * Takes in a parsed OTLP/HTTP JSON ExportTraceServiceRequest. Throws (a string: the
   * reason) only when the body's outer shape is wrong; a bad span is rejected and counted.
   */
  ingest(body: unknown): IngestResult {
    const r: IngestResult = { accepted: 0, rejected: 0, firstProblem: '' };
    if (!isObject(body)) throw 'the body is not a JSON object';
    const resourceSpans = body.resourceSpans;
    if (resourceSpans === undefined) return r;
    if (!Array.isArray(resourceSpans)) throw 'resourceSpans is not an array';
    for (const rs of resourceSpans) {
      if (!isObject(rs)) throw 'a resourceSpans entry is not an object';
      const resource = this.#attributes(isObject(rs.resource) ? rs.resource.attributes : undefined);
      // Cut once per resource, not per span.
      const service = this.#cut(typeof resource['service.name'] === 'string' ? resource['service.name'] : 'unknown');
      const instance = typeof resource['service.instance.id'] === 'string' ? this.#cut(resource['service.instance.id']) : undefined;
      const scopeSpans = rs.scopeSpans;
      if (scopeSpans === undefined) continue;
      if (!Array.isArray(scopeSpans)) throw 'scopeSpans is not an array';
      for (const ss of scopeSpans) {
        if (!isObject(ss)) throw 'a scopeSpans entry is not an object';
        if (ss.spans === undefined) continue;
        if (!Array.isArray(ss.spans)) throw 'spans is not an array';
        for (const raw of ss.spans) {
          const span = this.#span(raw, service, instance);
          if (typeof span === 'string') {
            r.rejected++;
            r.firstProblem ||= span;
            continue;
          }
          this.#add(span);
          r.accepted++;
        }
      }
    }
    return r;
  }

  /** A checked span, or why it is rejected. */
  #span(raw: unknown, service: string, instance: string | undefined): SpanView | string {
    if (!isObject(raw)) return 'a span is not an object';
    const traceId = hexId(raw.traceId, 32, false);
    if (traceId === '') return 'traceId must be 32 hex digits, not all zero';
    const spanId = hexId(raw.spanId, 16, false);
    if (spanId === '') return 'spanId must be 16 hex digits, not all zero';
    const p = raw.parentSpanId;
    const parent = p === undefined || p === '' ? '' : hexId(p, 16, true);
    if (parent === '' && p !== undefined && p !== '') return 'parentSpanId must be 16 hex digits or absent';
    const start = nanos(raw.startTimeUnixNano);
    const end = nanos(raw.endTimeUnixNano);
    if (start === undefined || end === undefined) return 'startTimeUnixNano and endTimeUnixNano must be whole numbers of nanoseconds';
    // Both without leading zeros: the shorter is the smaller, and of equal lengths the first in order.
    if (end.length < start.length || (end.length === start.length && end < start)) return 'the span ends before it starts';
    const kind = raw.kind === undefined ? 0 : raw.kind;
    if (typeof kind !== 'number' || !Number.isInteger(kind) || kind < 0 || kind > 5) return 'kind must be 0 to 5';
    const status = raw.status;
    const code = typeof status === 'object' && status !== null ? (status as Json).code : undefined;
    const name = this.#cut(typeof raw.name === 'string' ? raw.name : '');
    const attributes = this.#attributes(raw.attributes);
    const error = code === 2 || code === 'STATUS_CODE_ERROR';
    // Two literals, not a spread: the same fields in the same order either way.
    return instance === undefined
      ? { traceId, spanId, parentSpanId: parent, name, kind, service, startTimeUnixNano: start, endTimeUnixNano: end, attributes, error }
      : { traceId, spanId, parentSpanId: parent, name, kind, service, instance, startTimeUnixNano: start, endTimeUnixNano: end, attributes, error };
  }

  /** OTLP key-value list → a plain object of bounded scalars (arrays, maps and bytes are left out). */
  #attributes(list: unknown): Record<string, string | number | boolean> {
    const out: Record<string, string | number | boolean> = {};
    if (!Array.isArray(list)) return out;
    let n = 0;
    const max = this.#l.maxAttributes;
    for (let i = 0; i < list.length && n < max; i++) {
      // Arrays pass these checks and are then left out: they have no key, nor a value's fields.
      const kv = list[i] as unknown;
      if (typeof kv !== 'object' || kv === null) continue;
      const key = (kv as Json).key;
      const v = (kv as Json).value;
      if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY || typeof v !== 'object' || v === null) continue;
      if (key === '__proto__' || key === 'constructor' || key === 'prototype') continue;
      const { stringValue, boolValue, intValue, doubleValue } = v as Json;
      let value: string | number | boolean | undefined;
      if (typeof stringValue === 'string') value = this.#cut(stringValue);
      else if (typeof boolValue === 'boolean') value = boolValue;
      else if (typeof intValue === 'number' && Number.isFinite(intValue)) value = intValue;
      else if (typeof intValue === 'string' && digits(intValue, 20, true)) value = Number(intValue);
      else if (typeof doubleValue === 'number' && Number.isFinite(doubleValue)) value = doubleValue;
      if (value === undefined) continue;
      out[key] = value;
      n++;
    }
    return out;
  }

  #add(span: SpanView): void {
    let t = this.#traces.get(span.traceId);
    if (t === undefined) {
      while (this.#traces.size >= this.#l.maxTraces) {
        const oldest = this.#traces.keys().next().value as string;
        this.#traces.delete(oldest);
        this.evicted++;
      }
      t = { spans: [], dropped: 0 };
    } else {
      // Most recently updated last: the map's order is the eviction order.
      this.#traces.delete(span.traceId);
    }
    this.#traces.set(span.traceId, t);
    if (t.spans.length >= this.#l.maxSpansPerTrace) {
      t.dropped++;
      return;
    }
    // A span sent twice (an exporter's retry) is kept once.
    if (t.spans.some((s) => s.spanId === span.spanId && s.service === span.service)) return;
    t.spans.push(span);
  }

  /** Recent traces, newest first (by start), at most `limit`; `service` keeps traces that service is in. */
  list(limit = 50, service?: string): TraceSummaryView[] {
    const out: TraceSummaryView[] = [];
    for (const [traceId, t] of this.#traces) {
      if (service !== undefined && !t.spans.some((s) => s.service === service)) continue;
      out.push(summary(traceId, t.spans));
    }
    out.sort((a, b) => (a.startTime < b.startTime ? 1 : a.startTime > b.startTime ? -1 : 0));
    return out.slice(0, limit);
  }

  get(traceId: string): TraceView | undefined {
    const t = this.#traces.get(traceId.toLowerCase());
    if (t === undefined) return undefined;
    const spans = [...t.spans].sort((a, b) => cmpNanos(a.startTimeUnixNano, b.startTimeUnixNano));
    return { traceId: traceId.toLowerCase(), spans, droppedSpans: t.dropped };
  }
}

/** Whole nanoseconds as decimal digits without leading zeros (as BigInt would print them), or undefined. */
function nanos(v: unknown): string | undefined {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return BigInt(v).toString();
  if (typeof v !== 'string' || !digits(v, 20, false)) return undefined;
  let i = 0;
  while (i < v.length - 1 && v.charCodeAt(i) === 48) i++;
  return i === 0 ? v : v.slice(i);
}

function cmpNanos(a: string, b: string): number {
  const d = BigInt(a) - BigInt(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

function summary(traceId: string, spans: readonly SpanView[]): TraceSummaryView {
  let first = spans[0]!;
  let end = BigInt(first.endTimeUnixNano);
  let errors = 0;
  const services = new Set<string>();
  const ids = new Set(spans.map((s) => s.spanId));
  // The root: the earliest span with no parent; else (its span not arrived) the earliest whose parent is missing.
  let root: SpanView | undefined;
  let orphan: SpanView | undefined;
  for (const s of spans) {
    if (BigInt(s.startTimeUnixNano) < BigInt(first.startTimeUnixNano)) first = s;
    if (BigInt(s.endTimeUnixNano) > end) end = BigInt(s.endTimeUnixNano);
    if (s.error) errors++;
    services.add(s.service);
    if (s.parentSpanId === '') {
      if (root === undefined || BigInt(s.startTimeUnixNano) < BigInt(root.startTimeUnixNano)) root = s;
    } else if (!ids.has(s.parentSpanId)) {
      if (orphan === undefined || BigInt(s.startTimeUnixNano) < BigInt(orphan.startTimeUnixNano)) orphan = s;
    }
  }
  const top = root ?? orphan ?? first;
  const startNs = BigInt(first.startTimeUnixNano);
  return {
    traceId,
    rootName: top.name,
    rootService: top.service,
    services: [...services].sort(),
    spans: spans.length,
    errors,
    startTime: new Date(Number(startNs / 1_000_000n)).toISOString(),
    durationMs: Number(end - startNs) / 1e6,
  };
}
