// The new-connection rate scenario: how many fresh TCP connections per second a path
// carries, each connecting, sending 32 bytes, reading them echoed back and closing. Through
// a TCP proxy pair each client connection is a new connection between the two proxies,
// so with TLS between them (mTLS for Trellis) every one costs a handshake: this is the
// handshake rate issue 13 asks the bench to show, where the keep-alive scenarios hide
// handshakes behind pooled connections. `concurrency` loops run back to back for a
// warm-up and a measured window; bounded by its timers whatever the target does.
import net from 'node:net';
import { newHistogram, recordMs, summarize, type LatencySummary } from '../src/loadgen/histogram.js';

export interface NewConnectionOptions {
  readonly port: number;
  /** Connections in flight at once (each loop opens the next when one closes). */
  readonly concurrency: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** One connection gives up after this long (connect to echo). */
  readonly timeoutMs?: number;
}

export const defaultNewConnectionOptions = { concurrency: 8 } as const;

export interface NewConnectionResult {
  readonly concurrency: number;
  readonly durationMs: number;
  /** Connections completed (connected, echoed, closed) in the measured window. */
  readonly completed: number;
  readonly perSecond: number;
  /** From connect() to the echo's last byte, in µs, over the measured window. */
  readonly latencyUs: LatencySummary;
  /** Connections that failed, timed out or echoed other bytes. */
  readonly errors: number;
}

const PAYLOAD = Buffer.from('trellis-bench-new-connection-32b');

/** One connection: resolves true when the payload came back whole, false on any failure. */
function oneConnection(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = 0;
    let ok = true;
    const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const done = (result: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => sock.write(PAYLOAD));
    sock.on('data', (d: Buffer) => {
      for (let i = 0; i < d.length; i++) if (d[i] !== PAYLOAD[got + i]) ok = false;
      got += d.length;
      if (got >= PAYLOAD.length) done(ok && got === PAYLOAD.length);
    });
    sock.once('error', () => done(false));
    sock.once('close', () => done(false));
  });
}

export async function runNewConnections(o: NewConnectionOptions): Promise<NewConnectionResult> {
  if (!Number.isInteger(o.concurrency) || o.concurrency < 1 || o.concurrency > 256)
    throw new Error(`new connections: concurrency must be 1..256, got ${o.concurrency}`);
  const timeoutMs = o.timeoutMs ?? 5000;
  const histogram = newHistogram();
  const start = performance.now();
  const measureFrom = start + o.warmupMs;
  const end = measureFrom + o.durationMs;
  let completed = 0;
  let errors = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const ok = await oneConnection(o.port, timeoutMs);
      const t1 = performance.now();
      if (t0 < measureFrom || t1 > end) continue;
      if (ok) {
        completed++;
        recordMs(histogram, t1 - t0);
      } else {
        errors++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, loop));
    return {
      concurrency: o.concurrency,
      durationMs: o.durationMs,
      completed,
      perSecond: completed / (o.durationMs / 1000),
      latencyUs: summarize(histogram),
      errors,
    };
  } finally {
    histogram.destroy();
  }
}
