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

/** Unix milliseconds (fractional) as OTLP's decimal nanoseconds, without losing them to a double. */
export function unixNanos(ms: number): string {
  let whole = Math.floor(ms);
  let frac = Math.round((ms - whole) * 1e6);
  if (frac >= 1e6) {
    whole++;
    frac -= 1e6;
  }
  return `${whole}${String(frac).padStart(6, '0')}`;
}

/** The request body for `POST /v1/traces` carrying `spans` of one resource (this proxy). */
export function encodeTraces(resource: Readonly<Record<string, AttributeValue>>, spans: readonly FinishedSpan[]): string {
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
