// The proxy's span exporter: OTLP/HTTP in batches to one collector, through a bounded
// queue. A span is encoded as it is queued, on the request's way out, into the bytes of
// the body it will leave in (span-queue.ts); batches leave on a timer or when one is
// full, one request in flight at a time. When the collector is slow or down the queue
// fills and further spans are dropped and counted, never held without bound, and never
// waited for: a bad collector costs spans, not requests (issue 14). A failed batch is
// dropped, not retried, for the same reason (the OpenTelemetry SDK's BatchSpanProcessor
// drops on failure too).
import { bodyHead, spanJson } from './otlp-json.js';
import { OtlpConnection } from './otlp-connection.js';
import { SpanQueue, type SpanBytes } from './span-queue.js';
import type { AttributeValue, FinishedSpan } from './span.js';

export interface ExporterOptions {
  /** The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`. */
  readonly endpoint: string;
  /** Headers sent with every batch (credentials for the control plane's receiver). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Attributes of the resource every span belongs to (service.name, ...). */
  readonly resource: Readonly<Record<string, AttributeValue>>;
  /** Spans held at most; more are dropped (OpenTelemetry's default maxQueueSize, 2048). */
  readonly maxQueueSpans?: number;
  /** Spans per request (OpenTelemetry's maxExportBatchSize, 512). */
  readonly batchSpans?: number;
  /** How often a partial batch is sent (1 s: traces show up soon in `trellis trace`; the SDK's 5 s is for cost). */
  readonly flushIntervalMs?: number;
  /** A batch the collector has not answered by then is abandoned (and its spans counted dropped). */
  readonly exportTimeoutMs?: number;
  /** Called once per failed batch with a short reason (the sidecar logs it, rate limited). */
  readonly onError?: (reason: string) => void;
}

export const EXPORTER_DEFAULTS = { maxQueueSpans: 2048, batchSpans: 512, flushIntervalMs: 1000, exportTimeoutMs: 10_000 } as const;

/** Why spans were dropped (a label of `trellis_proxy_spans_dropped_total`). */
export type DropReason = 'queue_full' | 'export_failed';

export class SpanExporter {
  readonly #o: ExporterOptions;
  readonly #maxQueue: number;
  readonly #batch: number;
  readonly #connection: OtlpConnection;
  readonly #queue: SpanQueue;
  #inFlight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Spans sent and accepted by the collector. */
  exported = 0;
  readonly dropped: Record<DropReason, number> = { queue_full: 0, export_failed: 0 };

  constructor(o: ExporterOptions) {
    this.#o = o;
    this.#maxQueue = o.maxQueueSpans ?? EXPORTER_DEFAULTS.maxQueueSpans;
    this.#batch = o.batchSpans ?? EXPORTER_DEFAULTS.batchSpans;
    this.#queue = new SpanQueue(bodyHead(o.resource), this.#batch);
    this.#connection = new OtlpConnection(new URL(o.endpoint), o.headers ?? {}, o.exportTimeoutMs ?? EXPORTER_DEFAULTS.exportTimeoutMs);
    this.#timer = setInterval(() => this.#sendBatch(), o.flushIntervalMs ?? EXPORTER_DEFAULTS.flushIntervalMs);
    this.#timer.unref();
  }

  get endpoint(): string {
    return this.#o.endpoint;
  }

  /** Spans waiting to be sent. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Queues a finished span; drops it (counted) when the queue is full or the exporter closed. */
  add(span: FinishedSpan): void {
    if (this.#closed || this.#queue.length >= this.#maxQueue) {
      this.dropped.queue_full++;
      return;
    }
    let json: string;
    try {
      json = spanJson(span);
    } catch (err) {
      this.#failed(1, `encoding failed: ${String(err)}`);
      return;
    }
    this.#push(json);
  }

  /**
   * Begins a span written piece by piece into the queue (span-queue.ts SpanBytes), then
   * {@link endSpan}, or {@link abortSpan} if writing it failed. Undefined when the queue
   * is full or the exporter closed: the span is counted dropped already, and the caller
   * writes nothing (a stalled collector costs no encoding per request either).
   */
  beginSpan(): SpanBytes | undefined {
    if (this.#closed || this.#queue.length >= this.#maxQueue) {
      this.dropped.queue_full++;
      return undefined;
    }
    this.#queue.beginSpan();
    return this.#queue;
  }

  /** The span begun is written: it is queued. */
  endSpan(): void {
    this.#queue.endSpan();
    this.#queued();
  }

  /** Writing the span begun failed: it is taken back and counted as failed. */
  abortSpan(reason: string): void {
    this.#queue.abortSpan();
    this.#failed(1, `encoding failed: ${reason}`);
  }

  #push(json: string): void {
    this.#queue.push(json);
    this.#queued();
  }

  /** A span was queued: a full batch goes at once, unless one is in flight. */
  #queued(): void {
    if (this.#queue.length >= this.#batch && this.#inFlight === undefined) setImmediate(() => this.#sendBatch());
  }

  /**
   * Sends what is queued now, a batch at a time after the one in flight; resolves when the
   * last of it is answered. Bounded: spans queued meanwhile go with the timer.
   */
  async flush(): Promise<void> {
    let batches = Math.ceil(this.#queue.length / this.#batch) + 1;
    while (batches-- > 0 && (this.#inFlight !== undefined || this.#queue.length > 0)) await (this.#inFlight ?? this.#sendBatch());
  }

  /** Sends one batch now, unless one is in flight; resolves when it is answered. */
  #sendBatch(): Promise<void> {
    if (this.#inFlight !== undefined) return this.#inFlight;
    const batch = this.#queue.shift();
    if (batch === undefined) return Promise.resolve();
    this.#inFlight = this.#send(batch.body, batch.spans).finally(() => {
      this.#inFlight = undefined;
      // A full batch waiting behind this one goes now, not at the next tick of the timer.
      if (this.#queue.length >= this.#batch && !this.#closed) setImmediate(() => this.#sendBatch());
    });
    return this.#inFlight;
  }

  async #send(body: Buffer, spans: number): Promise<void> {
    const r = await this.#connection.post(body);
    // The body's bytes all went to the socket: its buffer can carry the next batch.
    if (r.bodyWritten) this.#queue.recycle(body);
    if (r.ok) this.exported += spans;
    else this.#failed(spans, r.reason);
  }

  #failed(n: number, reason: string): void {
    this.dropped.export_failed += n;
    this.#o.onError?.(reason);
  }

  /** Stops the timer, sends what is queued (one last try, bounded by the export timeout) and closes the connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await this.flush();
    this.#connection.close();
  }
}
