// The steps of a canary, as Flagger runs them: each step sets the weights (the new
// version at the step's percent, the stable version the rest), waits an interval while
// the callers' sidecars count the new version's requests, and judges that interval
// (judge.ts). A breach sets the new version back to 0%; after the last step the new
// version takes 100%.
//
// Too little traffic in an interval proves nothing, so it never passes: the step waits
// up to `maxWaits` more intervals (the window grows, so a trickle adds up), then the
// canary fails and rolls back. An abort puts the weights back where they were at the
// start.
//
// The runner decides; it does no I/O of its own. Setting weights, reading the proxies,
// sleeping and the clock come in through CanaryIo, and what happens goes out as events,
// so `trellis canary` (cli/canary.ts) prints them and tests drive it with a fake clock.
import { TrellisError } from '../errors.js';
import type { Weights } from '../api/admin.js';
import { judge, type CanaryLimits, type Verdict, type VersionReading, type WindowStats, windowStats } from './judge.js';

/** What a canary is asked to do. */
export interface CanaryPlan {
  readonly service: string;
  /** The new version. */
  readonly to: string;
  /** The version that keeps the rest of the traffic. */
  readonly stable: string;
  /** Every version of the service, in mesh order (the others get 0 at every step). */
  readonly versions: readonly string[];
  /** Percent of the requests for `to` at each step, rising. */
  readonly steps: readonly number[];
  readonly intervalMs: number;
  readonly limits: CanaryLimits;
  /** More intervals a step waits for `limits.minRequests`. */
  readonly maxWaits: number;
  /** The weights when the canary started: put back on an abort. */
  readonly start: Weights;
}

/** The world the runner acts on. */
export interface CanaryIo {
  /** Sets the weights and resolves once the callers have them, with a line saying who acknowledged. */
  setWeights(w: Weights): Promise<string>;
  /** Reads the version's series from every proxy now. */
  read(): Promise<VersionReading>;
  /** Waits `ms`; rejects when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  /** Monotonic ms. */
  now(): number;
  /** Aborting it stops the canary and puts the start weights back. */
  readonly signal: AbortSignal;
  /** Told of each thing that happens, in order. */
  report(e: CanaryEvent): void;
}

/** What happened, for the caller to show. `index` counts steps from 0. */
export type CanaryEvent =
  | { readonly type: 'step'; readonly index: number; readonly percent: number; readonly ack: string }
  | {
      readonly type: 'judged';
      readonly index: number;
      readonly percent: number;
      readonly stats: WindowStats;
      readonly seconds: number;
      readonly verdict: Verdict;
      /** For too little traffic: the wait this is (1-based) when the step waits another interval, else undefined. */
      readonly waiting: number | undefined;
    }
  | { readonly type: 'rolled-back'; readonly ack: string }
  | { readonly type: 'promoting'; readonly ack: string }
  | { readonly type: 'promoted'; readonly weights: Weights }
  | { readonly type: 'interrupted'; readonly ack: string };

/** How a canary ended. */
export type CanaryOutcome =
  | { readonly kind: 'promoted' }
  | { readonly kind: 'interrupted' }
  | {
      readonly kind: 'rolled-back';
      /** The step's percent when it was judged a failure. */
      readonly step: number;
      readonly reason: string;
      /** The weights set for the rollback (`to` at 0%). */
      readonly weights: Weights;
      /** Why setting them failed, when it did: the weights in force are then unknown. */
      readonly restoreError?: string;
    };

/** The stable version: the other version with the most weight now (mesh order breaks ties). */
export function pickStable(
  view: { readonly versions: readonly string[]; readonly weights: Weights | null; readonly byInstances: Weights },
  to: string,
): string | undefined {
  const weights = view.weights ?? view.byInstances;
  let best: string | undefined;
  for (const v of view.versions) {
    if (v === to) continue;
    if (best === undefined || (weights[v] ?? 0) > (weights[best] ?? 0)) best = v;
  }
  return best;
}

/** VERSION at `percent`, the stable version the rest, every other version 0. */
export function stepWeights(versions: readonly string[], to: string, stable: string, pct: number): Weights {
  return Object.fromEntries(versions.map((v) => [v, v === to ? pct : v === stable ? 100 - pct : 0]));
}

/** An abort while waiting: control flow, not a failure to report. */
class Interrupted extends Error {}

/**
 * Runs the canary to its end. Resolves with the outcome; rejects only when the start
 * weights could not be put back after an abort, or on a TRELLIS_E_USAGE error (the
 * service or version went away: the caller's mistake, nothing to roll back).
 */
export async function runCanary(plan: CanaryPlan, io: CanaryIo): Promise<CanaryOutcome> {
  const { to, stable, versions, steps, intervalMs, limits, maxWaits } = plan;
  const { signal } = io;
  const wait = async (ms: number): Promise<void> => {
    try {
      await io.sleep(ms, signal);
    } catch {
      throw new Interrupted();
    }
  };
  const rollBack = async (step: number, reason: string): Promise<CanaryOutcome> => {
    const back = stepWeights(versions, to, stable, 0);
    let ack: string;
    try {
      ack = await io.setWeights(back);
    } catch (err) {
      return { kind: 'rolled-back', step, reason, weights: back, restoreError: (err as Error).message };
    }
    io.report({ type: 'rolled-back', ack });
    return { kind: 'rolled-back', step, reason, weights: back };
  };

  let current = steps[0]!;
  try {
    for (const [index, step] of steps.entries()) {
      current = step;
      io.report({ type: 'step', index, percent: step, ack: await io.setWeights(stepWeights(versions, to, stable, step)) });
      if (signal.aborted) throw new Interrupted();
      const before = await io.read();
      const t0 = io.now();
      for (let waits = 0; ; waits++) {
        await wait(intervalMs);
        const stats = windowStats(before, await io.read());
        const seconds = (io.now() - t0) / 1000;
        const verdict = judge(stats, limits);
        const waiting = verdict.kind === 'too-little-traffic' && waits < maxWaits ? waits + 1 : undefined;
        io.report({ type: 'judged', index, percent: step, stats, seconds, verdict, waiting });
        if (verdict.kind === 'pass') break;
        if (verdict.kind === 'breach') return await rollBack(step, verdict.reason);
        if (waiting !== undefined) continue;
        return await rollBack(
          step,
          `too little traffic to judge: ${stats.requests} requests to ${to} in ${seconds.toFixed(1)} s, fewer than --min-requests ${limits.minRequests}`,
        );
      }
    }
    const all = stepWeights(versions, to, stable, 100);
    if (steps[steps.length - 1] !== 100) io.report({ type: 'promoting', ack: await io.setWeights(all) });
    io.report({ type: 'promoted', weights: all });
    return { kind: 'promoted' };
  } catch (err) {
    if (err instanceof Interrupted || signal.aborted) {
      io.report({ type: 'interrupted', ack: await io.setWeights(plan.start) });
      return { kind: 'interrupted' };
    }
    if (err instanceof TrellisError && err.code === 'TRELLIS_E_USAGE') throw err;
    // The canary can't be watched any more (the metrics or the control plane are gone): not a pass.
    return rollBack(current, `the canary could not go on: ${(err as Error).message}`);
  }
}
