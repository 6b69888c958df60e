// Open-model, fixed-rate HTTP/1.1 load client for the bench: a thin wrapper over the
// load engine in src/loadgen/ (run.ts), which `trellis load` shares. It keeps the
// bench's own result shape (FixedRateResult) and request (GET with the bench's
// User-Agent), so bench/run.ts and bench/report.ts need not change.
//
// Latency is measured from each request's intended send time (no coordinated
// omission); how late the client itself was is `sendLagUs`, split into
// `schedulerLagUs` (the client's own timers and CPU: a busy load machine) and
// `queueWaitUs` (every connection was waiting on an answer: the target stalled).
// See src/loadgen/run.ts for how, and bench/README.md for how to read it.
//
// Runnable on its own:
//   node dist/bench/fixed-rate.js --url http://127.0.0.1:8080/ --rate 1000 --duration 10
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { LatencySummary } from '../src/loadgen/histogram.js';
import { runLoad } from '../src/loadgen/run.js';

export type { LatencySummary } from '../src/loadgen/histogram.js';

/** What to send, how fast and for how long. */
export interface FixedRateOptions {
  /** `http://127.0.0.1:PORT/path`; loopback only. */
  readonly url: string;
  /** Requests per second, spread evenly. */
  readonly rate: number;
  /** Measured window, after the warm-up. */
  readonly durationMs: number;
  /** Sent at the same rate before the measured window; not recorded. */
  readonly warmupMs: number;
  /** Keep-alive connections opened up front. */
  readonly connections: number;
  /** A request with no complete response after this long counts as a timeout. */
  readonly timeoutMs: number;
  /** Default GET. */
  readonly method?: string;
  /** Request body (sent with a Content-Length); default none. */
  readonly body?: Buffer;
}

export const defaultFixedRateOptions = {
  rate: 1000,
  durationMs: 10_000,
  warmupMs: 2_000,
  connections: 20,
  timeoutMs: 5_000,
} as const;

export interface FixedRateResult {
  readonly url: string;
  /** Set when not GET. */
  readonly method?: string;
  /** Request body bytes, when there was one. */
  readonly requestBodyBytes?: number;
  readonly rate: number;
  readonly connections: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Requests scheduled in the measured window. */
  readonly scheduled: number;
  /** Of those, answered with any status. */
  readonly completed: number;
  /** Of those, answered with a status outside 200–399. */
  readonly non2xx: number;
  /** Of those, lost to a socket error or close (or a malformed response, or no connection). */
  readonly errors: number;
  /** Of those, unanswered after `timeoutMs` (or still open when the run ended). */
  readonly timeouts: number;
  /** Completed requests per second over the measured window. */
  readonly achievedRps: number;
  /** Intended send time → last byte of the response, completed requests only. */
  readonly latencyUs: LatencySummary;
  /** Intended send time → actual write: how late the client itself was (timer slack, queueing). */
  readonly sendLagUs: LatencySummary;
  /** Intended send time → handed to the connection pool: timer slack and CPU of the client. */
  readonly schedulerLagUs: LatencySummary;
  /** Handed to the pool → written: waiting because all connections had a request in flight. */
  readonly queueWaitUs: LatencySummary;
  /** Most requests ever waiting for a free connection at once. */
  readonly peakQueued: number;
  /** The first few failed requests: intended send time (ms after the measured window began) and why. */
  readonly failures: readonly { readonly atMs: number; readonly kind: 'error' | 'timeout' }[];
}

const BENCH_HEADERS: readonly (readonly [string, string])[] = [
  ['User-Agent', 'trellis-bench'],
  ['Accept', '*/*'],
];

/** Runs the fixed-rate load and resolves with its histogram summaries. Bounded in time. */
export async function runFixedRate(options: FixedRateOptions): Promise<FixedRateResult> {
  const method = options.method ?? 'GET';
  const headers = options.body && options.body.length > 0 ? [...BENCH_HEADERS, ['Content-Type', 'application/octet-stream'] as const] : BENCH_HEADERS;
  const r = await runLoad({ ...options, method, headers });
  let non2xx = 0;
  for (const [status, n] of Object.entries(r.statuses)) if (Number(status) < 200 || Number(status) > 399) non2xx += n;
  return {
    url: options.url,
    ...(method !== 'GET' ? { method } : {}),
    ...(options.body && options.body.length > 0 ? { requestBodyBytes: options.body.length } : {}),
    rate: r.rate,
    connections: r.connections,
    durationMs: r.durationMs,
    warmupMs: r.warmupMs,
    scheduled: r.scheduled,
    completed: r.completed,
    non2xx,
    errors: r.errors.connect + r.errors.reset + r.errors.protocol,
    timeouts: r.errors.timeout,
    achievedRps: r.achievedRps,
    latencyUs: r.latencyUs,
    sendLagUs: r.sendLagUs,
    schedulerLagUs: r.schedulerLagUs,
    queueWaitUs: r.queueWaitUs,
    peakQueued: r.peakQueued,
    failures: r.failures.map((f) => ({ atMs: f.atMs, kind: f.kind === 'timeout' ? 'timeout' : 'error' })),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string', default: String(defaultFixedRateOptions.rate) },
      duration: { type: 'string', default: String(defaultFixedRateOptions.durationMs / 1000) },
      warmup: { type: 'string', default: String(defaultFixedRateOptions.warmupMs / 1000) },
      connections: { type: 'string', default: String(defaultFixedRateOptions.connections) },
    },
  });
  if (!values.url) {
    process.stderr.write('usage: node dist/bench/fixed-rate.js --url http://127.0.0.1:PORT/ [--rate 1000] [--duration 10] [--warmup 2] [--connections 20]\n');
    process.exitCode = 2;
    return;
  }
  const result = await runFixedRate({
    url: values.url,
    rate: Number(values.rate),
    durationMs: Number(values.duration) * 1000,
    warmupMs: Number(values.warmup) * 1000,
    connections: Number(values.connections),
    timeoutMs: defaultFixedRateOptions.timeoutMs,
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
