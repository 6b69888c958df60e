// TCP echo throughput client for the bench: N parallel connections to an echo path
// (direct, or through a proxy pair), each writing fixed-size chunks while keeping at
// most `windowBytes` unechoed, for a warm-up and then a measured window. Throughput is
// the bytes echoed back during the measured window. Bounded: every socket is destroyed
// when the run ends, and the run ends by its timers whatever the target does.
//
// Runnable on its own:
//   node dist/bench/tcp-echo.js --port 9000 [--connections 4] [--duration 5] [--warmup 1]
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface EchoOptions {
  /** Loopback port of the echo path. */
  readonly port: number;
  readonly connections: number;
  /** Size of each write. */
  readonly chunkBytes: number;
  /** Most bytes a connection has written and not yet had echoed back (≥ chunkBytes). */
  readonly windowBytes: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Connecting gives up after this long. */
  readonly connectTimeoutMs?: number;
}

export const defaultEchoOptions = { connections: 4, chunkBytes: 64 * 1024, windowBytes: 256 * 1024, durationMs: 5000, warmupMs: 1000 } as const;

export interface EchoResult {
  readonly connections: number;
  readonly chunkBytes: number;
  readonly windowBytes: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** Bytes echoed back during the measured window. */
  readonly bytesEchoed: number;
  /** Echoed megabytes (10^6 bytes) per second over the measured window. */
  readonly mbPerS: number;
  /** Bytes written over the whole run (warm-up included). */
  readonly bytesSent: number;
  /** Connections that failed to connect, or broke or closed before the run ended. */
  readonly errors: number;
  /** Echoed bytes that were not the bytes sent at that offset (spot-checked per read). */
  readonly mismatches: number;
}

/** The byte at stream offset `k`: a 251-byte cycle, so a shifted or mixed-up stream shows. */
export function patternByte(k: number): number {
  return k % 251;
}

/** The chunk that starts at stream offset `offset`. */
function chunkAt(offset: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = patternByte(offset + i);
  return b;
}

/** Echoed megabytes per second, 10^6 bytes per MB. */
export function megabytesPerSecond(bytes: number, durationMs: number): number {
  return durationMs > 0 ? bytes / 1e6 / (durationMs / 1000) : 0;
}

/** Runs the echo load; resolves after warm-up + duration (+ up to the connect timeout). */
export async function runEcho(o: EchoOptions): Promise<EchoResult> {
  if (!Number.isInteger(o.connections) || o.connections < 1 || o.connections > 256) throw new Error(`echo: connections must be 1..256, got ${o.connections}`);
  if (!(o.chunkBytes >= 1 && o.windowBytes >= o.chunkBytes)) throw new Error('echo: need 1 ≤ chunkBytes ≤ windowBytes');
  if (!(o.durationMs > 0) || !(o.warmupMs >= 0)) throw new Error('echo: duration must be above 0 and warm-up 0 or more');
  // A chunk depends only on its offset mod 251: at most 251 distinct chunks, built once each.
  const phases = new Map<number, Buffer>();
  const chunkFor = (offset: number): Buffer => {
    const ph = offset % 251;
    let c = phases.get(ph);
    if (!c) phases.set(ph, (c = chunkAt(ph, o.chunkBytes)));
    return c;
  };

  let measuring = false;
  let finished = false;
  let bytesEchoed = 0;
  let bytesSent = 0;
  let errors = 0;
  let mismatches = 0;
  const sockets: net.Socket[] = [];
  const fills: (() => void)[] = [];

  const connectOne = (): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: o.port, noDelay: true });
      sockets.push(s);
      let sent = 0;
      let received = 0;
      let connected = false;
      let failed = false;
      /** Counts this connection as failed, once. */
      const fail = (): void => {
        if (!failed && !finished) errors++;
        failed = true;
      };
      const timer = setTimeout(() => {
        if (!connected) {
          fail();
          s.destroy();
          resolve();
        }
      }, o.connectTimeoutMs ?? 5000);
      const fill = (): void => {
        while (!finished && sent - received + o.chunkBytes <= o.windowBytes) {
          const c = chunkFor(sent);
          sent += c.length;
          bytesSent += c.length;
          if (!s.write(c)) break; // the window bounds memory; 'drain' is not needed to stay bounded
        }
      };
      s.on('connect', () => {
        connected = true;
        clearTimeout(timer);
        resolve();
      });
      s.on('data', (d: Buffer) => {
        if (d[0] !== patternByte(received) || d[d.length - 1] !== patternByte(received + d.length - 1)) mismatches++;
        received += d.length;
        if (measuring) bytesEchoed += d.length;
        fill();
      });
      s.on('drain', fill);
      s.on('error', () => {
        fail();
        s.destroy();
        if (!connected) {
          clearTimeout(timer);
          resolve();
        }
      });
      s.on('close', () => {
        if (connected) fail();
      });
      fills.push(fill);
    });

  try {
    await Promise.all(Array.from({ length: o.connections }, connectOne));
    for (const fill of fills) fill();
    await new Promise((r) => setTimeout(r, o.warmupMs));
    measuring = true;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, o.durationMs));
    measuring = false;
    const elapsed = performance.now() - t0;
    finished = true;
    return {
      connections: o.connections,
      chunkBytes: o.chunkBytes,
      windowBytes: o.windowBytes,
      durationMs: o.durationMs,
      warmupMs: o.warmupMs,
      bytesEchoed,
      mbPerS: megabytesPerSecond(bytesEchoed, elapsed),
      bytesSent,
      errors,
      mismatches,
    };
  } finally {
    finished = true;
    for (const s of sockets) s.destroy();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      connections: { type: 'string', default: String(defaultEchoOptions.connections) },
      duration: { type: 'string', default: String(defaultEchoOptions.durationMs / 1000) },
      warmup: { type: 'string', default: String(defaultEchoOptions.warmupMs / 1000) },
    },
  });
  if (!values.port) {
    process.stderr.write('usage: node dist/bench/tcp-echo.js --port PORT [--connections 4] [--duration 5] [--warmup 1]\n');
    process.exitCode = 2;
    return;
  }
  const r = await runEcho({
    ...defaultEchoOptions,
    port: Number(values.port),
    connections: Number(values.connections),
    durationMs: Number(values.duration) * 1000,
    warmupMs: Number(values.warmup) * 1000,
  });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
