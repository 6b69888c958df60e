// Fuzz settings shared by the property-based suites. `npm test` runs a short run with
// a fixed seed (the same inputs every time, so CI never flakes on a new input);
// `npm run fuzz` runs long ones with a fresh seed each time. Either way a failure
// prints the seed and the shrink path, and FUZZ_SEED / FUZZ_PATH replay exactly that
// input.
//
//   FUZZ_RUNS=1000000   inputs per parser property (the long run's default)
//   FUZZ_LIVE_RUNS=N    inputs per live-listener property
//   FUZZ_LIVE_MS=N      time bound per live-listener property
//   FUZZ_SEED=N         seed to replay;  FUZZ_PATH=a:b:c  the shrink path to replay
//   FUZZ_TRACE=1        print each live-listener input and what came back, to stderr
import type fc from 'fast-check';

/** Set by `npm run fuzz`. */
export const LONG = process.env.FUZZ_LONG === '1';

/** The seed of this process's runs: fixed for `npm test`, fresh for a long run, or FUZZ_SEED. */
export const SEED =
  process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== ''
    ? Number(process.env.FUZZ_SEED)
    : LONG
      ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0
      : 0x7e11;

function intEnv(name: string): number | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : Number(v);
}

/**
 * fast-check parameters for a property run `short` times in `npm test` and `long`
 * times in `npm run fuzz` (FUZZ_RUNS overrides both).
 */
export function parserRuns<T>(short: number, long = 1_000_000): fc.Parameters<T> {
  return withReplay({ numRuns: intEnv('FUZZ_RUNS') ?? (LONG ? long : short), seed: SEED });
}

/**
 * Parameters for a property that drives a live listener: a count and a time bound
 * (the run stops cleanly, as passed, when the time is up; a failure is still a failure).
 */
export function liveRuns<T>(short: number, long = 20_000, longMs = 240_000): fc.Parameters<T> {
  const ms = intEnv('FUZZ_LIVE_MS') ?? (LONG ? longMs : undefined);
  return withReplay({
    numRuns: intEnv('FUZZ_LIVE_RUNS') ?? (LONG ? long : short),
    seed: SEED,
    // Shrinking a live failure restarts the proxy per failing step: keep it bounded.
    ...(ms !== undefined ? { interruptAfterTimeLimit: ms } : {}),
  });
}

function withReplay<T>(p: fc.Parameters<T>): fc.Parameters<T> {
  const path = process.env.FUZZ_PATH;
  // The assertion's own message says what went wrong; fast-check leaves it out unless asked.
  const q = { ...p, includeErrorInReport: true };
  return path ? { ...q, path, endOnFailure: true } : q;
}

/** Counts of what the inputs of one property did, printed after a run as a sanity check of the generators. */
export class Tally {
  readonly #counts = new Map<string, number>();
  add(what: string): void {
    this.#counts.set(what, (this.#counts.get(what) ?? 0) + 1);
  }
  get(what: string): number {
    return this.#counts.get(what) ?? 0;
  }
  get total(): number {
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return n;
  }
  toString(): string {
    return [...this.#counts]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  }
}
