// One open-model, constant-rate load run: the engine shared by `trellis load`, the
// bench and (later) rate sweeps.
//
// Request i is *intended* to be sent at start + i/rate. Latency is measured from that
// intended time, not from when a connection happened to be free, so a server that
// stalls is charged for every request that had to wait behind the stall (no
// coordinated omission, as in wrk2 and fortio). A request that finds no room (every
// HTTP/1.1 connection busy, or the HTTP/2 stream limit reached) waits in a FIFO queue,
// and that wait counts as latency.
//
// The run owns the schedule (schedule.ts), the queue, timeouts and measurement; the
// protocol lives behind the Transport seam (http1-client.ts, http2-client.ts).
import { TrellisError } from '../errors.js';
import { newHistogram, recordMs, summarize } from './histogram.js';
import { Http1Transport } from './http1-client.js';
import { Http2Transport } from './http2-client.js';
import type { LoadProgress, LoadResult } from './result.js';
import { Clock, runSchedule, type ScheduleClock } from './schedule.js';
import { checkRequestSpec, http1RequestBytes, parseLoopbackUrl, type RequestSpec } from './target.js';
import type { FailureKind, Transport, TransportEvents } from './transport.js';

export interface LoadOptions {
  /** `http://` URL on loopback (127.0.0.0/8, ::1, localhost). */
  readonly url: string;
  /** Default GET. */
  readonly method?: string;
  /** Extra request headers, in order; `Host` replaces the URL's authority. */
  readonly headers?: readonly (readonly [string, string])[];
  readonly body?: Buffer;
  /** HTTP/2 with prior knowledge (h2c) over one session, instead of HTTP/1.1. */
  readonly http2?: boolean;
  /** Requests per second, spread evenly. */
  readonly rate: number;
  /** Measured window, after the warm-up. */
  readonly durationMs: number;
  /** Sent at the same rate before the measured window; not recorded. */
  readonly warmupMs: number;
  /** HTTP/1.1: keep-alive connections opened up front. HTTP/2: most streams in flight. */
  readonly connections: number;
  /** A request sent and unanswered this long, or queued this long past its intended time, fails. */
  readonly timeoutMs: number;
  /** Stops the run early; what was scheduled until then is drained and reported. */
  readonly signal?: AbortSignal;
  /** Called every `progressIntervalMs` while the run lasts. */
  readonly onProgress?: (p: LoadProgress) => void;
  readonly progressIntervalMs?: number;
  /** Called once per measured request when it is settled (for traces and tests). */
  readonly onRequest?: (r: RequestRecord) => void;
  /** Called once when the warm-up ends and the measured window starts (e.g. to read counters then). */
  readonly onMeasureStart?: () => void;
  /** The time the schedule, timeouts and latencies are kept in; default the real clock (tests move one by hand). */
  readonly clock?: ScheduleClock;
}

/** One measured request, as `onRequest` sees it. */
export interface RequestRecord {
  readonly index: number;
  /** When it was due, on this thread's `performance.now()` clock. */
  readonly intendedAt: number;
  /** Intended send time → complete response (or failure), ms. */
  readonly latencyMs: number;
  readonly status?: number;
  readonly failure?: FailureKind;
}

/** Longest wait for what is still in flight when an interrupted run ends. */
const INTERRUPTED_DRAIN_MS = 1000;

function positive(name: string, v: number, integer = false): void {
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `load: ${name} must be ${integer ? 'a whole number' : 'a number'} above 0, got ${v}` });
  }
}

/** Runs the load and resolves with what it measured. Bounded in time: warm-up + duration + timeout + ~1 s. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const target = parseLoopbackUrl(o.url);
  positive('rate', o.rate);
  positive('duration', o.durationMs);
  positive('connections', o.connections, true);
  positive('timeout', o.timeoutMs);
  if (!Number.isFinite(o.warmupMs) || o.warmupMs < 0)
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `load: warm-up must be 0 or more, got ${o.warmupMs}` });
  const spec: RequestSpec = { method: o.method ?? 'GET', headers: o.headers ?? [], body: o.body ?? Buffer.alloc(0) };
  checkRequestSpec(spec);

  const clock = o.clock ?? new Clock();
  const intervalMs = 1000 / o.rate;
  const warmupCount = Math.round((o.warmupMs / 1000) * o.rate);
  const measuredCount = Math.round((o.durationMs / 1000) * o.rate);
  if (measuredCount < 1) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `load: ${o.rate} req/s for ${o.durationMs} ms schedules no request; raise --rate or --duration` });
  }
  const total = warmupCount + measuredCount;
  let start = 0;
  const intended = (i: number): number => start + i * intervalMs;
  const measured = (i: number): boolean => i >= warmupCount;

  const latency = newHistogram();
  const sendLag = newHistogram();
  const schedulerLag = newHistogram();
  const queueWait = newHistogram();
  let peakQueued = 0;
  const statuses = new Map<number, number>();
  const failed: Record<FailureKind, number> = { connect: 0, reset: 0, timeout: 0, protocol: 0 };
  const failures: { atMs: number; kind: FailureKind }[] = [];
  let dueCount = 0; // requests that became due (measured or not)
  let sent = 0;
  let completed = 0;
  let non2xx = 0;
  let settled = 0;
  let allCompleted = 0; // warm-up included, for the progress rate

  /** Requests written and not yet settled → when they were written. Insertion order is send order. */
  const inflight = new Map<number, number>();
  /** Due requests waiting for room, and when each became due (was handed over by the schedule). */
  const queue: number[] = [];
  const queuedAt: number[] = [];
  let queueHead = 0;

  const settle = (i: number, status: number | undefined, kind: FailureKind | undefined): void => {
    settled++;
    const t = clock.now();
    if (status !== undefined) allCompleted++;
    if (!measured(i)) return;
    const latencyMs = t - intended(i);
    if (status !== undefined) {
      completed++;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status < 200 || status > 299) non2xx++;
      recordMs(latency, latencyMs);
    } else if (kind !== undefined) {
      failed[kind]++;
      if (failures.length < 20) failures.push({ atMs: Math.round(intended(i) - intended(warmupCount)), kind });
    }
    o.onRequest?.({ index: i - warmupCount, intendedAt: clock.toPerformance(intended(i)), latencyMs, status, failure: kind });
  };

  const events: TransportEvents = {
    response(i, status) {
      if (inflight.delete(i)) settle(i, status, undefined);
    },
    failure(i, kind) {
      if (inflight.delete(i)) settle(i, undefined, kind);
    },
    ready() {
      pump();
    },
  };
  const transport: Transport = o.http2
    ? new Http2Transport(target, spec, o.connections, o.timeoutMs, events)
    : new Http1Transport(target, http1RequestBytes(target, spec), o.connections, o.timeoutMs, events, spec.method.toUpperCase() === 'HEAD');

  /** Writes request i if the transport has room. */
  const send = (i: number, dueAt: number): boolean => {
    const t = clock.now();
    inflight.set(i, t);
    if (!transport.trySend(i)) {
      inflight.delete(i);
      return false;
    }
    if (measured(i)) {
      sent++;
      recordMs(sendLag, t - intended(i));
      recordMs(queueWait, t - dueAt);
    }
    return true;
  };

  let pumping = false;
  function pump(): void {
    if (pumping) return; // a transport may report room from inside trySend
    pumping = true;
    try {
      while (queueHead < queue.length && send(queue[queueHead]!, queuedAt[queueHead]!)) queueHead++;
      if (queueHead > 4096 && queueHead * 2 > queue.length) {
        queue.splice(0, queueHead);
        queuedAt.splice(0, queueHead);
        queueHead = 0;
      }
    } finally {
      pumping = false;
    }
  }

  /** Fails what waits in the queue: all of it, or what is past the timeout. */
  const expireQueue = (all: boolean): void => {
    const limit = clock.now() - o.timeoutMs;
    const unavailable = transport.unavailable;
    const kind: FailureKind = unavailable ?? 'timeout';
    while (queueHead < queue.length && (all || unavailable !== undefined || intended(queue[queueHead]!) < limit)) {
      settle(queue[queueHead++]!, undefined, kind);
    }
  };

  const dispatchUpTo = (j: number): void => {
    const t = clock.now();
    const unavailable = transport.unavailable;
    // The measured window starts when its first request falls due, on the schedule's clock.
    const measureStarts = dueCount <= warmupCount && j > warmupCount;
    for (; dueCount < j; dueCount++) {
      if (measured(dueCount)) recordMs(schedulerLag, t - intended(dueCount));
      if (unavailable !== undefined) {
        settle(dueCount, undefined, unavailable); // fail fast while the target cannot be reached
      } else {
        queue.push(dueCount);
        queuedAt.push(t);
      }
    }
    pump();
    peakQueued = Math.max(peakQueued, queue.length - queueHead);
    if (measureStarts) o.onMeasureStart?.();
  };

  await transport.open();

  // Timeouts: a request in flight too long is given up (HTTP/1.1: with its connection,
  // which is replaced), and so is one that waited in the queue too long.
  const watchdog = setInterval(
    () => {
      const limit = clock.now() - o.timeoutMs;
      for (const [i, sentAt] of inflight) {
        if (sentAt > limit) break; // send order: the rest are younger
        inflight.delete(i);
        transport.cancel(i);
        settle(i, undefined, 'timeout');
      }
      expireQueue(false);
    },
    Math.min(100, Math.max(10, o.timeoutMs / 10)),
  );

  let phase: LoadProgress['phase'] = 'warmup';
  let lastProgress = { at: 0, completed: 0 };
  const progress = o.onProgress
    ? setInterval(() => {
        const t = clock.now();
        if (phase !== 'draining') phase = t >= intended(warmupCount) ? 'measuring' : 'warmup';
        const dt = (t - lastProgress.at) / 1000;
        o.onProgress!({
          phase,
          elapsedMs: Math.max(0, t - start),
          currentRps: dt > 0 ? (allCompleted - lastProgress.completed) / dt : 0,
          p99Us: latency.totalCount > 0 ? latency.getValueAtPercentile(99) : 0,
          completed,
          errors: non2xx + failed.connect + failed.reset + failed.timeout + failed.protocol,
        });
        lastProgress = { at: t, completed: allCompleted };
      }, o.progressIntervalMs ?? 500)
    : undefined;

  let interrupted = false;
  let scheduleEnd = 0;
  try {
    start = clock.now() + 20;
    lastProgress = { at: start, completed: 0 };
    await runSchedule({ clock, startMs: start, intervalMs, total, signal: o.signal }, dispatchUpTo);
    scheduleEnd = Math.min(clock.now(), intended(total));
    interrupted = dueCount < total;
    phase = 'draining';

    // Drain: wait for what is in flight or queued, bounded by the request timeout.
    const drainDeadline = clock.now() + (interrupted ? INTERRUPTED_DRAIN_MS : o.timeoutMs + 500);
    while (settled < dueCount && clock.now() < drainDeadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    clearInterval(watchdog);
    if (progress) clearInterval(progress);
    // Whatever is left never got an answer in time.
    expireQueue(true);
    for (const i of [...inflight.keys()]) {
      inflight.delete(i);
      settle(i, undefined, 'timeout');
    }
    transport.close();
  }

  const scheduled = Math.max(0, dueCount - warmupCount);
  const elapsedMs = interrupted ? Math.max(0, scheduleEnd - intended(warmupCount)) : o.durationMs;
  const statusErrors: Record<string, number> = {};
  const statusCounts: Record<string, number> = {};
  for (const [s, n] of [...statuses].sort((a, b) => a[0] - b[0])) {
    statusCounts[s] = n;
    if (s < 200 || s > 299) statusErrors[s] = n;
  }
  const result: LoadResult = {
    url: target.url,
    protocol: o.http2 ? 'h2' : 'http/1.1',
    method: spec.method,
    rate: o.rate,
    durationMs: o.durationMs,
    warmupMs: o.warmupMs,
    connections: o.connections,
    timeoutMs: o.timeoutMs,
    interrupted,
    elapsedMs,
    scheduled,
    sent,
    completed,
    achievedRps: elapsedMs > 0 ? completed / (elapsedMs / 1000) : 0,
    statuses: statusCounts,
    errors: {
      total: non2xx + failed.connect + failed.reset + failed.timeout + failed.protocol,
      ...failed,
      status: statusErrors,
    },
    latencyUs: summarize(latency),
    sendLagUs: summarize(sendLag),
    schedulerLagUs: summarize(schedulerLag),
    queueWaitUs: summarize(queueWait),
    peakQueued,
    failures,
  };
  for (const h of [latency, sendLag, schedulerLag, queueWait]) h.destroy();
  return result;
}
