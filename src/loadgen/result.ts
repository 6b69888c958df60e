// The outcome of a load run: counters by outcome, latency summaries, and the shapes
// the CLI prints (a text report, one JSON object, a progress line).
import type { LatencySummary } from './histogram.js';
import type { FailureKind } from './transport.js';

/** Requests that got no successful (2xx) answer, by kind. */
export interface ErrorCounts {
  readonly total: number;
  readonly connect: number;
  readonly reset: number;
  readonly timeout: number;
  readonly protocol: number;
  /** Answers outside 2xx, by status code. */
  readonly status: Readonly<Record<string, number>>;
}

export interface LoadResult {
  /** The URL the load was sent to (loopback). */
  readonly url: string;
  readonly protocol: 'http/1.1' | 'h2';
  readonly method: string;
  /** Asked rate, requests per second. */
  readonly rate: number;
  /** Asked measured window, after the warm-up. */
  readonly durationMs: number;
  readonly warmupMs: number;
  /** HTTP/1.1: keep-alive connections; HTTP/2: most streams in flight on the one session. */
  readonly connections: number;
  readonly timeoutMs: number;
  /** True when the run was stopped early (Ctrl-C); counts cover what was scheduled until then. */
  readonly interrupted: boolean;
  /** The measured window as it ran (shorter than durationMs when interrupted). */
  readonly elapsedMs: number;
  /** Requests due in the measured window. */
  readonly scheduled: number;
  /** Of those, written to a connection. */
  readonly sent: number;
  /** Of those, answered with any status. */
  readonly completed: number;
  /** Completed requests per second over the measured window. */
  readonly achievedRps: number;
  /** Answers by status code. */
  readonly statuses: Readonly<Record<string, number>>;
  readonly errors: ErrorCounts;
  /** Intended send time → last byte of the response, for every completed request (any status). */
  readonly latencyUs: LatencySummary;
  /** Intended send time → actual write: how late the client itself was (timer slack, queueing). */
  readonly sendLagUs: LatencySummary;
  /** Intended send time → handed over by the schedule: the client's own timers and CPU (a busy load machine). */
  readonly schedulerLagUs: LatencySummary;
  /** Handed over → written: waiting for room because every connection (or stream slot) had a request in flight (a stalled target). */
  readonly queueWaitUs: LatencySummary;
  /** Most requests ever waiting for room at once. */
  readonly peakQueued: number;
  /** The first few failed requests: when they were due (ms into the measured window) and why. */
  readonly failures: readonly { readonly atMs: number; readonly kind: FailureKind }[];
}

/** Progress of a run, reported while it runs. */
export interface LoadProgress {
  readonly phase: 'warmup' | 'measuring' | 'draining';
  /** Since the first request was due. */
  readonly elapsedMs: number;
  /** Responses per second since the previous report. */
  readonly currentRps: number;
  /** p99 latency of the measured window so far, µs. */
  readonly p99Us: number;
  readonly completed: number;
  /** Failed requests and non-2xx answers so far (measured window). */
  readonly errors: number;
}

/** Milliseconds with a precision that suits the value, from microseconds. */
export function formatMs(us: number): string {
  const ms = us / 1000;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

function rate(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

export function formatProgress(p: LoadProgress): string {
  const phase = p.phase === 'measuring' ? '' : ` (${p.phase})`;
  return `${(p.elapsedMs / 1000).toFixed(1)}s${phase}  ${rate(p.currentRps)} req/s  p99 ${p.p99Us > 0 ? formatMs(p.p99Us) : '-'}  errors ${p.errors}`;
}

/** The human report of a run; `via` says how the target was reached. */
export function formatResult(r: LoadResult, via?: string): string {
  const lat = r.latencyUs;
  const lines: string[] = [];
  lines.push(`${r.method} ${r.url}${via ? ` (${via})` : ''}`);
  lines.push(
    `${r.protocol === 'h2' ? 'HTTP/2 (h2c)' : 'HTTP/1.1'}, ${r.connections} ${r.protocol === 'h2' ? 'streams' : 'connections'}, ${(r.elapsedMs / 1000).toFixed(1)}s measured${r.warmupMs > 0 ? ` after ${(r.warmupMs / 1000).toFixed(1)}s warm-up` : ''}${r.interrupted ? ' (interrupted)' : ''}`,
  );
  lines.push('');
  lines.push(`  rate      ${rate(r.rate)} req/s asked, ${rate(r.achievedRps)} req/s achieved`);
  lines.push(`  requests  ${r.scheduled} scheduled, ${r.sent} sent, ${r.completed} completed`);
  if (lat.count > 0) {
    lines.push(
      `  latency   p50 ${formatMs(lat.p50)}  p90 ${formatMs(lat.p90)}  p99 ${formatMs(lat.p99)}  p99.9 ${formatMs(lat.p999)}  max ${formatMs(lat.max)}`,
    );
    lines.push(`            (from each request's intended send time; the client's own send lag p99 ${formatMs(r.sendLagUs.p99)})`);
  } else {
    lines.push('  latency   - (no request completed)');
  }
  const statuses = Object.entries(r.statuses)
    .map(([s, n]) => `${s}: ${n}`)
    .join(', ');
  if (statuses) lines.push(`  statuses  ${statuses}`);
  const e = r.errors;
  if (e.total === 0) {
    lines.push('  errors    none');
  } else {
    const parts: string[] = [];
    for (const kind of ['connect', 'reset', 'timeout', 'protocol'] as const) if (e[kind] > 0) parts.push(`${kind} ${e[kind]}`);
    for (const [s, n] of Object.entries(e.status)) parts.push(`status ${s}: ${n}`);
    lines.push(`  errors    ${e.total} (${parts.join(', ')})`);
  }
  if (r.queueWaitUs.max > 10_000) {
    lines.push(
      `  note      every ${r.protocol === 'h2' ? 'stream slot' : 'connection'} was busy at times: up to ${r.peakQueued} requests waited for one, for up to ${formatMs(r.queueWaitUs.max)}; that wait is in the latencies (the target stalled, or --connections is too low for this rate)`,
    );
  }
  if (r.schedulerLagUs.count > 0 && r.schedulerLagUs.p99 > 2_000) {
    lines.push(
      `  warning   the client's own timers ran late (scheduler lag p99 ${formatMs(r.schedulerLagUs.p99)}): this machine is saturated, and latencies include that`,
    );
  }
  if (r.completed > 0 && r.achievedRps < 0.95 * r.rate && !r.interrupted) {
    lines.push(`  warning   achieved ${rate(r.achievedRps)} of ${rate(r.rate)} req/s asked: the target (or the client) could not keep up`);
  }
  return `${lines.join('\n')}\n`;
}
