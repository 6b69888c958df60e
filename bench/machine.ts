// How busy the machine was with work that is not the bench's, during a measurement.
//
// The bench shares a small machine (often with builds and tests of other people), and a
// busy neighbour can halve a proxy's throughput. So each measurement is bracketed with
// CPU samples from /proc: all CPU time spent in user and system mode, minus the time of
// the bench's own processes (this process with its reaped children such as wrk, and
// every process in the process groups the bench started). What is left is "foreign"
// CPU, reported in cores (1.0 = one core fully busy). Linux only; elsewhere it reports
// nothing.
import { readFileSync, readdirSync } from 'node:fs';

export interface CpuSample {
  /** Jiffies in user+nice+system over all cores. */
  readonly machine: number;
  /** Jiffies of the bench's own processes. */
  readonly ours: number;
  /** Jiffies stolen by the hypervisor. */
  readonly steal: number;
  readonly at: number;
}

export interface CpuUsage {
  /** Cores' worth of CPU used by processes other than the bench's (0.5 = half a core). */
  readonly foreignCores: number;
  /** Cores' worth of CPU used by the bench's processes (load client included). */
  readonly benchCores: number;
  readonly stealCores: number;
}

const HZ = 100; // USER_HZ; 100 on every mainstream Linux build

function statFields(text: string): string[] {
  // Fields after "(comm)", which may itself contain spaces or parentheses.
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** Samples CPU counters; `groups` are the process-group ids the bench started. */
export function sampleCpu(groups: ReadonlySet<number>): CpuSample | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , , , steal = 0] = cpu;
    // Fields after comm: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) cutime(13) cstime(14)
    const self = statFields(readFileSync('/proc/self/stat', 'utf8'));
    let ours = Number(self[11]) + Number(self[12]) + Number(self[13]) + Number(self[14]);
    if (groups.size > 0) {
      for (const entry of readdirSync('/proc')) {
        if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
        let f: string[];
        try {
          f = statFields(readFileSync(`/proc/${entry}/stat`, 'utf8'));
        } catch {
          continue; // exited meanwhile
        }
        if (groups.has(Number(f[2]))) ours += Number(f[11]) + Number(f[12]);
      }
    }
    return { machine: user + nice + system, ours, steal, at: Date.now() };
  } catch {
    return undefined;
  }
}

/** CPU use between two samples, in cores. */
export function cpuBetween(a: CpuSample | undefined, b: CpuSample | undefined): CpuUsage | undefined {
  if (!a || !b || b.at <= a.at) return undefined;
  const seconds = (b.at - a.at) / 1000;
  const cores = (jiffies: number): number => Math.round((100 * Math.max(0, jiffies)) / HZ / seconds) / 100;
  return {
    foreignCores: cores(b.machine - a.machine - (b.ours - a.ours)),
    benchCores: cores(b.ours - a.ours),
    stealCores: cores(b.steal - a.steal),
  };
}

/** The keys of T whose values are numbers. */
type NumberKeys<T> = { [K in keyof T]: T[K] extends number ? K : never }[keyof T];

/**
 * Samples taken around separate spans (a target's max-rate rounds, with other targets'
 * rounds between them), joined into one (before, after) pair as if the spans had run
 * back to back: the first span's start, and an end whose `counters` have grown by the
 * sum of every span's growth; its other fields are the last span's end (memory after
 * the last round). Undefined when there are no spans or a sample is missing.
 */
export function joinSpans<T extends object>(
  spans: readonly (readonly [T | undefined, T | undefined])[],
  counters: readonly NumberKeys<T>[],
): [T, T] | undefined {
  const whole = spans.filter((s): s is readonly [T, T] => s[0] !== undefined && s[1] !== undefined);
  if (whole.length === 0 || whole.length < spans.length) return undefined;
  const start = whole[0]![0];
  const end = { ...whole[whole.length - 1]![1] } as Record<NumberKeys<T>, number>;
  const at = (t: T, k: NumberKeys<T>): number => (t as Record<NumberKeys<T>, number>)[k];
  for (const k of counters) end[k] = at(start, k) + whole.reduce((sum, [a, b]) => sum + at(b, k) - at(a, k), 0);
  return [start, end as T];
}

/** CPU use over several spans (joinSpans), in cores: the spans' jiffies over the spans' time. */
export function cpuOverSpans(spans: readonly (readonly [CpuSample | undefined, CpuSample | undefined])[]): CpuUsage | undefined {
  const joined = joinSpans(spans, ['machine', 'ours', 'steal', 'at']);
  return joined && cpuBetween(...joined);
}
