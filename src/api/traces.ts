// What the control plane's trace receiver serves (GET /v1/traces, /v1/traces/<id>) to the
// dashboard and `trellis trace`: recent traces, each with its spans from every source
// (sidecars and apps alike), as the receiver bounded and checked them.

/** One span as the receiver keeps it. Times are unix nanoseconds as decimal strings (OTLP's own). */
export interface SpanView {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer (0 unspecified). */
  kind: number;
  /** The resource's service.name ('unknown' when it sent none). */
  service: string;
  /** The resource's service.instance.id, when it sent one. */
  instance?: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Record<string, string | number | boolean>;
  /** OTLP status code 2 (error). */
  error: boolean;
}

/** One trace in the list, newest first. */
export interface TraceSummaryView {
  traceId: string;
  /** The root span's name and service (the earliest span when the root has not arrived). */
  rootName: string;
  rootService: string;
  services: string[];
  spans: number;
  errors: number;
  /** ISO 8601 start of the earliest span. */
  startTime: string;
  durationMs: number;
}

export interface TraceView {
  traceId: string;
  spans: SpanView[];
  /** Spans of this trace the receiver did not keep (over its per-trace limit). */
  droppedSpans: number;
}

/** GET /v1/traces: recent traces, and what the receiver has done with what it was sent. */
export interface TraceListView {
  traces: TraceSummaryView[];
  /** Traces kept now, and evicted (the least recently updated) since the control plane started. */
  kept: number;
  evicted: number;
  /** Bodies answered 4xx on arrival (media type, size, not a JSON object). */
  refusedBodies: number;
  /**
   * Found when decoded, after the body was answered 200 (the receiver decodes when traces
   * are read): bodies refused whole, spans rejected, and the latest reason ('' when none).
   */
  rejected: { bodies: number; spans: number; lastProblem: string };
  /** Bodies dropped undecoded: more waited than the receiver keeps (maxPendingBytes). */
  skippedBodies: number;
}
