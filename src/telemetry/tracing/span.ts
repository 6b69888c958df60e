// Spans a proxy records, and the live state of a sampled exchange's span. A span is
// made only for an exchange this proxy samples (or, when it ends, for one that failed:
// errors are always exported); an unsampled exchange carries none, so the hot path
// allocates nothing for it. Times are the exchange's performance.now() readings on the
// process's time origin, as OpenTelemetry's SDK takes them (monotonic within a process).
import { newSpanId } from './ids.js';
import { contextLines, type TraceFormat } from './trace-context.js';

/** OTLP span kinds (opentelemetry/proto/trace/v1/trace.proto `SpanKind`). */
export const SpanKind = { Internal: 1, Server: 2, Client: 3 } as const;
export type SpanKind = (typeof SpanKind)[keyof typeof SpanKind];

export type AttributeValue = string | number | boolean;

/** A finished span, as the exporter encodes it. */
export interface FinishedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly traceState: string;
  readonly name: string;
  readonly kind: SpanKind;
  /** Unix milliseconds (fractional). */
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  readonly error: boolean;
}

/** Where finished spans go (the tracer: export queue and counters). */
export interface SpanSink {
  record(span: FinishedSpan): void;
}

/**
 * The process's time origin, read once: `performance.timeOrigin` is a getter that calls
 * into Node's C++ each time (and boxes its answer), twice per sampled span otherwise.
 */
const TIME_ORIGIN = performance.timeOrigin;

/** performance.now() as unix milliseconds. */
export function unixMs(perfNow: number): number {
  return TIME_ORIGIN + perfNow;
}

/**
 * A child span of a sampled exchange's span: a retry attempt or a mirrored copy. It
 * carries its own context to the next hop (`lines`), so the peer's server span is its child.
 */
export class ChildSpan {
  readonly spanId = newSpanId();
  readonly startedAt = performance.now();
  /** The header lines carrying this span's context (each ending in CRLF). */
  readonly lines: string;
  #ended = false;

  constructor(
    readonly parent: ActiveSpan,
    readonly name: string,
    readonly kind: SpanKind,
  ) {
    this.lines = contextLines(parent.traceId, this.spanId, true, parent.format);
  }

  /** Ends the span once (later calls do nothing) and hands it to the sink. */
  end(attributes: Record<string, AttributeValue>, error: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    const p = this.parent;
    p.sink.record({
      traceId: p.traceId,
      spanId: this.spanId,
      parentSpanId: p.spanId,
      traceState: p.traceState,
      name: this.name,
      kind: this.kind,
      startMs: unixMs(this.startedAt),
      endMs: unixMs(performance.now()),
      attributes,
      error,
    });
  }
}

/** The span of a sampled exchange at one proxy (a server span inbound, a client span outbound). */
export class ActiveSpan {
  #lines: string | undefined;
  /** The retry attempt in flight, when the exchange is being retried (stack/trace.ts). */
  attempt: ChildSpan | undefined;

  constructor(
    readonly sink: SpanSink,
    readonly traceId: string,
    readonly spanId: string,
    /** The caller's span; '' when this span is the trace's root. */
    readonly parentSpanId: string,
    readonly traceState: string,
    readonly format: TraceFormat,
  ) {}

  /**
   * The header lines carrying this span's context to the next hop (each ending in CRLF).
   * Made when first asked: an inbound span whose id is written into the caller's
   * traceparent in place (stack/trace.ts) never needs them.
   */
  get lines(): string {
    return (this.#lines ??= contextLines(this.traceId, this.spanId, true, this.format));
  }

  /** A child span (a retry attempt, a mirrored copy) started now. */
  child(name: string, kind: SpanKind): ChildSpan {
    return new ChildSpan(this, name, kind);
  }

  /** `head` with this span's context lines replaced by `child`'s (the codec sends `extraHead`). */
  swapLines(head: string, child: ChildSpan | undefined): string {
    const from = this.attempt?.lines ?? this.lines;
    const to = child?.lines ?? this.lines;
    return head.includes(from) ? head.replace(from, to) : head + to;
  }
}
