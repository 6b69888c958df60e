// The balancing scenario: three instances of one service behind a Trellis pair, one of
// them 50 ms slower than the others, and a fixed-rate load through the pair; once with
// the RoundRobin balancer and once with PeakEWMA (each its own mesh, with a BackendPolicy
// naming the balancer). Round robin sends the slow instance a third of the requests, so
// a third of them take 50 ms more and the p99 is the slow instance's; PeakEWMA learns
// the slow one's round-trip time and sends it almost nothing. The three apps are the
// same small Node server (bench/slow-server.ts), delays 0, 0 and 50 ms, so the only
// difference between the instances is the delay.
import type { Processes, Target } from './targets.js';
import { startSlowServer, startTrellisPair } from './targets.js';
import { runFixedRate, type FixedRateResult } from './fixed-rate.js';

export const SLOW_MS = 50;
const BALANCERS = ['RoundRobin', 'PeakEWMA'] as const;

export interface BalancingRun {
  readonly balancer: (typeof BALANCERS)[number];
  /** Share of the requests (warm-up and measured) the slow instance answered. */
  readonly slowShare: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly completed: number;
  readonly failed: number;
  readonly fixedRate: FixedRateResult;
}

export interface BalancingResult {
  readonly instances: 3;
  readonly slowMs: number;
  readonly rate: number;
  readonly connections: number;
  readonly runs: readonly BalancingRun[];
}

export interface BalancingOptions {
  readonly procs: Processes;
  readonly repoRoot: string;
  readonly dir: string;
  readonly rate: number;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly log: (msg: string) => void;
}

const policyYaml = (balancer: string): string => `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata:
  name: bench-balancer
spec:
  targetRefs: [{ group: "", kind: Service, name: upstream }]
  loadBalancer: { type: ${balancer} }
`;

export async function runBalancing(o: BalancingOptions): Promise<BalancingResult> {
  const apps = [
    await startSlowServer(o.procs, o.repoRoot, o.dir, 'app 0 (fast)', 0),
    await startSlowServer(o.procs, o.repoRoot, o.dir, 'app 1 (fast)', 0),
    await startSlowServer(o.procs, o.repoRoot, o.dir, `app 2 (${SLOW_MS} ms slower)`, SLOW_MS),
  ];
  const runs: BalancingRun[] = [];
  try {
    for (const balancer of BALANCERS) {
      let pair: Target | undefined;
      try {
        pair = await startTrellisPair(o.procs, o.repoRoot, o.dir, apps[0]!.port, 'http', {
          name: `lb-${balancer}`,
          yaml: policyYaml(balancer),
          moreInstances: [apps[1]!.port, apps[2]!.port],
        });
        await untilAllServe(pair.url, apps);
        const before = await Promise.all(apps.map((a) => a.count()));
        o.log(`balancing: ${balancer}, 3 instances (one ${SLOW_MS} ms slower), ${o.rate} rps over ${o.connections} connections, ${o.durationS}s`);
        const f = await runFixedRate({
          url: pair.url,
          rate: o.rate,
          durationMs: o.durationS * 1000,
          warmupMs: o.warmupS * 1000,
          connections: o.connections,
          timeoutMs: 5000,
        });
        const after = await Promise.all(apps.map((a) => a.count()));
        const delta = after.map((n, i) => n - before[i]!);
        const total = delta.reduce((a, b) => a + b, 0);
        runs.push({
          balancer,
          slowShare: total > 0 ? Math.round((delta[2]! / total) * 1000) / 1000 : 0,
          p50Us: f.latencyUs.p50,
          p99Us: f.latencyUs.p99,
          p999Us: f.latencyUs.p999,
          completed: f.completed,
          failed: f.errors + f.timeouts + f.non2xx,
          fixedRate: f,
        });
      } finally {
        await pair?.stop();
      }
    }
  } finally {
    await Promise.all(apps.map((a) => a.stop()));
  }
  return { instances: 3, slowMs: SLOW_MS, rate: o.rate, connections: o.connections, runs };
}

/** Sends GETs through the pair until each app has answered one (every instance is in the snapshot). */
async function untilAllServe(url: string, apps: readonly { count(): Promise<number> }[]): Promise<void> {
  const start = await Promise.all(apps.map((a) => a.count()));
  for (let i = 0; i < 300; i++) {
    await Promise.all(
      Array.from({ length: 6 }, () =>
        fetch(url)
          .then((r) => r.arrayBuffer())
          .catch(() => undefined),
      ),
    );
    const now = await Promise.all(apps.map((a) => a.count()));
    if (now.every((n, k) => n > start[k]!)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('balancing: not every instance answered through the pair within the wait');
}

/** The lines the bench prints for this scenario. */
export function formatBalancing(r: BalancingResult): string {
  const ms = (us: number): string => (us / 1000).toFixed(2);
  const lines = [`balancing: 3 instances, one ${r.slowMs} ms slower; fixed rate ${r.rate} rps over ${r.connections} connections`];
  for (const x of r.runs) {
    lines.push(
      `  ${x.balancer.padEnd(10)} p50 ${ms(x.p50Us)} ms  p99 ${ms(x.p99Us)} ms  p99.9 ${ms(x.p999Us)} ms  slow instance got ${(x.slowShare * 100).toFixed(1)}%  (${x.completed} completed, ${x.failed} failed)`,
    );
  }
  return `${lines.join('\n')}\n`;
}
