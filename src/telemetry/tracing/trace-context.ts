// Trace context propagation: W3C Trace Context (`traceparent`, `tracestate`) and B3
// (the single `b3` header and the multi `x-b3-*` headers), read from a request's header
// lines and written for the next hop. Header values come from clients, so everything
// here is hostile input: a malformed context is treated as absent (never thrown, never
// copied anywhere), and the hot-path check (`scanTraceContext`) reads the lines in place
// and makes no string, so a request this proxy does not sample costs no allocation.
//
// Precedence when a request carries several formats: traceparent, then b3, then x-b3-*
// (the order of OpenTelemetry's composite propagator with W3C first, as Envoy's
// OpenTelemetry tracer reads them).
import { writeRandomHex } from './ids.js';

/** Which headers a context came in (and goes out) as. */
export type TraceFormat = 'w3c' | 'b3' | 'b3multi';

/** A parsed, valid trace context: the caller's span is `spanId`. */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero (a 64-bit B3 id is left-padded with zeros). */
  readonly traceId: string;
  /** 16 lower-case hex digits, not all zero. */
  readonly spanId: string;
  /** The caller's sampling decision; undefined: none made (B3 may defer it). */
  readonly sampled: boolean | undefined;
  /** The `tracestate` to pass on ('' when none, or not valid W3C list syntax). */
  readonly traceState: string;
  readonly format: TraceFormat;
}

/**
 * What {@link scanTraceContext} found: None (no context, or a malformed one, treated as
 * absent), Sampled or Unsampled (a valid context and the caller's decision), Deferred (a
 * valid B3 context with no sampling decision: this proxy decides), Malformed (trace
 * headers came, none valid: treated as absent, and replaced before the next hop).
 */
export const TraceScan = { None: 0, Sampled: 1, Unsampled: 2, Deferred: 3, Malformed: 4 } as const;
export type TraceScan = (typeof TraceScan)[keyof typeof TraceScan];

/** Lower-case names of every header this module reads or writes. */
export const TRACE_HEADERS: ReadonlySet<string> = new Set([
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
]);

/** The headers a proxy replaces with its own span's (tracestate is passed on as it came). */
export const REPLACED_TRACE_HEADERS: ReadonlySet<string> = new Set([
  'traceparent',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
]);

/** W3C: at most 512 characters of tracestate are worth passing on (the spec's propagation limit). */
const MAX_TRACESTATE = 512;
/** A W3C list may hold 32 members. */
const MAX_TRACESTATE_MEMBERS = 32;

const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** The header a line names, as an index into NAMES; -1 for any other header. No string is made. */
const NAMES = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags'] as const;
const TRACEPARENT = 0;
const TRACESTATE = 1;
const B3 = 2;
const X_TRACEID = 3;
const X_SPANID = 4;
const X_SAMPLED = 6;
const X_FLAGS = 7;

function lower(c: number): number {
  return c >= 65 && c <= 90 ? c + 32 : c;
}

/** Which trace header `line` is; checked on every request, so the first character rules out nearly every line. */
function headerOf(line: string): number {
  const c0 = lower(line.charCodeAt(0));
  if (c0 !== 116 /* t */ && c0 !== 98 /* b */ && c0 !== 120 /* x */) return -1;
  const colon = line.indexOf(':');
  if (colon < 2 || colon > 17) return -1;
  for (let n = 0; n < NAMES.length; n++) {
    const name = NAMES[n]!;
    if (name.length !== colon) continue;
    let i = 0;
    while (i < colon && lower(line.charCodeAt(i)) === name.charCodeAt(i)) i++;
    if (i === colon) return n;
  }
  return -1;
}

/** Index of the first value character after `Name:` and optional whitespace. */
function valueStart(line: string): number {
  let i = line.indexOf(':') + 1;
  while (i < line.length && (line.charCodeAt(i) === 32 || line.charCodeAt(i) === 9)) i++;
  return i;
}

/** Index after the value, optional trailing whitespace left out. */
function valueEnd(line: string): number {
  let e = line.length;
  while (e > 0 && (line.charCodeAt(e - 1) === 32 || line.charCodeAt(e - 1) === 9)) e--;
  return e;
}

function isLowerHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102);
}

function isHex(c: number): boolean {
  return isLowerHex(lower(c));
}

/** `n` lower-case hex digits at `at`, not all zero (W3C ids are lower case). */
function lowerHexId(s: string, at: number, n: number): boolean {
  let nonZero = false;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i);
    if (!isLowerHex(c)) return false;
    if (c !== 48) nonZero = true;
  }
  return nonZero;
}

/** `n` hex digits of either case at `at`, not all zero (B3 ids; implementations vary). */
function hexId(s: string, at: number, n: number): boolean {
  let nonZero = false;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i);
    if (!isHex(c)) return false;
    if (c !== 48) nonZero = true;
  }
  return nonZero;
}

/**
 * A traceparent value at [v, e): its sampled flag, or None when malformed. Version 00
 * has exactly 55 characters; a later version may append fields after a dash (the W3C
 * rule for forward compatibility); version ff is invalid.
 */
function scanTraceparent(line: string, v: number, e: number): TraceScan {
  const len = e - v;
  if (len < 55) return TraceScan.None;
  if (!isLowerHex(line.charCodeAt(v)) || !isLowerHex(line.charCodeAt(v + 1))) return TraceScan.None;
  const version00 = line.charCodeAt(v) === 48 && line.charCodeAt(v + 1) === 48;
  if (line.charCodeAt(v) === 102 && line.charCodeAt(v + 1) === 102) return TraceScan.None;
  if (version00 ? len !== 55 : len > 55 && line.charCodeAt(v + 55) !== 45) return TraceScan.None;
  if (line.charCodeAt(v + 2) !== 45 || line.charCodeAt(v + 35) !== 45 || line.charCodeAt(v + 52) !== 45) return TraceScan.None;
  if (!lowerHexId(line, v + 3, 32) || !lowerHexId(line, v + 36, 16)) return TraceScan.None;
  const f1 = line.charCodeAt(v + 53);
  const f2 = line.charCodeAt(v + 54);
  if (!isLowerHex(f1) || !isLowerHex(f2)) return TraceScan.None;
  // The sampled flag is the flags byte's lowest bit: the second hex digit is odd.
  const low = f2 <= 57 ? f2 - 48 : f2 - 87;
  return (low & 1) === 1 ? TraceScan.Sampled : TraceScan.Unsampled;
}

/** A single b3 value at [v, e): `{traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or `0`/`1`/`d` alone. */
function scanB3(line: string, v: number, e: number): TraceScan {
  const len = e - v;
  if (len === 1) return TraceScan.None; // a decision alone names no trace: treated as absent (a new one starts)
  let idLen = 0;
  if (len >= 33 && line.charCodeAt(v + 32) === 45) idLen = 32;
  else if (len >= 17 && line.charCodeAt(v + 16) === 45) idLen = 16;
  else return TraceScan.None;
  if (!hexId(line, v, idLen)) return TraceScan.None;
  const s = v + idLen + 1;
  if (e - s < 16 || !hexId(line, s, 16)) return TraceScan.None;
  let at = s + 16;
  if (at === e) return TraceScan.Deferred;
  if (line.charCodeAt(at) !== 45 || at + 2 > e) return TraceScan.None;
  const d = lower(line.charCodeAt(at + 1));
  const decision = d === 49 || d === 100 ? TraceScan.Sampled : d === 48 ? TraceScan.Unsampled : TraceScan.None;
  if (decision === TraceScan.None) return TraceScan.None;
  at += 2;
  if (at === e) return decision;
  if (line.charCodeAt(at) !== 45 || e - at - 1 !== 16 || !hexId(line, at + 1, 16)) return TraceScan.None;
  return decision;
}

/**
 * The request's trace context, judged in place: whether there is a valid one, and the
 * caller's sampling decision. Makes no string and no object (the unsampled fast path).
 * A header repeated, or any malformed field, makes that format absent.
 */
export function scanTraceContext(lines: readonly string[]): TraceScan {
  let tp = -1;
  let ts = -1;
  let b3 = -1;
  let xTrace = -1;
  let xSpan = -1;
  let xSampled = -1;
  let xFlags = -1;
  let repeated = 0;
  for (let i = 0; i < lines.length; i++) {
    const h = headerOf(lines[i]!);
    if (h < 0) continue;
    if (h === TRACESTATE) ts = i;
    else if (h === TRACEPARENT) tp === -1 ? (tp = i) : (repeated |= 1);
    else if (h === B3) b3 === -1 ? (b3 = i) : (repeated |= 2);
    else if (h === X_TRACEID) xTrace === -1 ? (xTrace = i) : (repeated |= 4);
    else if (h === X_SPANID) xSpan === -1 ? (xSpan = i) : (repeated |= 4);
    else if (h === X_SAMPLED) xSampled === -1 ? (xSampled = i) : (repeated |= 4);
    else if (h === X_FLAGS) xFlags === -1 ? (xFlags = i) : (repeated |= 4);
    else repeated |= 8; // x-b3-parentspanid: read by no one here, replaced with the rest
  }
  if (tp >= 0 && (repeated & 1) === 0) {
    const line = lines[tp]!;
    const r = scanTraceparent(line, valueStart(line), valueEnd(line));
    if (r !== TraceScan.None) return r;
  }
  if (b3 >= 0 && (repeated & 2) === 0) {
    const line = lines[b3]!;
    const r = scanB3(line, valueStart(line), valueEnd(line));
    if (r !== TraceScan.None) return r;
  }
  if (xTrace >= 0 && xSpan >= 0 && (repeated & 4) === 0) {
    const r = scanB3Multi(lines[xTrace]!, lines[xSpan]!, xSampled < 0 ? undefined : lines[xSampled]!, xFlags < 0 ? undefined : lines[xFlags]!);
    if (r !== TraceScan.None) return r;
  }
  return tp >= 0 || ts >= 0 || b3 >= 0 || xTrace >= 0 || xSpan >= 0 || xSampled >= 0 || xFlags >= 0 || repeated !== 0 ? TraceScan.Malformed : TraceScan.None;
}

/**
 * The index of the request's traceparent line when it is the only trace header a proxy
 * replaces (tracestate passes on as it came) and its value is exactly version 00 with
 * the sampled flag alone, ending the line (`traceparent: 00-<trace id>-<span id>-01`):
 * then a hop's span id can be written over the caller's in place (stack/trace.ts),
 * giving the line the old way (drop, then add) would, without rebuilding the head. -1
 * otherwise (the old way).
 */
export function soleTraceparent(lines: readonly string[]): number {
  let at = -1;
  for (let i = 0; i < lines.length; i++) {
    const h = headerOf(lines[i]!);
    if (h < 0 || h === TRACESTATE) continue;
    if (h !== TRACEPARENT || at >= 0) return -1;
    at = i;
  }
  if (at < 0) return -1;
  const line = lines[at]!;
  const v = line.length - 55;
  if (v < 1 || valueStart(line) !== v || scanTraceparent(line, v, line.length) !== TraceScan.Sampled) return -1;
  const version00 = line.charCodeAt(v) === 48 && line.charCodeAt(v + 1) === 48;
  return version00 && line.charCodeAt(v + 53) === 48 && line.charCodeAt(v + 54) === 49 ? at : -1;
}

/** Where the span id starts in a line {@link soleTraceparent} accepted (16 hex digits, then `-01`). */
export function traceparentSpanIdAt(line: string): number {
  return line.length - 19;
}

function scanB3Multi(traceLine: string, spanLine: string, sampledLine: string | undefined, flagsLine: string | undefined): TraceScan {
  const tv = valueStart(traceLine);
  const tl = valueEnd(traceLine) - tv;
  if ((tl !== 16 && tl !== 32) || !hexId(traceLine, tv, tl)) return TraceScan.None;
  const sv = valueStart(spanLine);
  if (valueEnd(spanLine) - sv !== 16 || !hexId(spanLine, sv, 16)) return TraceScan.None;
  if (flagsLine !== undefined) {
    const fv = valueStart(flagsLine);
    // X-B3-Flags: 1 is debug, which implies sampled.
    if (valueEnd(flagsLine) - fv === 1 && flagsLine.charCodeAt(fv) === 49) return TraceScan.Sampled;
  }
  if (sampledLine === undefined) return TraceScan.Deferred;
  const v = sampledLine.slice(valueStart(sampledLine), valueEnd(sampledLine)).toLowerCase();
  // "true"/"false" are what some old B3 clients send; the spec says 1/0.
  if (v === '1' || v === 'true') return TraceScan.Sampled;
  if (v === '0' || v === 'false') return TraceScan.Unsampled;
  return TraceScan.None;
}

function value(line: string): string {
  return line.slice(valueStart(line), valueEnd(line));
}

/** A 64-bit B3 trace id, widened to W3C's 128 bits as B3 and W3C interop specify (left-padded with zeros). */
function widen(id: string): string {
  const l = id.toLowerCase();
  return l.length === 32 ? l : `0000000000000000${l}`;
}

/**
 * The request's trace context, parsed (strings made): called only for a request this
 * proxy traces, or one that failed (errors are always exported). Undefined when
 * {@link scanTraceContext} would say None.
 */
export function extractTraceContext(lines: readonly string[]): TraceContext | undefined {
  const scan = scanTraceContext(lines);
  if (scan === TraceScan.None || scan === TraceScan.Malformed) return undefined;
  let tp: string | undefined;
  let b3: string | undefined;
  let tsLines: string[] | undefined;
  const x: (string | undefined)[] = [];
  for (const line of lines) {
    const h = headerOf(line);
    if (h === TRACEPARENT) tp = line;
    else if (h === TRACESTATE) (tsLines ??= []).push(value(line));
    else if (h === B3) b3 = line;
    else if (h >= X_TRACEID) x[h] = line;
  }
  const sampled = scan === TraceScan.Sampled ? true : scan === TraceScan.Unsampled ? false : undefined;
  if (tp !== undefined && scanTraceparent(tp, valueStart(tp), valueEnd(tp)) !== TraceScan.None) {
    const v = value(tp);
    return { traceId: v.slice(3, 35), spanId: v.slice(36, 52), sampled, traceState: traceState(tsLines), format: 'w3c' };
  }
  if (b3 !== undefined && scanB3(b3, valueStart(b3), valueEnd(b3)) !== TraceScan.None) {
    const v = value(b3);
    const dash = v.indexOf('-');
    return { traceId: widen(v.slice(0, dash)), spanId: v.slice(dash + 1, dash + 17).toLowerCase(), sampled, traceState: '', format: 'b3' };
  }
  const t = x[X_TRACEID];
  const s = x[X_SPANID];
  if (t === undefined || s === undefined) return undefined;
  return { traceId: widen(value(t)), spanId: value(s).toLowerCase(), sampled, traceState: '', format: 'b3multi' };
}

/**
 * The tracestate to pass on: the header's members joined (a repeated header is one list,
 * RFC 9110 field combination), or '' when it is too long or not list syntax. A proxy
 * that does not understand it passes it on unchanged; one too long to be trusted is dropped.
 */
function traceState(values: readonly string[] | undefined): string {
  if (values === undefined) return '';
  const joined = values.join(',');
  if (joined.length > MAX_TRACESTATE) return '';
  let members = 0;
  for (const m of joined.split(',')) {
    const t = m.trim();
    if (t === '') continue;
    const eq = t.indexOf('=');
    if (eq <= 0 || eq === t.length - 1) return '';
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (c < 0x20 || c > 0x7e) return '';
    }
    members++;
  }
  return members > MAX_TRACESTATE_MEMBERS ? '' : joined;
}

/** The traceparent value for a span: version 00, sampled flag as given. */
export function traceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}

/**
 * The header lines (each ending in CRLF) that carry a span's context to the next hop:
 * always traceparent (every Trellis proxy and OpenTelemetry SDK reads it), and the B3
 * headers too when the context came in as B3, so an app instrumented for B3 keeps
 * seeing its own format. tracestate is not written: it passes on as the request
 * carried it (the proxy adds no entry of its own).
 */
export function contextLines(traceId: string, spanId: string, sampled: boolean, format: TraceFormat): string {
  const w3c = `traceparent: ${traceparent(traceId, spanId, sampled)}\r\n`;
  if (format === 'w3c') return w3c;
  const flag = sampled ? '1' : '0';
  if (format === 'b3') return `${w3c}b3: ${traceId}-${spanId}-${flag}\r\n`;
  return `${w3c}x-b3-traceid: ${traceId}\r\nx-b3-spanid: ${spanId}\r\nx-b3-sampled: ${flag}\r\n`;
}

/** The line {@link newUnsampledContextLine} fills in: ids at 16 (trace) and 49 (span). */
const NEW_UNSAMPLED_LINE = Buffer.from(`traceparent: ${traceparent(ZERO_TRACE, ZERO_SPAN, false)}\r\n`, 'latin1');

/**
 * `contextLines(newTraceId(), newSpanId(), false, 'w3c')`, made as one flat string: the
 * line a proxy adds to every request that starts a trace it does not sample (nearly every
 * outbound request at the default rate). Built from ids, the line was a dozen strings
 * (slices, concatenations, and their flattening as the head was written): about 0.3 KB
 * of garbage per request, 1 KB of which brings the next scavenge 1 MB closer.
 */
export function newUnsampledContextLine(): string {
  writeRandomHex(NEW_UNSAMPLED_LINE, 16, 16);
  writeRandomHex(NEW_UNSAMPLED_LINE, 49, 8);
  return NEW_UNSAMPLED_LINE.toString('latin1');
}

export { ZERO_SPAN, ZERO_TRACE };
