// A rate sweep: the search `trellis bench` runs to find the highest rate a target
// serves within its SLO (p99 at or below a bound, success rate at or above a floor).
//
// As Nighthawk's adaptive load controller does, it searches instead of stepping
// evenly: exponentially up from a start rate (×2 each step) until a step misses the
// SLO or the target cannot keep up with the asked rate, then by bisection between the
// last good and the first bad rate until they are within a relative precision. When
// the very first rate misses, it is run once more (the first step runs cold: JIT,
// connection pools, latency-aware balancers all still learning), and only when the
// repeat misses too does it halve downwards until one passes, then bisect.
//
// The search is pure (nextStep, judgeStep) and the measuring is a callback, so the
// logic is tested with a fake step runner and the CLI plugs in the real engine
// (run.ts, one constant-rate run per step).
import type { LatencySummary } from './histogram.js';
import type { LoadResult } from './result.js';

/** What a step must meet to pass. */
export interface Slo {
  /** Highest acceptable p99 latency, ms. */
  readonly p99Ms: number;
  /** Lowest acceptable share of requests answered 2xx, as a fraction (0.999 for 99.9%). */
  readonly minSuccess: number;
  /** Lowest acceptable achieved/asked rate ratio: below it the target (or the client) fell behind. */
  readonly minAchieved: number;
}

export interface SweepOptions {
  readonly startRate: number;
  /** No step asks for more. */
  readonly maxRate: number;
  /** Stop bisecting once first bad ≤ last good × (1 + precision). */
  readonly precision: number;
  /** Steps in all, exponential, descending and bisecting together. */
  readonly maxSteps: number;
  /** The lowest rate the descent (first rate failing) may try. */
  readonly minRate: number;
  readonly slo: Slo;
}

/** What a step runner reports: the parts of a load run the sweep judges and prints. */
export type StepMeasure = Pick<LoadResult, 'rate' | 'achievedRps' | 'scheduled' | 'completed' | 'errors' | 'latencyUs' | 'interrupted'>;

/** `repeat`: the first rate run again after it missed, cold. */
export type Phase = 'exponential' | 'repeat' | 'descent' | 'bisect';

export interface SweepStep {
  /** 1-based. */
  readonly step: number;
  readonly phase: Phase;
  /** Asked rate, req/s. */
  readonly rate: number;
  readonly measure: StepMeasure;
  /** Answered 2xx / scheduled, as a fraction. */
  readonly success: number;
  readonly ok: boolean;
  /** Why the step missed the SLO (empty when ok). */
  readonly reasons: readonly string[];
}

/** Why a sweep ended. */
export type StopReason =
  /** Last good and first bad are within the precision. */
  | 'precision'
  /** Every rate up to --max-rate met the SLO. */
  | 'max-rate'
  | 'max-steps'
  /** The descent reached the lowest rate without a step meeting the SLO. */
  | 'min-rate'
  | 'interrupted';

export interface SweepResult {
  readonly steps: readonly SweepStep[];
  /** Highest asked rate that met the SLO; undefined when none did. */
  readonly saturation: number | undefined;
  /** Lowest asked rate that missed it; undefined when none did. */
  readonly firstBad: number | undefined;
  readonly stoppedBy: StopReason;
}

/** Where the search stands: the best passing and the lowest failing rate so far. */
export interface SearchState {
  readonly good?: number;
  readonly bad?: number;
  readonly steps: number;
}

export type Next = { readonly rate: number; readonly phase: Phase } | { readonly done: StopReason };

/** Rates are whole numbers from 10 req/s up, tenths below. */
export function roundRate(r: number): number {
  return r >= 10 ? Math.round(r) : Math.round(r * 10) / 10;
}

/** The next rate to try, or why the search is over. Pure. */
export function nextStep(o: SweepOptions, s: SearchState): Next {
  if (s.steps >= o.maxSteps) return { done: 'max-steps' };
  const { good, bad } = s;
  if (bad === undefined) {
    if (good === undefined) return { rate: roundRate(Math.min(o.startRate, o.maxRate)), phase: 'exponential' };
    if (good >= o.maxRate) return { done: 'max-rate' };
    return { rate: roundRate(Math.min(good * 2, o.maxRate)), phase: 'exponential' };
  }
  if (good === undefined) {
    // Only the first step has run, and it missed: run it again, warm, before judging.
    if (s.steps === 1) return { rate: bad, phase: 'repeat' };
    const rate = roundRate(bad / 2);
    return rate < o.minRate ? { done: 'min-rate' } : { rate, phase: 'descent' };
  }
  if (bad <= good * (1 + o.precision)) return { done: 'precision' };
  const mid = roundRate((good + bad) / 2);
  return mid <= good || mid >= bad ? { done: 'precision' } : { rate: mid, phase: 'bisect' };
}

function pct(f: number): string {
  const p = f * 100;
  return `${p >= 99.95 && p < 100 ? p.toFixed(2) : p.toFixed(1)}%`;
}

/** Whether a step met the SLO, and if not, why. Pure. */
export function judgeStep(slo: Slo, m: StepMeasure): { ok: boolean; success: number; reasons: string[] } {
  const success = m.scheduled > 0 ? Math.max(0, 1 - m.errors.total / m.scheduled) : 0;
  const reasons: string[] = [];
  const lat: LatencySummary = m.latencyUs;
  if (lat.count === 0) reasons.push('no response');
  else if (lat.p99 > slo.p99Ms * 1000) reasons.push(`p99 ${(lat.p99 / 1000).toFixed(lat.p99 >= 100_000 ? 0 : 1)} ms > ${slo.p99Ms} ms`);
  if (success < slo.minSuccess) reasons.push(`success ${pct(success)} < ${pct(slo.minSuccess)}`);
  if (m.achievedRps < slo.minAchieved * m.rate) reasons.push(`achieved ${Math.round((m.achievedRps / m.rate) * 100)}% of asked`);
  return { ok: reasons.length === 0, success, reasons };
}

export interface SweepHooks {
  /** Called with each step as soon as it is judged. */
  readonly onStep?: (s: SweepStep) => void;
  /** Stops the sweep: the step under way is dropped, the result covers the steps before it. */
  readonly signal?: AbortSignal;
}

/** Runs the search, one `runStep(rate)` per step. Bounded by `maxSteps` steps. */
export async function runSweep(o: SweepOptions, runStep: (rate: number) => Promise<StepMeasure>, hooks: SweepHooks = {}): Promise<SweepResult> {
  const steps: SweepStep[] = [];
  let good: number | undefined;
  let bad: number | undefined;
  let stoppedBy: StopReason;
  for (;;) {
    if (hooks.signal?.aborted) {
      stoppedBy = 'interrupted';
      break;
    }
    const next = nextStep(o, { good, bad, steps: steps.length });
    if ('done' in next) {
      stoppedBy = next.done;
      break;
    }
    const measure = await runStep(next.rate);
    if (measure.interrupted || hooks.signal?.aborted) {
      stoppedBy = 'interrupted';
      break;
    }
    const verdict = judgeStep(o.slo, measure);
    const step: SweepStep = { step: steps.length + 1, phase: next.phase, rate: next.rate, measure, ...verdict };
    steps.push(step);
    hooks.onStep?.(step);
    // A repeat's verdict replaces the cold first one. Every other proposed rate lies
    // between good and bad, so these only ever narrow the bracket.
    if (verdict.ok) {
      good = next.rate;
      if (next.phase === 'repeat') bad = undefined;
    } else bad = next.rate;
  }
  return { steps, saturation: good, firstBad: bad, stoppedBy };
}
