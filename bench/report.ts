// The bench's results: their shape (also written as JSON), the printed tables, and the
// targets we report against (reported only: the bench never fails on a target).
import type { FixedRateResult } from './fixed-rate.js';
import type { CpuUsage } from './machine.js';
import type { WrkResult } from './wrk.js';

export type TargetName = 'direct' | 'trellis' | 'nginx' | 'haproxy';

/** What one target measured, or why it could not. */
export interface TargetResult {
  readonly name: TargetName;
  readonly path: string;
  /** Set when the target could not be started; no numbers then. */
  readonly unavailable?: string;
  readonly maxRate?: Omit<WrkResult, 'raw'> & { readonly raw: string };
  readonly maxRateError?: string;
  readonly fixedRate?: FixedRateResult;
  readonly fixedRateError?: string;
  /** CPU used during the measured max-rate run, by the bench and by everything else. */
  readonly maxRateCpu?: CpuUsage;
  readonly fixedRateCpu?: CpuUsage;
}

export interface Settings {
  readonly wrk: { readonly threads: number; readonly connections: number; readonly durationS: number; readonly warmupS: number };
  readonly fixedRate: { readonly rate: number; readonly connections: number; readonly durationS: number; readonly warmupS: number };
  readonly bodyBytes: number;
}

export interface Environment {
  readonly cores: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly platform: string;
  readonly node: string;
  readonly nginx: string;
  readonly haproxy: string;
  readonly wrk: string;
  readonly trellis: string;
  /** CPU other processes used in the second before the bench started, in cores. */
  readonly backgroundCores?: number;
}

export interface Goal {
  readonly name: string;
  readonly limit: string;
  readonly measured: string;
  /** undefined when it could not be measured. */
  readonly met: boolean | undefined;
}

export interface BenchReport {
  readonly time: string;
  readonly environment: Environment;
  readonly settings: Settings;
  readonly results: readonly TargetResult[];
  readonly goals: readonly Goal[];
  readonly warnings: readonly string[];
}

/** Minimum trellis/nginx max-throughput ratio we aim for. */
export const THROUGHPUT_RATIO_GOAL = 0.6;
/** Maximum p99 the Trellis pair may add over direct at the fixed rate, in ms. */
export const ADDED_P99_GOAL_MS = 2;
/** Above this much foreign CPU (in cores) during a measurement, its numbers are suspect. */
export const NOISE_CORES = 0.25;

const byName = (rs: readonly TargetResult[], n: TargetName): TargetResult | undefined => rs.find((r) => r.name === n);

/** The goals and warnings derived from the results. */
export function evaluate(results: readonly TargetResult[], settings: Settings): { goals: Goal[]; warnings: string[] } {
  const goals: Goal[] = [];
  const warnings: string[] = [];
  const trellis = byName(results, 'trellis');
  const nginx = byName(results, 'nginx');
  const direct = byName(results, 'direct');

  const tr = trellis?.maxRate?.rps;
  const ng = nginx?.maxRate?.rps;
  goals.push({
    name: 'trellis/nginx max throughput',
    limit: `≥ ${THROUGHPUT_RATIO_GOAL.toFixed(2)}`,
    measured: tr !== undefined && ng ? (tr / ng).toFixed(2) : notMeasured(['trellis', trellis], ['nginx', nginx]),
    met: tr !== undefined && ng ? tr / ng >= THROUGHPUT_RATIO_GOAL : undefined,
  });

  const tp99 = trellis?.fixedRate?.latencyUs.p99;
  const dp99 = direct?.fixedRate?.latencyUs.p99;
  const added = tp99 !== undefined && dp99 !== undefined ? (tp99 - dp99) / 1000 : undefined;
  goals.push({
    name: `added p99 at ${settings.fixedRate.rate} rps`,
    limit: `≤ ${ADDED_P99_GOAL_MS} ms`,
    measured: added !== undefined ? `${added.toFixed(2)} ms` : notMeasured(['trellis', trellis], ['direct', direct]),
    met: added !== undefined ? added <= ADDED_P99_GOAL_MS : undefined,
  });

  const directRps = direct?.maxRate?.rps;
  for (const r of results) {
    if (r.name === 'direct' || !r.maxRate || !directRps) continue;
    if (r.maxRate.rps >= 0.9 * directRps) {
      warnings.push(`${r.name} reached ${(100 * r.maxRate.rps / directRps).toFixed(0)}% of direct: the upstream may be the bottleneck, not the proxy`);
    }
  }
  for (const r of results) {
    const m = r.maxRate;
    if (m) {
      const se = m.socketErrors.connect + m.socketErrors.read + m.socketErrors.write + m.socketErrors.timeout;
      if (m.non2xx > 0 || se > 0) warnings.push(`${r.name} max-rate: ${m.non2xx} non-2xx/3xx answers, ${se} socket errors`);
    }
    const f = r.fixedRate;
    if (f) {
      const bad = f.non2xx + f.errors + f.timeouts;
      if (bad > 0) warnings.push(`${r.name} fixed-rate: ${f.non2xx} non-2xx/3xx, ${f.errors} socket errors, ${f.timeouts} timeouts of ${f.scheduled}`);
      if (f.achievedRps < 0.97 * f.rate) warnings.push(`${r.name} fixed-rate: completed only ${f.achievedRps.toFixed(0)} of ${f.rate} rps`);
      if (f.queueWaitUs.max > 10_000) {
        warnings.push(
          `${r.name} fixed-rate: the target stalled: all ${f.connections} connections were waiting on answers, so up to ` +
            `${f.peakQueued} requests queued for up to ${ms(f.queueWaitUs.max)} (queue-wait p99 ${ms(f.queueWaitUs.p99)}); latencies include that`,
        );
      }
      if (f.schedulerLagUs.p99 > 2000) {
        warnings.push(`${r.name} fixed-rate: the client's own timers ran late (scheduler-lag p99 ${ms(f.schedulerLagUs.p99)}): the load machine is saturated, latencies include that`);
      }
    }
    for (const [what, cpu] of [['max-rate', r.maxRateCpu], ['fixed-rate', r.fixedRateCpu]] as const) {
      if (cpu && cpu.foreignCores > NOISE_CORES) {
        warnings.push(`${r.name} ${what}: other processes used ${cpu.foreignCores.toFixed(2)} cores meanwhile: these numbers are low/noisy; re-run on a quiet machine`);
      }
    }
    if (r.maxRateError) warnings.push(`${r.name} max-rate failed: ${r.maxRateError}`);
    if (r.fixedRateError) warnings.push(`${r.name} fixed-rate failed: ${r.fixedRateError}`);
  }
  return { goals, warnings };
}

function notMeasured(...rs: [TargetName, TargetResult | undefined][]): string {
  const why = rs.flatMap(([n, r]) => (!r ? [`${n} not run`] : r.unavailable ? [`${n} unavailable`] : []));
  return why.length > 0 ? `not measured (${why.join(', ')})` : 'not measured';
}

function others(cpu: CpuUsage | undefined): string {
  if (!cpu) return '-';
  return `${cpu.foreignCores.toFixed(2)}${cpu.foreignCores > NOISE_CORES ? '!' : ''}`;
}

/** Microseconds → "0.32 ms". */
function ms(us: number): string {
  return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
}

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  // A row of three cells (scenario, target, message) spans the numeric columns.
  const spans = (r: readonly string[]): boolean => r.length === 3 && header.length > 3;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (spans(r) && i >= 2 ? 0 : (r[i] ?? '').length))));
  const line = (cells: readonly string[]): string => {
    if (spans(cells)) return `${cells[0]!.padEnd(widths[0]!)}  ${cells[1]!.padEnd(widths[1]!)}  ${cells[2]}`;
    return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  };
  return [line(header), ...rows.map(line)].join('\n');
}

/** The human-readable report. */
export function formatReport(report: BenchReport): string {
  const { environment: env, settings: s, results } = report;
  const out: string[] = [];
  out.push(`Trellis bench  ${report.time}`);
  out.push(`machine: ${env.cores} cores (${env.cpuModel}), ${env.memoryGiB} GiB, ${env.platform}`);
  out.push(`versions: node ${env.node}, ${env.nginx}, ${env.haproxy}, ${env.wrk}, trellis ${env.trellis}`);
  out.push(
    'Every proxy runs ONE worker/thread (nginx worker_processes 1, haproxy nbthread 1), because a Trellis',
    'sidecar is one Node.js thread. Upstream: its own nginx (1 worker) answering GET / with a fixed',
    `${s.bodyBytes}-byte body. All on loopback: the load client, both proxies and the upstream share the`,
    `machine's ${env.cores} cores, so absolute numbers are lower than on dedicated hosts; compare the rows.`,
  );
  if (env.backgroundCores !== undefined) out.push(`background load before the run: ${env.backgroundCores.toFixed(2)} cores`);
  out.push('');

  const nginxRps = byName(results, 'nginx')?.maxRate?.rps;
  const maxRows: string[][] = [];
  const label = [`max-rate ${s.bodyBytes / 1024}KB GET`, `(wrk -t${s.wrk.threads} -c${s.wrk.connections} -d${s.wrk.durationS}s)`];
  results.forEach((r, i) => {
    const scen = label[i] ?? '';
    if (r.unavailable) return maxRows.push([scen, r.name, `unavailable: ${r.unavailable}`]);
    if (!r.maxRate) return maxRows.push([scen, r.name, `failed: ${r.maxRateError ?? 'no result'}`]);
    const m = r.maxRate;
    const errs = m.non2xx + m.socketErrors.connect + m.socketErrors.read + m.socketErrors.write + m.socketErrors.timeout;
    maxRows.push([
      scen,
      r.name,
      int(m.rps),
      ms(m.latencyUs.p50),
      ms(m.latencyUs.p99),
      nginxRps ? `${(m.rps / nginxRps).toFixed(2)}x` : '-',
      String(errs),
      others(r.maxRateCpu),
    ]);
  });
  out.push(table(['scenario', 'target', 'rps', 'p50', 'p99', 'vs nginx', 'errors', 'others'], maxRows), '');

  const directP99 = byName(results, 'direct')?.fixedRate?.latencyUs.p99;
  const fixedRows: string[][] = [];
  const flabel = [`fixed ${int(s.fixedRate.rate)} rps ${s.bodyBytes / 1024}KB GET`, `(open model, ${s.fixedRate.connections} conns, ${s.fixedRate.durationS}s)`];
  results.forEach((r, i) => {
    const scen = flabel[i] ?? '';
    if (r.unavailable) return fixedRows.push([scen, r.name, `unavailable: ${r.unavailable}`]);
    if (!r.fixedRate) return fixedRows.push([scen, r.name, `failed: ${r.fixedRateError ?? 'no result'}`]);
    const f = r.fixedRate;
    const l = f.latencyUs;
    fixedRows.push([
      scen,
      r.name,
      int(f.achievedRps),
      ms(l.p50),
      ms(l.p99),
      ms(l.p999),
      ms(l.max),
      r.name === 'direct' ? '-' : directP99 !== undefined ? `${l.p99 >= directP99 ? '+' : '-'}${ms(Math.abs(l.p99 - directP99))}` : '-',
      String(f.non2xx + f.errors + f.timeouts),
      others(r.fixedRateCpu),
    ]);
  });
  out.push(table(['scenario', 'target', 'rps', 'p50', 'p99', 'p99.9', 'max', 'added p99', 'errors', 'others'], fixedRows));
  const lag = byName(results, 'direct')?.fixedRate?.schedulerLagUs;
  if (lag) {
    out.push(`(fixed-rate latency is from each request's intended send time; the client's own scheduler lag on direct: p50 ${ms(lag.p50)}, p99 ${ms(lag.p99)})`);
  }
  out.push(`("others" = cores of CPU used by processes that are not the bench's during the measurement; > ${NOISE_CORES} means a noisy run)`);
  out.push('');

  out.push('targets (reported, never enforced):');
  for (const g of report.goals) {
    const verdict = g.met === undefined ? '' : g.met ? '  met' : '  MISSED';
    out.push(`  ${`${g.name} ${g.limit}`.padEnd(40)} measured ${g.measured}${verdict}`);
  }
  if (report.warnings.length > 0) {
    out.push('', 'warnings:');
    for (const w of report.warnings) out.push(`  - ${w}`);
  }
  return `${out.join('\n')}\n`;
}
