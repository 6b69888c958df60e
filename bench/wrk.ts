// Max-rate load with wrk (closed model: each connection sends its next request as soon
// as the previous answer arrives), and a parser for its `--latency` report.
import { spawn } from 'node:child_process';

export interface WrkOptions {
  readonly wrk: string;
  readonly url: string;
  readonly threads: number;
  readonly connections: number;
  readonly durationS: number;
  /** wrk's per-request timeout. */
  readonly timeoutS: number;
  /** Extra request headers (`-H`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** A command wrk runs under (`ip netns exec <ns> …`: from inside a pod); absent: wrk itself. */
  readonly prefix?: readonly string[];
}

export interface WrkResult {
  readonly requests: number;
  readonly rps: number;
  /** Latency percentiles from `--latency`, in microseconds. */
  readonly latencyUs: { readonly p50: number; readonly p75: number; readonly p90: number; readonly p99: number };
  readonly non2xx: number;
  readonly socketErrors: { readonly connect: number; readonly read: number; readonly write: number; readonly timeout: number };
  readonly raw: string;
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1_000, s: 1_000_000, m: 60_000_000, h: 3_600_000_000 };

/** `321.00us`, `1.07ms`, `2.00s` → microseconds. */
export function parseWrkDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`wrk: cannot read the duration "${text}"`);
  // Rounded to a thousandth of a microsecond: 2.01 × 1e6 is not exactly 2010000 in binary.
  return Math.round(Number(m[1]) * UNIT_US[m[2]!]! * 1000) / 1000;
}

/** Reads the report wrk prints with `--latency`. Throws when the numbers are not there. */
export function parseWrkOutput(raw: string): WrkResult {
  const rpsMatch = /Requests\/sec:\s+([\d.]+)/.exec(raw);
  if (!rpsMatch) throw new Error(`wrk: no "Requests/sec" in its output:\n${raw}`);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)\\s*$`, 'm').exec(raw);
    if (!m) throw new Error(`wrk: no ${p}% line in its latency distribution (was --latency given?)`);
    return parseWrkDuration(m[1]!);
  };
  const requests = Number(/(\d+) requests in/.exec(raw)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(raw)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  return {
    requests,
    rps: Number(rpsMatch[1]),
    latencyUs: { p50: pct('50'), p75: pct('75'), p90: pct('90'), p99: pct('99') },
    non2xx,
    socketErrors: {
      connect: Number(se?.[1] ?? 0),
      read: Number(se?.[2] ?? 0),
      write: Number(se?.[3] ?? 0),
      timeout: Number(se?.[4] ?? 0),
    },
    raw,
  };
}

/** Runs wrk once; killed if it overruns its duration by 15 s. */
export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${o.threads}`,
    `-c${o.connections}`,
    `-d${o.durationS}s`,
    `--timeout`,
    `${o.timeoutS}s`,
    '--latency',
    ...Object.entries(o.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    o.url,
  ];
  return new Promise((resolve, reject) => {
    const [cmd = o.wrk, ...pre] = o.prefix ?? [];
    const child = spawn(cmd, o.prefix === undefined ? args : [...pre, o.wrk, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), (o.durationS + 15) * 1000);
    child.on('error', (e) => {
      clearTimeout(killer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      if (code !== 0) {
        reject(new Error(`wrk exited with ${signal ?? code}: ${(err || out).trim().slice(-400)}`));
        return;
      }
      try {
        resolve(parseWrkOutput(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}
