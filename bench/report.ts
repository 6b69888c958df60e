// The bench's results: their shape (also written as JSON), the printed tables, and the
// targets we report against (reported only: the bench never fails on a target).
import type { BalancingResult } from './balancing.js';
import { formatRouteRules, type RouteRulesResult } from './route-rules.js';
import type { FixedRateResult } from './fixed-rate.js';
import type { CpuUsage } from './machine.js';
import type { EchoResult } from './tcp-echo.js';
import type { NewConnectionResult } from './new-connections.js';
import type { WrkResult } from './wrk.js';

/**
 * `trellis`: the Trellis pair as users run it, mTLS between the sidecars (the default);
 * `trellis-plain`: the same pair with mTLS off (a PeerAuthentication DISABLE), to compare
 * with the plaintext peers and with builds from before mTLS; `baseline`: the Trellis pair
 * of another build (`--baseline`), for an A/B of this checkout against it; `nginx-tls`,
 * `haproxy-tls`: the peers with mutual TLS between their two proxies (tls-peers.ts).
 */
export type TargetName = 'direct' | 'trellis' | 'trellis-plain' | 'baseline' | 'nginx' | 'nginx-tls' | 'haproxy' | 'haproxy-tls';

/** The targets with TLS between the two proxies of the pair. */
export const TLS_TARGETS: ReadonlySet<TargetName> = new Set(['trellis', 'nginx-tls', 'haproxy-tls']);

/**
 * Whether a target runs the extra scenarios (10 KB, 100 KB, POST; TCP echo, route
 * matching, balancing). The baseline and the TLS/plaintext variants run only the max rate
 * and the 1 KB fixed rate (and the new-connection rate): the rest would add minutes to
 * every run.
 */
export function runsExtraScenarios(name: TargetName): boolean {
  return name === 'direct' || name === 'trellis' || name === 'nginx' || name === 'haproxy';
}

/** One target of the new-connection (handshake) rate scenario: its own TCP pair. */
export interface NewConnectionTargetResult {
  readonly name: TargetName;
  readonly path: string;
  readonly unavailable?: string;
  readonly result?: NewConnectionResult;
  readonly error?: string;
  readonly cpu?: CpuUsage;
}

/** The extra fixed-rate scenarios: bigger responses, and requests with a body. */
export type LatencyScenario = 'get10k' | 'get100k' | 'post1k';
export const LATENCY_SCENARIOS: readonly LatencyScenario[] = ['get10k', 'get100k', 'post1k'];

/** What each extra scenario sends: method, path on the upstream, body sizes. */
export const LATENCY_SCENARIO_SPECS: Record<
  LatencyScenario,
  { readonly method: 'GET' | 'POST'; readonly path: string; readonly requestBytes: number; readonly responseBytes: number }
> = {
  get10k: { method: 'GET', path: '/10k', requestBytes: 0, responseBytes: 10 * 1024 },
  get100k: { method: 'GET', path: '/100k', requestBytes: 0, responseBytes: 100 * 1024 },
  post1k: { method: 'POST', path: '/post', requestBytes: 1024, responseBytes: 1024 },
};

/** "10KB GET", "1KB POST" (the request body for POST, the response body for GET). */
export function scenarioTitle(id: LatencyScenario): string {
  const sp = LATENCY_SCENARIO_SPECS[id];
  return `${(sp.method === 'POST' ? sp.requestBytes : sp.responseBytes) / 1024}KB ${sp.method}`;
}

/** Memory and CPU of one proxy process group (nginx: master + worker). */
export interface ProxyResources {
  readonly role: 'outbound' | 'inbound';
  /** Processes in the group when sampled. */
  readonly processes: number;
  /** VmRSS summed over the group, after the last max-rate round, in MB (1024 kB). */
  readonly rssMb?: number;
  /** Pss summed over the group at the same moment, in MB: RSS with shared pages divided among their users. */
  readonly pssMb?: number;
  /** utime + stime during the measured max-rate rounds, per 1,000 requests wrk completed in them. */
  readonly cpuSecondsPer1kMaxRate?: number;
  /** utime + stime during the 1 KB fixed-rate run (warm-up + measured), per 1,000 requests sent in it. */
  readonly cpuSecondsPer1kFixedRate?: number;
}

/** One target of the TCP echo scenario (its own pair: nginx stream, haproxy mode tcp, Trellis protocol tcp). */
export interface TcpResult {
  readonly name: TargetName;
  readonly path: string;
  readonly unavailable?: string;
  readonly echo?: EchoResult;
  readonly error?: string;
  readonly cpu?: CpuUsage;
}

/** What one target measured, or why it could not. */
export interface TargetResult {
  readonly name: TargetName;
  readonly path: string;
  /** Set when the target could not be started; no numbers then. */
  readonly unavailable?: string;
  /** The max-rate round with the median rps (the lower middle one of an even count), so its percentiles are a real run's. */
  readonly maxRate?: Omit<WrkResult, 'raw'> & { readonly raw: string };
  /** Requests per second of every max-rate round, in order (absent in runs from before the rounds). */
  readonly maxRateRounds?: readonly number[];
  readonly maxRateError?: string;
  readonly fixedRate?: FixedRateResult;
  readonly fixedRateError?: string;
  /** CPU used during this target's measured max-rate rounds (not the other targets' rounds between them), by the bench and by everything else. */
  readonly maxRateCpu?: CpuUsage;
  readonly fixedRateCpu?: CpuUsage;
  /**
   * New mutual TLS connections the outbound proxy of a Trellis pair opened during its 1 KB
   * fixed-rate run, warm-up included (`trellis_tls_connections_total{direction="outbound"}`,
   * read before and after): handshakes on the request path, if they happen after the warm-up.
   */
  readonly fixedRateHandshakes?: number;
  /**
   * The 1 KB fixed-rate p99 (µs) of each paired round (Settings.p99Rounds), in round
   * order; null for a round whose run failed. Round i of every target ran within seconds
   * of direct's round i, so their difference is the added p99 with the machine's drift
   * between rounds taken out.
   */
  readonly p99Rounds?: readonly (number | null)[];
  /** The extra fixed-rate scenarios (10 KB, 100 KB, 1 KB POST). */
  readonly latency?: { readonly [K in LatencyScenario]?: FixedRateResult };
  readonly latencyErrors?: { readonly [K in LatencyScenario]?: string };
  readonly latencyCpu?: { readonly [K in LatencyScenario]?: CpuUsage };
  /** The proxies' memory and CPU (none for direct), outbound first. */
  readonly resources?: readonly ProxyResources[];
}

export interface Settings {
  /**
   * Max rate: every target warmed up for warmupS, then `rounds` rounds, each running wrk
   * for durationS against every target in turn (rounds absent in runs from before them: one run).
   */
  readonly wrk: { readonly threads: number; readonly connections: number; readonly durationS: number; readonly warmupS: number; readonly rounds?: number };
  readonly fixedRate: { readonly rate: number; readonly connections: number; readonly durationS: number; readonly warmupS: number };
  /**
   * The added-p99 targets' measure: `rounds` rounds of the same fixed rate, each visiting
   * direct and the Trellis pairs in turn for durationS after warmupS (absent in runs from
   * before them, or with --p99-rounds 0).
   */
  readonly p99Rounds?: { readonly rounds: number; readonly durationS: number; readonly warmupS: number };
  readonly bodyBytes: number;
  /** The extra fixed-rate scenarios (absent in runs from before they existed, or with --no-extra). */
  readonly extra?: {
    readonly rate: number;
    readonly connections: number;
    readonly durationS: number;
    readonly warmupS: number;
    readonly scenarios: readonly LatencyScenario[];
  };
  /** The new-connection (handshake) rate scenario. */
  readonly newConnections?: { readonly concurrency: number; readonly durationS: number; readonly warmupS: number };
  /** The TCP echo scenario. */
  readonly tcp?: {
    readonly connections: number;
    readonly chunkBytes: number;
    readonly windowBytes: number;
    readonly durationS: number;
    readonly warmupS: number;
  };
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

/** Which build the `baseline` target ran, and this checkout's commit beside it. */
export interface BaselineInfo {
  /** Its checkout (with --baseline-ref, a temporary worktree, removed after the run). */
  readonly dir: string;
  /** The --baseline-ref it was built from. */
  readonly ref?: string;
  /** `git -C dir rev-parse HEAD`, when dir is a git checkout. */
  readonly commit?: string;
  /** Its tracked files differed from that commit. */
  readonly dirty?: boolean;
  /** This checkout's commit (the `trellis` target), and whether its tracked files differed from it. */
  readonly trellisCommit?: string;
  readonly trellisDirty?: boolean;
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
  /** Max throughput over nginx's, per target: per round and their median (maxRateRatios()). */
  readonly maxRateVsNginx?: { readonly [K in TargetName]?: RoundRatios };
  /** With a baseline build (--baseline): which one. */
  readonly baseline?: BaselineInfo;
  /** With a baseline: this checkout's max throughput over the baseline's, per round and their median. */
  readonly maxRateVsBaseline?: { readonly trellis?: RoundRatios };
  /** The TCP echo scenario, per target. */
  readonly tcp?: readonly TcpResult[];
  /** The new-connection (handshake) rate scenario, per target. */
  readonly newConnections?: readonly NewConnectionTargetResult[];
  /** The route-matching scenario: 50 rules against 1 (bench/route-rules.ts). */
  readonly routeRules?: RouteRulesResult;
  /** The balancing scenario: round robin against PeakEWMA with one slow instance (bench/balancing.ts). */
  readonly balancing?: BalancingResult;
  readonly goals: readonly Goal[];
  readonly warnings: readonly string[];
}

/** Minimum trellis/nginx max-throughput ratio we aim for. */
export const THROUGHPUT_RATIO_GOAL = 0.6;
/** Maximum p99 the plaintext Trellis pair may add over direct at the fixed rate, in ms. */
export const ADDED_P99_GOAL_MS = 2;
/** Minimum mTLS-pair/TLS-nginx-pair max-throughput ratio (issue 13). */
export const MTLS_THROUGHPUT_RATIO_GOAL = 0.6;
/** Maximum p99 the mTLS Trellis pair may add over direct at the fixed rate, in ms (issue 13). */
export const MTLS_ADDED_P99_GOAL_MS = 1;
/** Maximum resident memory of one Trellis sidecar, in MB. */
export const SIDECAR_RSS_GOAL_MB = 60;
/** Above this much foreign CPU (in cores) during a measurement, its numbers are suspect. */
export const NOISE_CORES = 0.25;

const byName = (rs: readonly TargetResult[], n: TargetName): TargetResult | undefined => rs.find((r) => r.name === n);

/** The median; the mean of the middle two of an even count. */
export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The run with the median rps; of an even count the lower middle one, so it is a real run (its percentiles belong to it). */
export function medianRun<T extends { readonly rps: number }>(runs: readonly T[]): T | undefined {
  return [...runs].sort((a, b) => a.rps - b.rps)[Math.floor((runs.length - 1) / 2)];
}

/** A max-throughput ratio between two targets: one per round, and their median. */
export interface RoundRatios {
  readonly median: number;
  readonly rounds: readonly number[];
}

/**
 * `r`'s max throughput over `ref`'s, round by round: both ran in the same round, a few
 * seconds apart, so the machine's drift between rounds cancels out of each ratio; the
 * median then drops a round that one noisy burst spoiled. Rounds a target did not
 * complete (it failed) have no ratio. Results from before the rounds count as one round.
 */
export function roundRatios(r: TargetResult | undefined, ref: TargetResult | undefined): RoundRatios | undefined {
  const rounds = (t: TargetResult | undefined): readonly number[] => t?.maxRateRounds ?? (t?.maxRate ? [t.maxRate.rps] : []);
  const a = rounds(r);
  const b = rounds(ref);
  const ratios = a.slice(0, b.length).flatMap((v, i) => (b[i]! > 0 ? [v / b[i]!] : []));
  const m = median(ratios);
  return m === undefined ? undefined : { median: m, rounds: ratios };
}

/** Every target's max throughput over nginx's (roundRatios), for the JSON. */
export function maxRateRatios(results: readonly TargetResult[]): { [K in TargetName]?: RoundRatios } {
  const nginx = byName(results, 'nginx');
  return Object.fromEntries(
    results.flatMap((r) => {
      const rr = roundRatios(r, nginx);
      return rr ? [[r.name, rr]] : [];
    }),
  );
}

/** This checkout's max throughput over the baseline build's (roundRatios), for the JSON; empty without both. */
export function maxRateVsBaseline(results: readonly TargetResult[]): { trellis?: RoundRatios } {
  const rr = roundRatios(byName(results, 'trellis'), byName(results, 'baseline'));
  return rr ? { trellis: rr } : {};
}

/**
 * The A/B line: this checkout's throughput over the baseline's (median of the per-round
 * ratios, each round's beside it) and each one's added p99 over direct at the fixed rate.
 */
export function baselineLine(results: readonly TargetResult[], name: 'trellis' | 'trellis-plain' = 'trellis'): string {
  const trellis = byName(results, name);
  const baseline = byName(results, 'baseline');
  const rr = roundRatios(trellis, baseline);
  const throughput = rr
    ? `${rr.median.toFixed(2)}× throughput (median of per-round ratios: ${rr.rounds.map((v) => v.toFixed(2)).join(', ')})`
    : `throughput ${notMeasured([name, trellis], ['baseline', baseline])}`;
  const direct = byName(results, 'direct')?.fixedRate?.latencyUs.p99;
  const added = (r: TargetResult | undefined): string => addedP99(r?.fixedRate?.latencyUs.p99, direct);
  return `${name} vs baseline: ${throughput}, added p99 ${added(trellis)} vs ${added(baseline)}`;
}

/**
 * A target's added p99 over direct in the paired rounds, ms: each round's difference,
 * and their median (the lower middle one of an even count). Undefined without rounds.
 */
export function pairedAddedP99(r: TargetResult | undefined, direct: TargetResult | undefined): { median: number; rounds: number[] } | undefined {
  const mine = r?.p99Rounds;
  const theirs = direct?.p99Rounds;
  if (!mine || !theirs) return undefined;
  const rounds: number[] = [];
  for (let i = 0; i < Math.min(mine.length, theirs.length); i++) {
    const a = mine[i];
    const b = theirs[i];
    if (a !== null && a !== undefined && b !== null && b !== undefined) rounds.push((a - b) / 1000);
  }
  if (rounds.length === 0) return undefined;
  const sorted = [...rounds].sort((x, y) => x - y);
  return { median: sorted[Math.floor((sorted.length - 1) / 2)]!, rounds };
}

/** "0.62 ms (median of 5 paired rounds: 0.41, 0.62, ...)". */
function pairedText(p: { median: number; rounds: number[] }): string {
  return `${p.median.toFixed(2)} ms (median of ${p.rounds.length} paired rounds: ${p.rounds.map((v) => v.toFixed(2)).join(', ')})`;
}

/** A p99 over direct's as "+0.41 ms" (or "-0.05 ms"); "-" when either is missing. */
function addedP99(p99: number | undefined, directP99: number | undefined): string {
  if (p99 === undefined || directP99 === undefined) return '-';
  return `${p99 >= directP99 ? '+' : '-'}${ms(Math.abs(p99 - directP99))}`;
}

/** "A/B: trellis = this checkout (826645fa1b2c); baseline = HEAD~3 (8397447c0d1e, built in a temporary worktree)" */
function baselineHeader(b: BaselineInfo): string {
  const commit = (c: string | undefined, dirty: boolean | undefined): string =>
    c === undefined ? 'not a git checkout' : `${c.slice(0, 12)}${dirty ? ', with uncommitted changes' : ''}`;
  const base = b.ref !== undefined ? `${b.ref} (${commit(b.commit, b.dirty)}, built in a temporary worktree)` : `${b.dir} (${commit(b.commit, b.dirty)})`;
  return `A/B: trellis = this checkout (${commit(b.trellisCommit, b.trellisDirty)}); baseline = ${base}`;
}

/** "0.64" or, over several rounds, "0.64 (rounds 0.61, 0.66, 0.64)". */
function ratioText(rr: RoundRatios): string {
  return `${rr.median.toFixed(2)}${rr.rounds.length > 1 ? ` (rounds ${rr.rounds.map((v) => v.toFixed(2)).join(', ')})` : ''}`;
}

/** The goals and warnings derived from the results. */
export function evaluate(
  results: readonly TargetResult[],
  settings: Settings,
  tcp: readonly TcpResult[] = [],
  newConnections: readonly NewConnectionTargetResult[] = [],
): { goals: Goal[]; warnings: string[] } {
  const goals: Goal[] = [];
  const warnings: string[] = [];
  const trellis = byName(results, 'trellis');
  const nginx = byName(results, 'nginx');
  const direct = byName(results, 'direct');

  // Plaintext against plaintext: the pair with mTLS off, or (a run without it) the default pair.
  const plainName: TargetName = byName(results, 'trellis-plain') ? 'trellis-plain' : 'trellis';
  const plain = byName(results, plainName);
  const throughput = roundRatios(plain, nginx);
  goals.push({
    name: `${plainName}/nginx max throughput`,
    limit: `≥ ${THROUGHPUT_RATIO_GOAL.toFixed(2)}`,
    measured: throughput ? ratioText(throughput) : notMeasured([plainName, plain], ['nginx', nginx]),
    met: throughput ? throughput.median >= THROUGHPUT_RATIO_GOAL : undefined,
  });
  const nginxTls = byName(results, 'nginx-tls');
  if (nginxTls) {
    const mtls = roundRatios(trellis, nginxTls);
    goals.push({
      name: 'trellis (mTLS)/nginx-tls max throughput',
      limit: `≥ ${MTLS_THROUGHPUT_RATIO_GOAL.toFixed(2)}`,
      measured: mtls ? ratioText(mtls) : notMeasured(['trellis', trellis], ['nginx-tls', nginxTls]),
      met: mtls ? mtls.median >= MTLS_THROUGHPUT_RATIO_GOAL : undefined,
    });
  }

  const dp99 = direct?.fixedRate?.latencyUs.p99;
  const addedOf = (r: TargetResult | undefined): number | undefined => {
    const p99 = r?.fixedRate?.latencyUs.p99;
    return p99 !== undefined && dp99 !== undefined ? (p99 - dp99) / 1000 : undefined;
  };
  // Judged by the paired rounds when the run has them (direct's own p99 drifts by
  // milliseconds on a shared machine, and the single run compares two moments); else by
  // the single run.
  const addedGoal = (name: string, r: TargetResult | undefined, label: TargetName, limit: number): Goal => {
    const paired = pairedAddedP99(r, direct);
    const single = addedOf(r);
    if (paired !== undefined) {
      const also = single !== undefined ? `; the single ${settings.fixedRate.durationS}s run: ${single.toFixed(2)} ms` : '';
      return { name, limit: `≤ ${limit} ms`, measured: `${pairedText(paired)}${also}`, met: paired.median <= limit };
    }
    return {
      name,
      limit: `≤ ${limit} ms`,
      measured: single !== undefined ? `${single.toFixed(2)} ms` : notMeasured([label, r], ['direct', direct]),
      met: single !== undefined ? single <= limit : undefined,
    };
  };
  goals.push(addedGoal(`added p99 at ${settings.fixedRate.rate} rps (${plainName})`, plain, plainName, ADDED_P99_GOAL_MS));
  if (plainName === 'trellis-plain') {
    goals.push(addedGoal(`added p99 at ${settings.fixedRate.rate} rps (trellis, mTLS)`, trellis, 'trellis', MTLS_ADDED_P99_GOAL_MS));
  }

  const rss = (trellis?.resources ?? []).map((p) => p.rssMb).filter((v): v is number => v !== undefined);
  const worst = rss.length > 0 ? Math.max(...rss) : undefined;
  goals.push({
    name: 'trellis sidecar RSS',
    limit: `≤ ${SIDECAR_RSS_GOAL_MB} MB`,
    measured: worst !== undefined ? `${worst.toFixed(1)} MB (larger of the pair)` : notMeasured(['trellis', trellis]),
    met: worst !== undefined ? worst <= SIDECAR_RSS_GOAL_MB : undefined,
  });

  for (const r of results) {
    const vsDirect = r.name === 'direct' ? undefined : roundRatios(r, direct);
    if (vsDirect && vsDirect.median >= 0.9) {
      warnings.push(`${r.name} reached ${(100 * vsDirect.median).toFixed(0)}% of direct: the upstream may be the bottleneck, not the proxy`);
    }
  }
  for (const r of results) {
    const m = r.maxRate;
    if (m) {
      const se = m.socketErrors.connect + m.socketErrors.read + m.socketErrors.write + m.socketErrors.timeout;
      if (m.non2xx > 0 || se > 0) warnings.push(`${r.name} max-rate: ${m.non2xx} non-2xx/3xx answers, ${se} socket errors`);
    }
    if (r.fixedRate) warnings.push(...fixedRateWarnings(`${r.name} fixed-rate`, r.fixedRate));
    for (const id of LATENCY_SCENARIOS) {
      const f = r.latency?.[id];
      if (f) warnings.push(...fixedRateWarnings(`${r.name} fixed-rate ${scenarioTitle(id)}`, f));
    }
    const cpus: [string, CpuUsage | undefined][] = [
      ['max-rate', r.maxRateCpu],
      ['fixed-rate', r.fixedRateCpu],
      ...LATENCY_SCENARIOS.map((id): [string, CpuUsage | undefined] => [`fixed-rate ${scenarioTitle(id)}`, r.latencyCpu?.[id]]),
    ];
    for (const [what, cpu] of cpus) {
      if (cpu && cpu.foreignCores > NOISE_CORES) {
        warnings.push(
          `${r.name} ${what}: other processes used ${cpu.foreignCores.toFixed(2)} cores meanwhile: these numbers are low/noisy; re-run on a quiet machine`,
        );
      }
    }
    if (r.maxRateError) warnings.push(`${r.name} max-rate failed: ${r.maxRateError}`);
    if (r.fixedRateError) warnings.push(`${r.name} fixed-rate failed: ${r.fixedRateError}`);
    for (const id of LATENCY_SCENARIOS) {
      const e = r.latencyErrors?.[id];
      if (e) warnings.push(`${r.name} fixed-rate ${scenarioTitle(id)} failed: ${e}`);
    }
  }
  for (const t of tcp) {
    if (t.echo && (t.echo.errors > 0 || t.echo.mismatches > 0)) {
      warnings.push(
        `${t.name} tcp echo: ${t.echo.errors} connections failed or closed early, ${t.echo.mismatches} reads with bytes that were not the ones sent`,
      );
    }
    if (t.cpu && t.cpu.foreignCores > NOISE_CORES) {
      warnings.push(
        `${t.name} tcp echo: other processes used ${t.cpu.foreignCores.toFixed(2)} cores meanwhile: these numbers are low/noisy; re-run on a quiet machine`,
      );
    }
    if (t.error) warnings.push(`${t.name} tcp echo failed: ${t.error}`);
  }
  for (const t of newConnections) {
    if (t.result && t.result.errors > 0) warnings.push(`${t.name} new connections: ${t.result.errors} failed, timed out or echoed other bytes`);
    if (t.cpu && t.cpu.foreignCores > NOISE_CORES) {
      warnings.push(
        `${t.name} new connections: other processes used ${t.cpu.foreignCores.toFixed(2)} cores meanwhile: these numbers are low/noisy; re-run on a quiet machine`,
      );
    }
    if (t.error) warnings.push(`${t.name} new connections failed: ${t.error}`);
  }
  return { goals, warnings };
}

function fixedRateWarnings(what: string, f: FixedRateResult): string[] {
  const warnings: string[] = [];
  const bad = f.non2xx + f.errors + f.timeouts;
  if (bad > 0) warnings.push(`${what}: ${f.non2xx} non-2xx/3xx, ${f.errors} socket errors, ${f.timeouts} timeouts of ${f.scheduled}`);
  if (f.achievedRps < 0.97 * f.rate) warnings.push(`${what}: completed only ${f.achievedRps.toFixed(0)} of ${f.rate} rps`);
  if (f.queueWaitUs.max > 10_000) {
    warnings.push(
      `${what}: the target stalled: all ${f.connections} connections were waiting on answers, so up to ` +
        `${f.peakQueued} requests queued for up to ${ms(f.queueWaitUs.max)} (queue-wait p99 ${ms(f.queueWaitUs.p99)}); latencies include that`,
    );
  }
  if (f.schedulerLagUs.p99 > 2000) {
    warnings.push(
      `${what}: the client's own timers ran late (scheduler-lag p99 ${ms(f.schedulerLagUs.p99)}): the load machine is saturated, latencies include that`,
    );
  }
  return warnings;
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
    return cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  };
  return [line(header), ...rows.map(line)].join('\n');
}

/** Latency at the fixed rate for one extra scenario, with the p99 as a ratio to nginx's. */
function latencyTable(report: BenchReport, id: LatencyScenario): string {
  const s = report.settings;
  const x = s.extra!;
  const label = [`fixed ${int(x.rate)} rps ${scenarioTitle(id)}`, `(${x.connections} conns, ${x.durationS}s)`];
  const rows = fixedRateRows(
    report.results.filter((r) => runsExtraScenarios(r.name)),
    label,
    (r) => ({ f: r.latency?.[id], error: r.latencyErrors?.[id], cpu: r.latencyCpu?.[id] }),
    true,
  );
  return table(['scenario', 'target', 'rps', 'p50', 'p99', 'p99.9', 'max', 'added p99', 'p99 vs nginx', 'errors', 'others'], rows);
}

/**
 * The rows of one fixed-rate latency scenario, a target each: percentiles, the p99
 * added over the direct connection, optionally the p99's ratio to nginx's, errors and
 * the CPU of other processes meanwhile. `pick` says where a target keeps the scenario.
 */
function fixedRateRows(
  results: readonly TargetResult[],
  label: readonly string[],
  pick: (r: TargetResult) => { readonly f: FixedRateResult | undefined; readonly error: string | undefined; readonly cpu: CpuUsage | undefined },
  vsNginx: boolean,
): string[][] {
  const directP99 = pickOf(results, 'direct', pick)?.latencyUs.p99;
  const nginxP99 = pickOf(results, 'nginx', pick)?.latencyUs.p99;
  const rows: string[][] = [];
  for (const [i, r] of results.entries()) {
    const scen = label[i] ?? '';
    if (r.unavailable) {
      rows.push([scen, r.name, `unavailable: ${r.unavailable}`]);
      continue;
    }
    const { f, error, cpu } = pick(r);
    if (!f) {
      rows.push([scen, r.name, `failed: ${error ?? 'no result'}`]);
      continue;
    }
    const l = f.latencyUs;
    rows.push([
      scen,
      r.name,
      int(f.achievedRps),
      ms(l.p50),
      ms(l.p99),
      ms(l.p999),
      ms(l.max),
      r.name === 'direct' ? '-' : addedP99(l.p99, directP99),
      ...(vsNginx ? [nginxP99 ? `${(l.p99 / nginxP99).toFixed(2)}x` : '-'] : []),
      String(f.non2xx + f.errors + f.timeouts),
      others(cpu),
    ]);
  }
  return rows;
}

function pickOf(
  results: readonly TargetResult[],
  name: TargetName,
  pick: (r: TargetResult) => { readonly f: FixedRateResult | undefined },
): FixedRateResult | undefined {
  const r = byName(results, name);
  return r === undefined ? undefined : pick(r).f;
}

/** TCP echo throughput per target, with the ratio to nginx's stream pair. */
function tcpTable(report: BenchReport): string {
  const t = report.settings.tcp!;
  const tcp = report.tcp ?? [];
  const nginx = tcp.find((r) => r.name === 'nginx')?.echo?.mbPerS;
  const rows: string[][] = [];
  const label = ['tcp echo through a pair', `(${t.connections} conns, ${t.chunkBytes / 1024}KB writes, ${t.durationS}s)`];
  for (const [i, r] of tcp.entries()) {
    const scen = label[i] ?? '';
    if (r.unavailable) {
      rows.push([scen, r.name, `unavailable: ${r.unavailable}`]);
      continue;
    }
    if (!r.echo) {
      rows.push([scen, r.name, `failed: ${r.error ?? 'no result'}`]);
      continue;
    }
    rows.push([
      scen,
      r.name,
      mbps(r.echo.mbPerS),
      nginx ? `${(r.echo.mbPerS / nginx).toFixed(2)}x` : '-',
      String(r.echo.errors + r.echo.mismatches),
      others(r.cpu),
    ]);
  }
  return table(['scenario', 'target', 'MB/s', 'vs nginx', 'errors', 'others'], rows);
}

/** The new-connection rate per target, with the ratio to the TLS nginx pair's. */
function newConnectionsTable(report: BenchReport): string {
  const n = report.settings.newConnections!;
  const all = report.newConnections ?? [];
  const ref = all.find((r) => r.name === 'nginx-tls')?.result?.perSecond;
  const label = ['new connections through a TCP pair', `(connect, 32 B echoed, close; ${n.concurrency} at once, ${n.durationS}s)`];
  const rows: string[][] = [];
  for (const [i, r] of all.entries()) {
    const scen = label[i] ?? '';
    if (r.unavailable) {
      rows.push([scen, r.name, `unavailable: ${r.unavailable}`]);
      continue;
    }
    if (!r.result) {
      rows.push([scen, r.name, `failed: ${r.error ?? 'no result'}`]);
      continue;
    }
    const x = r.result;
    rows.push([
      scen,
      r.name,
      int(x.perSecond),
      ms(x.latencyUs.p50),
      ms(x.latencyUs.p99),
      ref ? `${(x.perSecond / ref).toFixed(2)}x` : '-',
      String(x.errors),
      others(r.cpu),
    ]);
  }
  return table(['scenario', 'target', 'conns/s', 'p50', 'p99', 'vs nginx-tls', 'errors', 'others'], rows);
}

/** The TLS pairs against each other, and plaintext against plaintext: max throughput ratios. */
function pairRatioLines(results: readonly TargetResult[]): string[] {
  const pairs: [TargetName, TargetName][] = [
    ['trellis', 'nginx-tls'],
    ['trellis', 'haproxy-tls'],
    ['trellis-plain', 'nginx'],
    ['trellis-plain', 'haproxy'],
    ['trellis', 'trellis-plain'],
    ['nginx-tls', 'nginx'],
    ['haproxy-tls', 'haproxy'],
  ];
  const out: string[] = [];
  for (const [a, b] of pairs) {
    const ra = byName(results, a);
    const rb = byName(results, b);
    if (!ra || !rb) continue;
    const rr = roundRatios(ra, rb);
    out.push(`  ${`${a}/${b}`.padEnd(26)} ${rr ? ratioText(rr) : notMeasured([a, ra], [b, rb])}`);
  }
  return out.length > 0 ? ['max throughput, pair against pair (TLS against TLS, plaintext against plaintext; median of per-round ratios):', ...out] : [];
}

/** Memory and CPU per proxy process, with ratios to nginx's process in the same role. */
function resourcesTable(report: BenchReport): string {
  const { settings: s, results } = report;
  const nginx = byName(results, 'nginx')?.resources ?? [];
  const rows: string[][] = [];
  const label = ['proxy cost', '(RSS, PSS after max-rate,', 'CPU s per 1,000 req)'];
  let i = 0;
  for (const r of results) {
    if (r.name === 'direct') continue;
    if (!r.resources) {
      rows.push([label[i++] ?? '', r.name, r.unavailable ? `unavailable: ${r.unavailable}` : 'not measured']);
      continue;
    }
    for (const p of r.resources) {
      const ref = nginx.find((n) => n.role === p.role);
      const ratio = (a: number | undefined, b: number | undefined): string => (a !== undefined && b ? `${(a / b).toFixed(2)}x` : '-');
      rows.push([
        label[i++] ?? '',
        `${r.name} ${p.role}${p.processes > 1 ? ` (${p.processes} procs)` : ''}`,
        p.rssMb !== undefined ? p.rssMb.toFixed(1) : '-',
        p.pssMb !== undefined ? p.pssMb.toFixed(1) : '-',
        cpuS(p.cpuSecondsPer1kMaxRate),
        cpuS(p.cpuSecondsPer1kFixedRate),
        r.name === 'nginx' ? '-' : ratio(p.rssMb, ref?.rssMb),
        r.name === 'nginx' ? '-' : ratio(p.cpuSecondsPer1kMaxRate, ref?.cpuSecondsPer1kMaxRate),
      ]);
    }
  }
  return table(['scenario', 'process', 'RSS MB', 'PSS MB', 'CPU max-rate', `CPU ${int(s.fixedRate.rate)} rps`, 'RSS vs nginx', 'CPU vs nginx'], rows);
}

function cpuS(v: number | undefined): string {
  return v === undefined ? '-' : `${v.toFixed(v < 0.1 ? 3 : 2)} s`;
}

function mbps(v: number): string {
  return v >= 100 ? int(v) : v.toFixed(1);
}

/** Max throughput per target: the median round's numbers, and the ratios to nginx per round and their median. */
function maxRateTable(s: Settings, results: readonly TargetResult[]): string {
  const nginx = byName(results, 'nginx');
  const rounds = s.wrk.rounds ?? 1;
  const label = [
    `max-rate ${s.bodyBytes / 1024}KB GET`,
    `(wrk -t${s.wrk.threads} -c${s.wrk.connections} -d${s.wrk.durationS}s,`,
    `${rounds} round${rounds === 1 ? '' : 's'})`,
  ];
  const rows: string[][] = [];
  for (const [i, r] of results.entries()) {
    const scen = label[i] ?? '';
    if (r.unavailable) {
      rows.push([scen, r.name, `unavailable: ${r.unavailable}`]);
      continue;
    }
    if (!r.maxRate) {
      rows.push([scen, r.name, `failed: ${r.maxRateError ?? 'no result'}`]);
      continue;
    }
    const m = r.maxRate;
    const errs = m.non2xx + m.socketErrors.connect + m.socketErrors.read + m.socketErrors.write + m.socketErrors.timeout;
    const vsNginx = roundRatios(r, nginx);
    rows.push([
      scen,
      r.name,
      int(m.rps),
      ms(m.latencyUs.p50),
      ms(m.latencyUs.p99),
      vsNginx ? `${vsNginx.median.toFixed(2)}x` : '-',
      String(errs),
      others(r.maxRateCpu),
      vsNginx ? vsNginx.rounds.map((v) => v.toFixed(2)).join(' ') : '-',
      (r.maxRateRounds ?? [m.rps]).map(int).join(' '),
    ]);
  }
  return table(['scenario', 'target', 'rps', 'p50', 'p99', 'vs nginx', 'errors', 'others', 'vs nginx per round', 'rps per round'], rows);
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
  if (s.extra || s.tcp) {
    const parts: string[] = [];
    if (s.extra) parts.push(`${s.extra.scenarios.map(scenarioTitle).join(', ')} at ${int(s.extra.rate)} rps`);
    if (s.tcp) parts.push('TCP echo');
    const same = s.extra && s.tcp && s.extra.durationS === s.tcp.durationS && s.extra.warmupS === s.tcp.warmupS;
    const dur = (d: { durationS: number; warmupS: number }): string => `${d.warmupS} s warm-up + ${d.durationS} s measured`;
    out.push(
      `Shorter runs for the extra scenarios (${parts.join('; ')}): ` +
        (same || !s.tcp ? `${dur(s.extra ?? s.tcp!)} each.` : !s.extra ? `${dur(s.tcp)}.` : `${dur(s.extra)} each; TCP echo ${dur(s.tcp)}.`),
    );
  }
  if (report.baseline) out.push(baselineHeader(report.baseline));
  if (env.backgroundCores !== undefined) out.push(`background load before the run: ${env.backgroundCores.toFixed(2)} cores`);
  out.push('');

  out.push(maxRateTable(s, results));
  out.push(
    '(rps, p50, p99: the round with the median rps; vs nginx: the median of the per-round ratios, each against',
    "nginx's run in the same round, a few seconds apart, so the machine's drift between rounds cancels out)",
    '',
  );

  const flabel = [
    `fixed ${int(s.fixedRate.rate)} rps ${s.bodyBytes / 1024}KB GET`,
    `(open model, ${s.fixedRate.connections} conns, ${s.fixedRate.durationS}s)`,
  ];
  const fixedRows = fixedRateRows(results, flabel, (r) => ({ f: r.fixedRate, error: r.fixedRateError, cpu: r.fixedRateCpu }), false);
  out.push(table(['scenario', 'target', 'rps', 'p50', 'p99', 'p99.9', 'max', 'added p99', 'errors', 'others'], fixedRows));
  const lag = byName(results, 'direct')?.fixedRate?.schedulerLagUs;
  if (lag) {
    out.push(
      `(fixed-rate latency is from each request's intended send time; the client's own scheduler lag on direct: p50 ${ms(lag.p50)}, p99 ${ms(lag.p99)})`,
    );
  }
  const pr = s.p99Rounds;
  const directResult = byName(results, 'direct');
  const paired = results.flatMap((r) => {
    const p = r.name === 'direct' ? undefined : pairedAddedP99(r, directResult);
    return p ? [`${r.name} ${p.median >= 0 ? '+' : ''}${p.median.toFixed(2)} ms (${p.rounds.map((v) => v.toFixed(2)).join(', ')})`] : [];
  });
  if (pr && paired.length > 0) {
    out.push(
      `(added p99 in ${pr.rounds} paired rounds of ${pr.durationS}s, each target within seconds of direct's run of the same round, median: ${paired.join('; ')})`,
    );
  }
  const handshakes = results.filter((r) => r.fixedRateHandshakes !== undefined).map((r) => `${r.name} ${r.fixedRateHandshakes}`);
  if (handshakes.length > 0) out.push(`(new mTLS connections the outbound proxy opened during the fixed-rate run, warm-up included: ${handshakes.join(', ')})`);
  out.push(`("others" = cores of CPU used by processes that are not the bench's during the measurement; > ${NOISE_CORES} means a noisy run)`);
  out.push('');
  const ratios = pairRatioLines(results);
  if (ratios.length > 0) out.push(...ratios, '');
  if (report.baseline) {
    out.push(baselineLine(results));
    if (byName(results, 'trellis-plain')) out.push(baselineLine(results, 'trellis-plain'));
    out.push('');
  }

  if (s.extra) {
    for (const id of s.extra.scenarios) out.push(latencyTable(report, id), '');
  }
  if (report.tcp && s.tcp) out.push(tcpTable(report), '');
  if (report.newConnections && s.newConnections) out.push(newConnectionsTable(report), '');
  if (results.some((r) => r.resources)) out.push(resourcesTable(report), '');
  if (report.routeRules) out.push(formatRouteRules(report.routeRules));

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
