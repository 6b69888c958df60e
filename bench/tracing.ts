// The tracing-cost scenario (issue 14): what head sampling costs a Trellis pair's max
// throughput. Three pairs, identical but for the Mesh's
// `spec.telemetry.tracing.samplingPercentage`: 0 (tracing on, nothing sampled: the
// unsampled path, a traceparent added per request), 1 (the default) and 100 (every
// request a client span and a server span, exported). The spans go to a real OTLP/HTTP
// receiver, the pair's own control plane (the default endpoint), which decodes and keeps
// them as it does for `trellis trace`. Interleaved rounds: each round runs wrk against
// the three pairs in turn (their order rotating), and each rate's cost is the median of
// its per-round ratios to the 0% pair (the machine's drift between rounds cancels).
// Targets: 1% costs ≤ 5% (ratio ≥ 0.95), 100% ≤ 20% (ratio ≥ 0.8).
import type { Processes, Target } from './targets.js';
import { startTrellisPair } from './targets.js';
import { runWrk, type WrkResult } from './wrk.js';
import { cpuSecondsPer1k, sampleGroups, type GroupSample } from './resources.js';

export const SAMPLING_PERCENTAGES = [0, 1, 100] as const;
type Percentage = (typeof SAMPLING_PERCENTAGES)[number];

export interface TracingRun {
  readonly percentage: Percentage;
  readonly round: number;
  readonly rps: number;
  readonly p99Us: number;
  readonly errors: number;
  readonly requests: number;
  /** CPU clock ticks of each process during the run. */
  readonly ticks: { readonly outbound: number; readonly inbound: number; readonly control: number };
}

export interface TracingResult {
  readonly rounds: number;
  /** Median rps per sampling percentage. */
  readonly rps: Readonly<Record<string, number>>;
  /** Per sampling percentage (1, 100): the per-round ratios to 0% and their median. */
  readonly vsUnsampled: Readonly<Record<string, { readonly rounds: readonly number[]; readonly median: number }>>;
  /**
   * CPU milliseconds per request of each process, over all rounds of a rate: where the
   * cost of tracing goes (the proxies making spans, the control plane receiving them).
   */
  readonly cpuMsPerRequest: Readonly<Record<string, { readonly outbound: number; readonly inbound: number; readonly control: number }>>;
  /**
   * The same per round, and the median round of each process: a round that another load
   * on the machine slowed (its CPU per request inflated) moves the sum above but not this.
   */
  readonly cpuMsPerRequestMedianRound: Readonly<Record<string, { readonly outbound: number; readonly inbound: number; readonly control: number }>>;
  /** Every wrk run. */
  readonly runs: readonly TracingRun[];
}

export interface TracingOptions {
  readonly procs: Processes;
  readonly repoRoot: string;
  readonly dir: string;
  readonly upstreamPort: number;
  readonly wrk: string;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly rounds: number;
  readonly log: (msg: string) => void;
}

/** The Mesh `spec:` lines of one sampling rate. */
function meshSpec(percentage: number): string {
  return `  telemetry:\n    tracing:\n      samplingPercentage: ${percentage}\n`;
}

/** The median of `xs` (of an even count, the lower middle one, as the rest of the bench). */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor((s.length - 1) / 2)]!;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

export async function runTracing(o: TracingOptions): Promise<TracingResult> {
  const pairs = new Map<Percentage, Target>();
  try {
    for (const p of SAMPLING_PERCENTAGES) {
      pairs.set(p, await startTrellisPair(o.procs, o.repoRoot, o.dir, o.upstreamPort, 'http', { name: `sampling-${p}`, yaml: '', meshSpec: meshSpec(p) }));
    }
    const run = (t: Target, durationS: number): Promise<WrkResult> =>
      runWrk({ wrk: o.wrk, url: t.url, threads: 1, connections: o.connections, durationS, timeoutS: 5 });
    if (o.warmupS > 0) for (const t of pairs.values()) await run(t, o.warmupS);
    const runs: TracingRun[] = [];
    for (let round = 0; round < o.rounds; round++) {
      // Rotate the order so no rate always runs first (or right after another).
      const order = SAMPLING_PERCENTAGES.map((_, i) => SAMPLING_PERCENTAGES[(i + round) % SAMPLING_PERCENTAGES.length]!);
      for (const p of order) {
        o.log(`tracing: ${p}% sampling, round ${round + 1}/${o.rounds}, ${o.durationS}s`);
        const t = pairs.get(p)!;
        const groups = {
          outbound: t.processes?.[0]?.managed.child.pid ?? 0,
          inbound: t.processes?.[1]?.managed.child.pid ?? 0,
          control: t.control?.child.pid ?? 0,
        };
        const before = sampleGroups(Object.values(groups));
        const r = await run(t, o.durationS);
        const after = sampleGroups(Object.values(groups));
        const ticks = (g: number): number => ticksBetween(before?.get(g), after?.get(g));
        const errors = r.non2xx + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
        runs.push({
          percentage: p,
          round,
          rps: r.rps,
          p99Us: r.latencyUs.p99,
          errors,
          requests: r.requests,
          ticks: { outbound: ticks(groups.outbound), inbound: ticks(groups.inbound), control: ticks(groups.control) },
        });
      }
    }
    const rpsOf = (p: Percentage, round: number): number => runs.find((r) => r.percentage === p && r.round === round)?.rps ?? 0;
    const rps: Record<string, number> = {};
    for (const p of SAMPLING_PERCENTAGES) rps[String(p)] = Math.round(median(runs.filter((r) => r.percentage === p).map((r) => r.rps)));
    const vsUnsampled: Record<string, { rounds: number[]; median: number }> = {};
    for (const p of SAMPLING_PERCENTAGES.filter((x) => x !== 0)) {
      const ratios: number[] = [];
      for (let round = 0; round < o.rounds; round++) {
        const base = rpsOf(0, round);
        if (base > 0) ratios.push(round3(rpsOf(p, round) / base));
      }
      vsUnsampled[String(p)] = { rounds: ratios, median: round3(median(ratios)) };
    }
    const cpuMsPerRequest: Record<string, { outbound: number; inbound: number; control: number }> = {};
    for (const p of SAMPLING_PERCENTAGES) {
      const mine = runs.filter((r) => r.percentage === p);
      const requests = mine.reduce((n, r) => n + r.requests, 0);
      // Clock ticks are 10 ms: per request in µs needs the whole rate's runs summed.
      const per = (k: 'outbound' | 'inbound' | 'control'): number =>
        round3(
          cpuSecondsPer1k(
            { processes: 1, rssKb: 0, pssKb: 0, cpuTicks: 0 },
            { processes: 1, rssKb: 0, pssKb: 0, cpuTicks: mine.reduce((n, r) => n + r.ticks[k], 0) },
            requests,
          ) ?? 0,
        );
      cpuMsPerRequest[String(p)] = { outbound: per('outbound'), inbound: per('inbound'), control: per('control') };
    }
    const cpuMsPerRequestMedianRound: Record<string, { outbound: number; inbound: number; control: number }> = {};
    for (const p of SAMPLING_PERCENTAGES) {
      const mine = runs.filter((r) => r.percentage === p && r.requests > 0);
      // A tick is 10 ms of CPU.
      const per = (k: 'outbound' | 'inbound' | 'control'): number => round3(median(mine.map((r) => (r.ticks[k] * 10) / r.requests)));
      cpuMsPerRequestMedianRound[String(p)] = { outbound: per('outbound'), inbound: per('inbound'), control: per('control') };
    }
    return { rounds: o.rounds, rps, vsUnsampled, cpuMsPerRequest, cpuMsPerRequestMedianRound, runs };
  } finally {
    for (const t of pairs.values()) await t.stop();
  }
}

function ticksBetween(a: GroupSample | undefined, b: GroupSample | undefined): number {
  return a === undefined || b === undefined ? 0 : Math.max(0, b.cpuTicks - a.cpuTicks);
}

/** The lines the bench prints for this scenario. */
export function formatTracing(r: TracingResult): string {
  const target: Record<string, number> = { '1': 0.95, '100': 0.8 };
  const lines = [
    `tracing cost: max throughput of a Trellis pair by sampling rate, spans exported over OTLP/HTTP to its control plane (${r.rounds} interleaved rounds)`,
  ];
  lines.push(`  rps (median round): ${SAMPLING_PERCENTAGES.map((p) => `${p}% ${r.rps[String(p)]}`).join(', ')}`);
  for (const [p, v] of Object.entries(r.vsUnsampled)) {
    const cost = (1 - v.median) * 100;
    lines.push(
      `  ${p}% / 0%: ${v.median.toFixed(3)} (cost ${cost.toFixed(1)}%, target ≥ ${target[p]!.toFixed(2)}; per round ${v.rounds.map((x) => x.toFixed(3)).join(', ')})`,
    );
  }
  lines.push(
    `  CPU ms per request (outbound / inbound / control plane): ${SAMPLING_PERCENTAGES.map((p) => {
      const c = r.cpuMsPerRequest[String(p)]!;
      return `${p}% ${c.outbound.toFixed(3)} / ${c.inbound.toFixed(3)} / ${c.control.toFixed(3)}`;
    }).join(', ')}`,
  );
  lines.push(
    `  the same, median round: ${SAMPLING_PERCENTAGES.map((p) => {
      const c = r.cpuMsPerRequestMedianRound[String(p)]!;
      return `${p}% ${c.outbound.toFixed(3)} / ${c.inbound.toFixed(3)} / ${c.control.toFixed(3)}`;
    }).join(', ')}`,
  );
  const errors = r.runs.filter((x) => x.errors > 0);
  if (errors.length > 0) lines.push(`  errors: ${errors.map((x) => `${x.percentage}% round ${x.round + 1}: ${x.errors}`).join(', ')}`);
  return `${lines.join('\n')}\n`;
}
