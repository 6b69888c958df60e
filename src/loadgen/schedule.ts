// The schedule of an open-model run: request i is due at start + i × interval, no
// matter how the previous ones fared.
//
// libuv timers have 1 ms granularity, which would make the client itself send ~0.5 ms
// late on average and blur the very latencies it measures. So a small worker thread
// keeps the schedule: it sleeps with Atomics.wait (sub-millisecond, no busy loop) and
// posts "requests up to j are due" to the main thread, which owns the sockets.
import { Worker } from 'node:worker_threads';
import { TrellisError } from '../errors.js';

/**
 * A monotonic millisecond clock the main thread and the ticker thread share
 * (hrtime minus a common base), with a way to express its times on the
 * `performance.now()` clock of this thread.
 */
export class Clock {
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
}

/** CommonJS source of the ticker thread. Setting flag[0] to 1 stops it. */
const TICKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const flag = new Int32Array(workerData.flag);
const base = BigInt(workerData.base);
const now = () => Number(process.hrtime.bigint() - base) / 1e6;
const { startMs, intervalMs, total } = workerData;
let i = 0;
while (i < total && Atomics.load(flag, 0) === 0) {
  const wait = startMs + i * intervalMs - now();
  if (wait > 0) {
    Atomics.wait(flag, 0, 0, Math.min(wait, 100));
    continue;
  }
  const t = now();
  let j = i + 1;
  while (j < total && startMs + j * intervalMs <= t) j++;
  parentPort.postMessage(j);
  i = j;
}
`;

export interface ScheduleOptions {
  readonly clock: Clock;
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
 * if the ticker thread fails, or with TRELLIS_E_LOAD_SCHEDULE when it stops early or
 * overruns the schedule by 10 s.
 */
export async function runSchedule(o: ScheduleOptions, due: (upTo: number) => void): Promise<void> {
  if (o.total <= 0 || o.signal?.aborted) return;
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const ticker = new Worker(TICKER_SOURCE, {
    eval: true,
    // The source is CommonJS; a process started with --input-type=module would make it ESM.
    execArgv: process.execArgv.filter((a) => !a.startsWith('--input-type')),
    workerData: { flag: flag.buffer, base: String(o.clock.base), startMs: o.startMs, intervalMs: o.intervalMs, total: o.total },
  });
  let next = 0;
  const stop = (): void => {
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const lengthMs = o.startMs + o.total * o.intervalMs - o.clock.now();
      const bound = setTimeout(() => reject(new TrellisError('TRELLIS_E_LOAD_SCHEDULE', { reason: 'it overran its time by 10 s' })), lengthMs + 10_000);
      const done = (): void => {
        clearTimeout(bound);
        o.signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        stop();
        done();
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      ticker.on('message', (j: number) => {
        if (o.signal?.aborted) return;
        if (j > next) {
          next = j;
          due(j);
        }
        if (next >= o.total) done();
      });
      ticker.once('error', (e) => {
        clearTimeout(bound);
        reject(e);
      });
      ticker.once('exit', () => {
        if (next >= o.total || o.signal?.aborted) done();
        else {
          clearTimeout(bound);
          reject(new TrellisError('TRELLIS_E_LOAD_SCHEDULE', { reason: 'the ticker thread stopped early' }));
        }
      });
    });
  } finally {
    stop();
    await ticker.terminate();
  }
}
