// The schedule of an open-model run: request i is due at start + i × interval, no
// matter how the previous ones fared.
//
// libuv timers have 1 ms granularity, which would make the client itself send ~0.5 ms
// late on average and blur the very latencies it measures. So a small worker thread
// keeps the schedule: it sleeps with Atomics.wait (sub-millisecond, no busy loop) and
// posts "requests up to j are due" to the main thread, which owns the sockets.
//
// The clock is a seam (ScheduleClock): a run keeps time by the real one above, and a
// test by a clock it moves by hand, so what the schedule does is checked on schedule
// time, not on how fast a busy machine happens to be.
import { TrellisError } from '../errors.js';
import { Worker } from 'node:worker_threads';

/** When the requests of a run fall due: request i at startMs + i × intervalMs, on the run's clock. */
export interface SchedulePlan {
  readonly startMs: number;
  readonly intervalMs: number;
  readonly total: number;
}

/** A run of due requests in progress on a clock. */
export interface Ticking {
  /** Resolves once all of the plan's requests are due; rejects if the clock fails to keep it. */
  readonly done: Promise<void>;
  /** Stops early: no further request becomes due. */
  stop(): Promise<void>;
}

/** The time a run keeps: its now, and what makes its requests fall due. */
export interface ScheduleClock {
  /** Milliseconds on this clock. */
  now(): number;
  /** The same instant on this thread's `performance.now()` clock (as `onRequest` reports it). */
  toPerformance(ms: number): number;
  /** Calls `due(j)` each time requests up to (excluding) j fall due, in order. */
  tick(plan: SchedulePlan, due: (upTo: number) => void): Ticking;
}

/**
 * How many of the plan's requests are due at time `t`, given that `from` already are: the
 * one count the ticker thread and a test clock both use. (Kept free of anything outside
 * it: its source runs in the ticker thread too.)
 */
export function dueAt(plan: SchedulePlan, from: number, t: number): number {
  let j = from;
  while (j < plan.total && plan.startMs + j * plan.intervalMs <= t) j++;
  return j;
}

/**
 * A monotonic millisecond clock the main thread and the ticker thread share
 * (hrtime minus a common base), with a way to express its times on the
 * `performance.now()` clock of this thread.
 */
export class Clock implements ScheduleClock {
  readonly base: bigint;
  readonly #performanceAtBase: number;

  constructor() {
    // The first call of either clock can take a millisecond (lazy initialisation), so a
    // plain pair of reads put every intended time ~1 ms late on the performance clock
    // and requests seemed to arrive before they were due. Warm both up, then bracket a
    // performance read between two hrtime reads and keep the tightest bracket.
    performance.now();
    this.base = process.hrtime.bigint();
    let best = Infinity;
    let atBase = 0;
    for (let k = 0; k < 5; k++) {
      const h1 = process.hrtime.bigint();
      const p = performance.now();
      const h2 = process.hrtime.bigint();
      const gap = Number(h2 - h1);
      if (gap < best) {
        best = gap;
        atBase = p - Number((h1 + h2) / 2n - this.base) / 1e6;
      }
    }
    this.#performanceAtBase = atBase;
  }

  now(): number {
    return Number(process.hrtime.bigint() - this.base) / 1e6;
  }

  /** The same instant on this thread's `performance.now()` clock. */
  toPerformance(ms: number): number {
    return this.#performanceAtBase + ms;
  }

  /** Keeps the plan in the ticker thread. Fails if the thread fails, stops early, or overruns the plan by 10 s. */
  tick(plan: SchedulePlan, due: (upTo: number) => void): Ticking {
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const ticker = new Worker(TICKER_SOURCE, {
      eval: true,
      // The source is CommonJS; a process started with --input-type=module would make it ESM.
      execArgv: process.execArgv.filter((a) => !a.startsWith('--input-type')),
      workerData: { flag: flag.buffer, base: String(this.base), startMs: plan.startMs, intervalMs: plan.intervalMs, total: plan.total },
    });
    let posted = 0;
    let stopped = false;
    const done = new Promise<void>((resolve, reject) => {
      const lengthMs = plan.startMs + plan.total * plan.intervalMs - this.now();
      const bound = setTimeout(() => reject(new TrellisError('TRELLIS_E_LOAD_SCHEDULE', { reason: 'it overran its time by 10 s' })), lengthMs + 10_000);
      const finish = (err?: Error): void => {
        clearTimeout(bound);
        if (err) reject(err);
        else resolve();
      };
      ticker.on('message', (j: number) => {
        posted = j;
        due(j);
        if (j >= plan.total) finish();
      });
      ticker.once('error', finish);
      ticker.once('exit', () =>
        finish(posted >= plan.total || stopped ? undefined : new TrellisError('TRELLIS_E_LOAD_SCHEDULE', { reason: 'the ticker thread stopped early' })),
      );
    });
    return {
      done,
      async stop() {
        stopped = true;
        Atomics.store(flag, 0, 1);
        Atomics.notify(flag, 0);
        await ticker.terminate();
      },
    };
  }
}

/** CommonJS source of the ticker thread. Setting flag[0] to 1 stops it. */
const TICKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const flag = new Int32Array(workerData.flag);
const base = BigInt(workerData.base);
const now = () => Number(process.hrtime.bigint() - base) / 1e6;
const plan = { startMs: workerData.startMs, intervalMs: workerData.intervalMs, total: workerData.total };
${dueAt.toString()}
let i = 0;
while (i < plan.total && Atomics.load(flag, 0) === 0) {
  const wait = plan.startMs + i * plan.intervalMs - now();
  if (wait > 0) {
    Atomics.wait(flag, 0, 0, Math.min(wait, 100));
    continue;
  }
  const j = dueAt(plan, i, now());
  parentPort.postMessage(j);
  i = j;
}
`;

export interface ScheduleOptions {
  readonly clock: ScheduleClock;
  /** When request 0 is due, on `clock`. */
  readonly startMs: number;
  readonly intervalMs: number;
  readonly total: number;
  /** Stops the schedule early: no further request becomes due. */
  readonly signal?: AbortSignal;
}

/**
 * Calls `due(j)` each time requests up to (excluding) index j have become due, in
 * order, and resolves once all `total` are due, or when `signal` aborts. Rejects only
 * if the clock fails to keep the schedule (the real one: its ticker thread fails or
 * overruns the schedule by 10 s).
 */
export async function runSchedule(o: ScheduleOptions, due: (upTo: number) => void): Promise<void> {
  if (o.total <= 0 || o.signal?.aborted) return;
  let next = 0;
  const ticking = o.clock.tick({ startMs: o.startMs, intervalMs: o.intervalMs, total: o.total }, (j) => {
    if (o.signal?.aborted || j <= next) return;
    next = j;
    due(j);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => resolve();
      o.signal?.addEventListener('abort', onAbort, { once: true });
      ticking.done.then(
        () => {
          o.signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        (err: unknown) => {
          o.signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  } finally {
    await ticking.stop();
  }
}
