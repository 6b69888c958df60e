// What a proxy costs: resident memory (VmRSS in /proc/<pid>/status) and CPU time
// (utime + stime in /proc/<pid>/stat) of every process in a proxy's process group
// (nginx: master + worker; HAProxy and a Trellis sidecar: one process). Linux only;
// elsewhere the samples are undefined and the report says "-".
import { readFileSync, readdirSync } from 'node:fs';
import { joinSpans } from './machine.js';

const HZ = 100; // USER_HZ; 100 on every mainstream Linux build

/** `VmRSS:    45312 kB` in /proc/<pid>/status → kB; undefined if absent (kernel threads, zombies). */
export function parseVmRssKb(statusText: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB\s*$/m.exec(statusText);
  return m ? Number(m[1]) : undefined;
}

/** /proc/<pid>/stat → process group id and utime + stime in clock ticks. */
export function parseStat(statText: string): { pgrp: number; cpuTicks: number } {
  // Fields after "(comm)", which may itself contain spaces or parentheses:
  // state(0) ppid(1) pgrp(2) ... utime(11) stime(12)
  const f = statText
    .slice(statText.lastIndexOf(')') + 2)
    .trim()
    .split(' ');
  const pgrp = Number(f[2]);
  const cpuTicks = Number(f[11]) + Number(f[12]);
  if (!Number.isFinite(pgrp) || !Number.isFinite(cpuTicks)) throw new Error('unreadable /proc/<pid>/stat');
  return { pgrp, cpuTicks };
}

/** One process group's memory and CPU at one moment. */
export interface GroupSample {
  /** Processes found in the group. */
  readonly processes: number;
  /** Sum of their VmRSS, kB. */
  readonly rssKb: number;
  /**
   * Sum of their Pss (/proc/<pid>/smaps_rollup), kB: resident memory with pages shared
   * between processes (a runtime's binary, most of a Node process's RSS) divided among
   * the processes that map them, so it is what one more such process costs.
   */
  readonly pssKb: number;
  /** Sum of their utime + stime, clock ticks. */
  readonly cpuTicks: number;
}

/** Samples the given process groups (each a child the bench started with `detached`). */
export function sampleGroups(groups: readonly number[]): Map<number, GroupSample> | undefined {
  const out = new Map<number, { processes: number; rssKb: number; pssKb: number; cpuTicks: number }>();
  for (const g of groups) out.set(g, { processes: 0, rssKb: 0, pssKb: 0, cpuTicks: 0 });
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const st = parseStat(readFileSync(`/proc/${entry}/stat`, 'utf8'));
      const acc = out.get(st.pgrp);
      if (!acc) continue;
      acc.processes++;
      acc.cpuTicks += st.cpuTicks;
      acc.rssKb += parseVmRssKb(readFileSync(`/proc/${entry}/status`, 'utf8')) ?? 0;
      acc.pssKb += readPssKb(entry) ?? 0;
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** `Pss:  27153 kB` in /proc/<pid>/smaps_rollup → kB; undefined where the file is missing. */
export function parsePssKb(smapsRollup: string): number | undefined {
  const m = /^Pss:\s+(\d+)\s+kB\s*$/m.exec(smapsRollup);
  return m ? Number(m[1]) : undefined;
}

function readPssKb(pid: string): number | undefined {
  try {
    return parsePssKb(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** CPU seconds per 1,000 requests between two samples of a group; undefined without requests or samples. */
export function cpuSecondsPer1k(before: GroupSample | undefined, after: GroupSample | undefined, requests: number): number | undefined {
  if (!before || !after || after.processes === 0 || !(requests > 0)) return undefined;
  const seconds = Math.max(0, after.cpuTicks - before.cpuTicks) / HZ;
  return (seconds * 1000) / requests;
}

/**
 * Group samples taken around separate spans, joined per group as if the spans had run
 * back to back (joinSpans): CPU ticks summed over the spans, memory as after the last.
 * A group missing from a sample is left out.
 */
export function joinGroupSpans(
  spans: readonly (readonly [Map<number, GroupSample> | undefined, Map<number, GroupSample> | undefined])[],
): { before: Map<number, GroupSample>; after: Map<number, GroupSample> } | undefined {
  const last = spans[spans.length - 1]?.[1];
  if (!last) return undefined;
  const before = new Map<number, GroupSample>();
  const after = new Map<number, GroupSample>();
  for (const pgid of last.keys()) {
    const joined = joinSpans(
      spans.map(([a, b]) => [a?.get(pgid), b?.get(pgid)] as const),
      ['cpuTicks'],
    );
    if (!joined) continue;
    before.set(pgid, joined[0]);
    after.set(pgid, joined[1]);
  }
  return { before, after };
}

/** kB (as /proc counts them, 1024 bytes) → MB as `top` shows them (1 MB = 1024 kB), one decimal. */
export function rssMb(kb: number): number {
  return Math.round((10 * kb) / 1024) / 10;
}
