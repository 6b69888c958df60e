// One proxy's tracer: the sampling decision at the root of a trace, and where finished
// spans go (the exporter's queue). Configured from the snapshot's `tracing` (the mesh
// file's `spec.telemetry.tracing`); without one, tracing is off and the trace layer
// passes every request through untouched.
//
// Sampling: head sampling at the trace's root (a request that brings no sampling
// decision) with the configured rate; a caller's decision is kept, as W3C and B3 ask,
// so every hop of a trace agrees. Errors are always exported: a request that fails is
// exported when it ends even when it was not sampled, its span made then from what the
// exchange already holds (so an unsampled request still costs no span object while it
// runs; see stack/trace.ts).
import type { TracingSnapshot } from '../../api/protocol.js';
import { SpanExporter, type DropReason } from './exporter.js';
import type { AttributeValue, FinishedSpan, SpanSink } from './span.js';
import type { SpanBytes } from './span-queue.js';

export interface TracerOptions {
  /** Attributes of the proxy's resource: service.name, service.instance.id, ... */
  readonly resource: Readonly<Record<string, AttributeValue>>;
  /** Where spans go when the snapshot names no collector: the control plane's receiver. */
  readonly defaultEndpoint?: string;
  /** Headers sent only to the default endpoint (the proxy's credential; never to a collector elsewhere). */
  readonly defaultHeaders?: Readonly<Record<string, string>>;
  /** The sampling coin; tests inject a seeded one. */
  readonly random?: () => number;
  /** A failed export, for the proxy's log. */
  readonly onExportError?: (reason: string) => void;
}

export class Tracer implements SpanSink {
  readonly #o: TracerOptions;
  readonly #random: () => number;
  #rate = 0;
  #enabled = false;
  #trustIncoming = false;
  #exporter: SpanExporter | undefined;
  #settings = '';
  /** Counters of exporters replaced by a new snapshot, so the metrics never go down. */
  #past = { exported: 0, queue_full: 0, export_failed: 0 };
  /** Spans exported only because their request failed (not sampled at the head). */
  errorSpans = 0;

  constructor(o: TracerOptions) {
    this.#o = o;
    this.#random = o.random ?? Math.random;
  }

  /** Whether this proxy traces at all (a snapshot with `tracing`). */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** Whether an edge (a Gateway's listener) keeps the sampling decision a request from outside brings. */
  get trustIncomingSampling(): boolean {
    return this.#trustIncoming;
  }

  /** The root sampling decision for a request that brings none. */
  sample(): boolean {
    const rate = this.#rate;
    return rate >= 1 || (rate > 0 && this.#random() < rate);
  }

  record(span: FinishedSpan): void {
    this.#exporter?.add(span);
  }

  /**
   * Begins a span written piece by piece (SpanExporter.beginSpan: undefined when it is
   * refused, and then counted dropped), then endSpan or abortSpan; undefined with tracing off.
   */
  beginSpan(): SpanBytes | undefined {
    return this.#exporter?.beginSpan();
  }

  endSpan(): void {
    this.#exporter?.endSpan();
  }

  abortSpan(reason: string): void {
    this.#exporter?.abortSpan(reason);
  }

  /** Applies the snapshot's tracing settings; the exporter is replaced only when its own settings change. */
  configure(t: TracingSnapshot | undefined): void {
    if (t === undefined) {
      this.#enabled = false;
      this.#rate = 0;
      this.#trustIncoming = false;
      this.#replace(undefined);
      this.#settings = '';
      return;
    }
    this.#rate = Math.min(1, Math.max(0, t.samplingRate));
    this.#trustIncoming = t.trustIncomingSampling === true;
    const endpoint = t.endpoint ?? this.#o.defaultEndpoint;
    const settings = JSON.stringify([endpoint, t.maxQueueSpans, t.batchSpans, t.flushIntervalMs, t.exportTimeoutMs]);
    if (settings !== this.#settings) {
      this.#settings = settings;
      this.#replace(
        endpoint === undefined
          ? undefined
          : new SpanExporter({
              endpoint,
              resource: this.#o.resource,
              ...(t.endpoint === undefined && this.#o.defaultHeaders !== undefined ? { headers: this.#o.defaultHeaders } : {}),
              ...(t.maxQueueSpans !== undefined ? { maxQueueSpans: t.maxQueueSpans } : {}),
              ...(t.batchSpans !== undefined ? { batchSpans: t.batchSpans } : {}),
              ...(t.flushIntervalMs !== undefined ? { flushIntervalMs: t.flushIntervalMs } : {}),
              ...(t.exportTimeoutMs !== undefined ? { exportTimeoutMs: t.exportTimeoutMs } : {}),
              ...(this.#o.onExportError !== undefined ? { onError: this.#o.onExportError } : {}),
            }),
      );
    }
    this.#enabled = this.#exporter !== undefined;
  }

  #replace(next: SpanExporter | undefined): void {
    const old = this.#exporter;
    this.#exporter = next;
    if (old === undefined) return;
    // The old exporter sends what it holds, then its counts join the past ones once it is done.
    void old.close().then(() => {
      this.#past.exported += old.exported;
      this.#past.queue_full += old.dropped.queue_full;
      this.#past.export_failed += old.dropped.export_failed;
    });
  }

  /** Counts for metrics: spans exported, dropped by reason, queued now. */
  stats(): { exported: number; dropped: Record<DropReason, number>; queued: number; errorSpans: number } {
    const e = this.#exporter;
    return {
      exported: this.#past.exported + (e?.exported ?? 0),
      dropped: { queue_full: this.#past.queue_full + (e?.dropped.queue_full ?? 0), export_failed: this.#past.export_failed + (e?.dropped.export_failed ?? 0) },
      queued: e?.queued ?? 0,
      errorSpans: this.errorSpans,
    };
  }

  /** Flushes what is queued (tests, and a proxy stopping). */
  flush(): Promise<void> {
    return this.#exporter?.flush() ?? Promise.resolve();
  }

  async close(): Promise<void> {
    this.#enabled = false;
    const e = this.#exporter;
    this.#exporter = undefined;
    await e?.close();
  }
}
