// Open-model, fixed-rate HTTP/1.1 load client for the bench.
//
// Request i is *intended* to be sent at start + i/rate. Latency is measured from that
// intended time, not from when a socket happened to be free, so a server that stalls
// is charged for every request that had to wait behind the stall (no coordinated
// omission, as in wrk2). Requests go over N keep-alive connections on raw `net`
// sockets (one request in flight per connection, no pipelining); a request that finds
// every connection busy waits in a FIFO queue, and that wait counts as latency.
//
// libuv timers have 1 ms granularity, which would make the client itself send ~0.5 ms
// late on average and blur the very latencies we measure. So a small worker thread
// keeps the schedule: it sleeps with Atomics.wait (sub-millisecond, no busy loop) and
// posts "send up to request j" to the main thread, which owns the sockets. How late
// the client still is gets reported as `sendLagUs`, split into `schedulerLagUs` (the
// client's own timers and CPU: a busy load machine) and `queueWaitUs` (every connection
// was waiting on an answer: the target stalled).
//
// Runnable on its own:
//   node dist/bench/fixed-rate.js --url http://127.0.0.1:8080/ --rate 1000 --duration 10
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { build, type Histogram } from 'hdr-histogram-js';

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
}

export const defaultFixedRateOptions = {
  rate: 1000,
  durationMs: 10_000,
  warmupMs: 2_000,
  connections: 20,
  timeoutMs: 5_000,
} as const;

/** Percentiles in microseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

export interface FixedRateResult {
  readonly url: string;
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
  /** Of those, lost to a socket error or close. */
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

interface Parsed {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly hostHeader: string;
}

function parseTarget(url: string): Parsed {
  const u = new URL(url);
  if (u.protocol !== 'http:') throw new Error(`fixed-rate: only http:// URLs are supported, got ${url}`);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!(host === 'localhost' || host === '::1' || host.startsWith('127.'))) {
    throw new Error(`fixed-rate: refusing to load ${host}: the bench only targets loopback addresses`);
  }
  const port = Number(u.port || 80);
  return { host, port, path: `${u.pathname}${u.search}`, hostHeader: u.host };
}

function newHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  return {
    count: h.totalCount,
    p50: h.getValueAtPercentile(50),
    p90: h.getValueAtPercentile(90),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
    mean: Math.round(h.mean),
  };
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * The schedule keeper (runs in a worker thread, CommonJS): posts `j` whenever requests
 * up to index j are due. Shares the main thread's clock: hrtime minus `base`, in ms.
 * Setting flag[0] to 1 stops it.
 */
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

/**
 * Incremental HTTP/1.1 response reader for one connection: enough of the protocol for
 * a benchmark (status, Content-Length or chunked body, Connection: close).
 */
class ResponseReader {
  #buf: Buffer = Buffer.alloc(0);
  #head: { status: number; close: boolean; length: number | 'chunked' | 'eof'; bodyStart: number } | undefined;

  reset(): void {
    this.#buf = Buffer.alloc(0);
    this.#head = undefined;
  }

  /** Feeds bytes; returns a finished response, or undefined when more bytes are needed. */
  push(chunk: Buffer): { status: number; close: boolean } | undefined {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    if (!this.#head) {
      const end = this.#buf.indexOf(CRLFCRLF);
      if (end < 0) return undefined;
      const lines = this.#buf.toString('latin1', 0, end).split('\r\n');
      const status = Number(lines[0]?.split(' ')[1] ?? NaN);
      let length: number | 'chunked' | 'eof' = 'eof';
      let close = false;
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i]!;
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim().toLowerCase();
        if (name === 'content-length') length = Number(value);
        else if (name === 'transfer-encoding' && value.includes('chunked')) length = 'chunked';
        else if (name === 'connection' && value.includes('close')) close = true;
      }
      if (status === 204 || status === 304 || (status >= 100 && status < 200)) length = 0;
      this.#head = { status, close, length, bodyStart: end + 4 };
    }
    const head = this.#head;
    let consumed: number | undefined;
    if (typeof head.length === 'number') {
      if (this.#buf.length >= head.bodyStart + head.length) consumed = head.bodyStart + head.length;
    } else if (head.length === 'chunked') {
      consumed = chunkedEnd(this.#buf, head.bodyStart);
    } else {
      return undefined; // read-until-close: finished by the 'end' handler
    }
    if (consumed === undefined) return undefined;
    this.#buf = this.#buf.subarray(consumed);
    this.#head = undefined;
    return { status: head.status, close: head.close };
  }

  /** For a body delimited by connection close. */
  endOfStream(): { status: number; close: boolean } | undefined {
    if (this.#head && this.#head.length === 'eof') return { status: this.#head.status, close: true };
    return undefined;
  }
}

/** Offset just past a complete chunked body starting at `start`, or undefined if incomplete. */
function chunkedEnd(buf: Buffer, start: number): number | undefined {
  let pos = start;
  for (let guard = 0; guard < 100_000; guard++) {
    const eol = buf.indexOf('\r\n', pos, 'latin1');
    if (eol < 0) return undefined;
    const size = parseInt(buf.toString('latin1', pos, eol).split(';')[0]!, 16);
    if (Number.isNaN(size)) throw new Error('fixed-rate: bad chunk size in response');
    if (size === 0) {
      // The last-chunk line is followed by trailers (usually none) and an empty line,
      // so the body ends at the first CRLFCRLF from the last-chunk line's CRLF.
      const end = buf.indexOf(CRLFCRLF, eol);
      return end < 0 ? undefined : end + 4;
    }
    pos = eol + 2 + size + 2;
    if (pos > buf.length) return undefined;
  }
  return undefined;
}

/** Runs the fixed-rate load and resolves with its histogram summaries. Bounded in time. */
export async function runFixedRate(options: FixedRateOptions): Promise<FixedRateResult> {
  const target = parseTarget(options.url);
  const request = Buffer.from(
    `GET ${target.path} HTTP/1.1\r\nHost: ${target.hostHeader}\r\nUser-Agent: trellis-bench\r\nAccept: */*\r\n\r\n`,
    'latin1',
  );
  const base = process.hrtime.bigint();
  const now = (): number => Number(process.hrtime.bigint() - base) / 1e6;
  const intervalMs = 1000 / options.rate;
  const warmupCount = Math.round((options.warmupMs / 1000) * options.rate);
  const measuredCount = Math.round((options.durationMs / 1000) * options.rate);
  const total = warmupCount + measuredCount;
  const latency = newHistogram();
  const sendLag = newHistogram();
  const schedulerLag = newHistogram();
  const queueWait = newHistogram();
  const dispatchedAt = new Float64Array(total);
  let peakQueued = 0;
  let completed = 0;
  let non2xx = 0;
  let errors = 0;
  let timeouts = 0;
  let reconnects = 0;
  const maxReconnects = Math.max(1000, options.connections * 50);
  const failures: { atMs: number; kind: 'error' | 'timeout' }[] = [];
  let start = 0;

  const intended = (i: number): number => start + i * intervalMs;
  const measured = (i: number): boolean => i >= warmupCount;

  interface Conn {
    socket: net.Socket | undefined;
    reader: ResponseReader;
    /** Index of the request in flight, or -1. */
    inflight: number;
    sentAt: number;
    ready: boolean;
  }
  const conns: Conn[] = [];
  const idle: Conn[] = [];
  const queue: number[] = [];
  let queueHead = 0;
  let settled = 0; // requests finished one way or another (measured or not)

  const finish = (i: number, outcome: 'ok' | 'non2xx' | 'error' | 'timeout'): void => {
    settled++;
    if (!measured(i)) return;
    if (outcome === 'ok' || outcome === 'non2xx') {
      completed++;
      if (outcome === 'non2xx') non2xx++;
      latency.recordValue(Math.max(1, Math.round((now() - intended(i)) * 1000)));
    } else {
      if (outcome === 'error') errors++;
      else timeouts++;
      if (failures.length < 20) failures.push({ atMs: Math.round(intended(i) - intended(warmupCount)), kind: outcome });
    }
  };

  const send = (c: Conn, i: number): void => {
    c.inflight = i;
    c.sentAt = now();
    if (measured(i)) {
      sendLag.recordValue(Math.max(1, Math.round((c.sentAt - intended(i)) * 1000)));
      queueWait.recordValue(Math.max(1, Math.round((c.sentAt - dispatchedAt[i]!) * 1000)));
    }
    c.socket!.write(request);
  };

  const release = (c: Conn): void => {
    c.inflight = -1;
    if (queueHead < queue.length) {
      send(c, queue[queueHead++]!);
      if (queueHead > 4096 && queueHead * 2 > queue.length) {
        queue.splice(0, queueHead);
        queueHead = 0;
      }
    } else {
      idle.push(c);
    }
  };

  const dispatch = (i: number): void => {
    dispatchedAt[i] = now();
    if (measured(i)) schedulerLag.recordValue(Math.max(1, Math.round((dispatchedAt[i]! - intended(i)) * 1000)));
    const c = idle.pop();
    if (c) send(c, i);
    else {
      queue.push(i);
      peakQueued = Math.max(peakQueued, queue.length - queueHead);
    }
  };

  const connect = (c: Conn): Promise<void> =>
    new Promise((resolve) => {
      c.ready = false;
      c.reader.reset();
      const socket = net.connect({ host: target.host, port: target.port });
      c.socket = socket;
      socket.setNoDelay(true);
      let opened = false;
      socket.once('connect', () => {
        opened = true;
        c.ready = true;
        release(c);
        resolve();
      });
      socket.on('data', (chunk: Buffer) => {
        if (c.inflight < 0) return; // unsolicited bytes: ignore
        let res;
        try {
          res = c.reader.push(chunk);
        } catch {
          socket.destroy();
          return;
        }
        if (!res) return;
        const i = c.inflight;
        c.inflight = -1;
        finish(i, res.status >= 200 && res.status < 400 ? 'ok' : 'non2xx');
        if (res.close) socket.destroy();
        else release(c);
      });
      socket.on('end', () => {
        const res = c.reader.endOfStream();
        if (res && c.inflight >= 0) {
          const i = c.inflight;
          c.inflight = -1;
          finish(i, res.status >= 200 && res.status < 400 ? 'ok' : 'non2xx');
        }
      });
      socket.on('error', () => {
        /* handled on close */
      });
      socket.on('close', () => {
        if (c.socket !== socket) return;
        const idx = idle.indexOf(c);
        if (idx >= 0) idle.splice(idx, 1);
        if (c.inflight >= 0) {
          finish(c.inflight, 'error');
          c.inflight = -1;
        }
        c.socket = undefined;
        if (!opened) resolve();
        if (!stopping && reconnects < maxReconnects) {
          reconnects++;
          // A short pause so a refusing server does not turn this into a busy loop.
          setTimeout(() => void connect(c), opened ? 0 : 10).unref();
        }
      });
    });

  let stopping = false;
  for (let k = 0; k < options.connections; k++) {
    conns.push({ socket: undefined, reader: new ResponseReader(), inflight: -1, sentAt: 0, ready: false });
  }
  await Promise.race([
    Promise.all(conns.map((c) => connect(c))),
    new Promise((r) => setTimeout(r, options.timeoutMs).unref()),
  ]);

  // Timeouts: a request in flight too long costs its connection (which is replaced).
  const watchdog = setInterval(() => {
    const t = now();
    for (const c of conns) {
      if (c.inflight >= 0 && t - c.sentAt > options.timeoutMs) {
        const i = c.inflight;
        c.inflight = -1;
        finish(i, 'timeout');
        c.socket?.destroy();
      }
    }
  }, 100);

  start = now() + 20;
  let next = 0;
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const ticker = new Worker(TICKER_SOURCE, {
    eval: true,
    workerData: { flag: flag.buffer, base: String(base), startMs: start, intervalMs, total },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      // The schedule ends by itself; the bound is only against a stuck ticker.
      const bound = setTimeout(() => reject(new Error('fixed-rate: the schedule overran its time')), options.warmupMs + options.durationMs + 10_000);
      ticker.on('message', (j: number) => {
        while (next < j) dispatch(next++);
        if (next >= total) {
          clearTimeout(bound);
          resolve();
        }
      });
      ticker.once('error', (e) => {
        clearTimeout(bound);
        reject(e);
      });
      ticker.once('exit', () => {
        clearTimeout(bound);
        if (next >= total) resolve();
        else reject(new Error('fixed-rate: the ticker thread stopped early'));
      });
    });
  } finally {
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    await ticker.terminate();
  }

  // Drain: wait for what is in flight or queued, bounded by the request timeout.
  const drainDeadline = now() + options.timeoutMs + 500;
  while (settled < total && now() < drainDeadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  stopping = true;
  clearInterval(watchdog);
  // Whatever is left never got an answer in time.
  for (let q = queueHead; q < queue.length; q++) finish(queue[q]!, 'timeout');
  queueHead = queue.length;
  for (const c of conns) {
    if (c.inflight >= 0) finish(c.inflight, 'timeout');
    c.inflight = -1;
    c.socket?.destroy();
  }

  const result: FixedRateResult = {
    url: options.url,
    rate: options.rate,
    connections: options.connections,
    durationMs: options.durationMs,
    warmupMs: options.warmupMs,
    scheduled: measuredCount,
    completed,
    non2xx,
    errors,
    timeouts,
    achievedRps: completed / (options.durationMs / 1000),
    latencyUs: summarize(latency),
    sendLagUs: summarize(sendLag),
    schedulerLagUs: summarize(schedulerLag),
    queueWaitUs: summarize(queueWait),
    peakQueued,
    failures,
  };
  latency.destroy();
  sendLag.destroy();
  schedulerLag.destroy();
  queueWait.destroy();
  return result;
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
