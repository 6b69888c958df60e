// OTLP/HTTP JSON encoding of a batch of spans (an ExportTraceServiceRequest, the protobuf
// JSON mapping the OTLP specification fixes: ids as hex strings, not base64; 64-bit
// times as decimal strings; enums as numbers). JSON rather than protobuf: no protobuf
// runtime in a proxy whose memory budget is 60 MB, one encoder of a few lines, and
// every OTLP/HTTP receiver (the OpenTelemetry Collector, Jaeger, Tempo, the control
// plane) accepts it. It costs more bytes per span, which only the exporter's batches pay.
import type { AttributeValue, FinishedSpan } from './span.js';

/** The instrumentation scope of every span a proxy makes. */
export const SCOPE = { name: 'trellis-proxy', version: '0.1.0' } as const;

type OtlpValue = { stringValue: string } | { boolValue: boolean } | { intValue: string } | { doubleValue: number };

function otlpValue(v: AttributeValue): OtlpValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

export function otlpAttributes(attrs: Readonly<Record<string, AttributeValue>>): { key: string; value: OtlpValue }[] {
  const out: { key: string; value: OtlpValue }[] = [];
  for (const key in attrs) out.push({ key, value: otlpValue(attrs[key]!) });
  return out;
}

/** `n` (0 ≤ n < 1e6, whole) as six digits. */
function sixDigits(n: number): string {
  return n >= 100_000 ? `${n}` : String(n).padStart(6, '0');
}

/**
 * Unix milliseconds (fractional) as OTLP's decimal nanoseconds, without losing them to a
 * double. A time now (some 1.8e12 ms) is printed as two small integers (millions of ms,
 * then ms) rather than one 13-digit double: printing a double that is no small integer
 * runs V8's full number-to-string, the most of this function's cost in a profiled proxy.
 */
export function unixNanos(ms: number): string {
  let whole = Math.floor(ms);
  let frac = Math.round((ms - whole) * 1e6);
  if (frac >= 1e6) {
    whole++;
    frac -= 1e6;
  }
  if (!(whole >= 1e9 && whole < 2 ** 53)) return `${whole}${sixDigits(frac)}`;
  // Exact: whole is an integer below 2^53, so whole / 1e6 rounds to the right side of any integer.
  const millions = Math.floor(whole / 1e6);
  return `${millions}${sixDigits(whole - millions * 1e6)}${sixDigits(frac)}`;
}

/**
 * `s`, made one piece in memory now. A string built by concatenation is a tree of its
 * pieces until V8 first reads a character of it, when it is rewritten in place as one:
 * a cached fragment left a tree is walked again each time a span that contains it is
 * written into the export buffer (Buffer.write flattens the span's string, not the
 * fragment), which cost more than encoding the span (1.1 µs of a span's 2).
 */
function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}

/** Strings JSON.stringify writes as they are between quotes: no quote, backslash, control character or surrogate. */
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

/** JSON.stringify(s), without its call for the common string that needs no escaping (ids, names, routes). */
function jsonString(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}

/**
 * A whole attribute's JSON by key and value, for values that repeat from span to span:
 * the method, direction, services, versions, routes, endpoints, status codes, ports.
 * Strings up to 64 characters, integers and booleans; the cache starts over when it
 * holds 1,000, so values a client makes up (paths) can neither grow it nor keep the
 * common ones out for long.
 */
const attributeCache = new Map<string, Map<AttributeValue, string>>();
let cachedAttributes = 0;
const MAX_CACHED_VALUE = 64;
const MAX_CACHED_ATTRIBUTES = 1000;

/** `{"key":...,"value":...}` of one attribute as the object form above would print it (JSON.stringify escapes the strings). */
export function attributeJson(key: string, v: AttributeValue): string {
  let byValue = attributeCache.get(key);
  const cached = byValue?.get(v);
  if (cached !== undefined) return cached;
  const value =
    typeof v === 'string'
      ? `{"stringValue":${jsonString(v)}}`
      : typeof v === 'boolean'
        ? `{"boolValue":${v}}`
        : Number.isInteger(v)
          ? `{"intValue":"${v}"}`
          : `{"doubleValue":${JSON.stringify(v)}}`;
  const json = flat(`{"key":${JSON.stringify(key)},"value":${value}}`);
  if (typeof v === 'string' ? v.length <= MAX_CACHED_VALUE : typeof v === 'boolean' || Number.isInteger(v)) {
    if (cachedAttributes >= MAX_CACHED_ATTRIBUTES) {
      attributeCache.clear();
      cachedAttributes = 0;
      byValue = undefined;
    }
    if (byValue === undefined) attributeCache.set(key, (byValue = new Map()));
    byValue.set(v, json);
    cachedAttributes++;
  }
  return json;
}

function attributesJson(attrs: Readonly<Record<string, AttributeValue>>): string {
  let out = '';
  for (const key in attrs) out += `${out === '' ? '' : ','}${attributeJson(key, attrs[key]!)}`;
  return `[${out}]`;
}

/** The resource's part of every body, the same for every batch of one exporter. */
const resourceCache = new WeakMap<object, string>();

/** What every body of `resource` starts with, up to the first span (cached per resource object). */
export function bodyHead(resource: Readonly<Record<string, AttributeValue>>): string {
  let head = resourceCache.get(resource);
  if (head === undefined) {
    head = `{"resourceSpans":[{"resource":{"attributes":${attributesJson(resource)}},"scopeSpans":[{"scope":${JSON.stringify(SCOPE)},"spans":[`;
    resourceCache.set(resource, head);
  }
  return head;
}

/** What every body ends with, after the last span. */
export const BODY_TAIL = ']}]}]}';

/**
 * One span as it stands in a body's `spans` array. Ids, trace state and names are
 * escaped as JSON.stringify escapes any string (jsonString), so nothing a request brings
 * can break out of its value.
 */
export function spanJson(s: FinishedSpan): string {
  return spanJsonOf(s.traceId, s.spanId, s.parentSpanId, s.traceState, jsonString(s.name), s.kind, s.startMs, s.endMs, attributesJson(s.attributes), s.error);
}

/** {@link spanJson} of a span given in parts: its name's JSON (quotes included) and its attributes' (the whole array). */
function spanJsonOf(
  traceId: string,
  spanId: string,
  parentSpanId: string,
  traceState: string,
  nameJson: string,
  kind: number,
  startMs: number,
  endMs: number,
  attributesJson: string,
  error: boolean,
): string {
  return (
    `{"traceId":${jsonString(traceId)},"spanId":${jsonString(spanId)}` +
    (parentSpanId === '' ? '' : `,"parentSpanId":${jsonString(parentSpanId)}`) +
    (traceState === '' ? '' : `,"traceState":${jsonString(traceState)}`) +
    `,"name":${nameJson},"kind":${JSON.stringify(kind)}` +
    `,"startTimeUnixNano":"${unixNanos(startMs)}","endTimeUnixNano":"${unixNanos(endMs)}"` +
    `,"attributes":${attributesJson},"status":${error ? '{"code":2}' : '{}'}}`
  );
}

/**
 * The request body for `POST /v1/traces` carrying `spans` of one resource (this proxy):
 * byte for byte what {@link encodeTracesReference} gives, written as a string directly
 * (head, the spans' {@link spanJson} joined by commas, tail). Building the object tree
 * first and stringifying it made (and dropped) some 30 objects per span, on the proxy's
 * one thread at 100% sampling. The exporter writes the same pieces into its byte queue
 * span by span (span-queue.ts); this whole-batch form is what tests compare with.
 */
export function encodeTraces(resource: Readonly<Record<string, AttributeValue>>, spans: readonly FinishedSpan[]): string {
  let out = bodyHead(resource);
  for (let i = 0; i < spans.length; i++) out += `${i === 0 ? '' : ','}${spanJson(spans[i]!)}`;
  return out + BODY_TAIL;
}

/**
 * The same body built as objects and stringified: the OTLP JSON mapping spelled out,
 * kept as the reference {@link encodeTraces} is tested against.
 */
export function encodeTracesReference(resource: Readonly<Record<string, AttributeValue>>, spans: readonly FinishedSpan[]): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: otlpAttributes(resource) },
        scopeSpans: [
          {
            scope: SCOPE,
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId === '' ? {} : { parentSpanId: s.parentSpanId }),
              ...(s.traceState === '' ? {} : { traceState: s.traceState }),
              name: s.name,
              kind: s.kind,
              startTimeUnixNano: unixNanos(s.startMs),
              endTimeUnixNano: unixNanos(s.endMs),
              attributes: otlpAttributes(s.attributes),
              // STATUS_CODE_ERROR is 2; unset (0) otherwise, as semantic conventions ask of a proxy that saw no error.
              status: s.error ? { code: 2 } : {},
            })),
          },
        ],
      },
    ],
  });
}
