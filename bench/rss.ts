// What an idle sidecar costs in memory (issue 13's target: ≤ 60 MB RSS per sidecar): a
// Trellis pair started as the mesh starts one (control plane, mTLS on, certificates from
// its CA), its two proxies' RSS (and PSS) from /proc and heap from their own /metrics,
// sampled idle (a few seconds after the first request went through) and again after a
// little traffic. With a baseline build (--baseline DIR / --baseline-ref REF) the two
// builds alternate, one fresh pair per round, so machine drift hits both alike.
import http from 'node:http';
import { median } from './report.js';
import { rssMb, sampleGroups } from './resources.js';
import { type Managed, type Processes, startSlowServer, startTrellisPair } from './targets.js';

export interface RssOptions {
  readonly procs: Processes;
  readonly dir: string;
  /** The builds to compare, by name (`trellis`, `baseline`) → checkout folder. */
  readonly builds: ReadonlyMap<string, string>;
  readonly rounds: number;
  /** Requests sent through the pair between the idle and the after-traffic sample. */
  readonly requests: number;
  /** Seconds the pair sits idle before each sample. */
  readonly settleS: number;
  readonly log: (msg: string) => void;
}

/** One proxy's memory at one moment, MB. */
export interface MemorySample {
  readonly rssMb: number;
  readonly pssMb?: number;
  readonly heapUsedMb?: number;
}

export interface RssRound {
  readonly build: string;
  readonly role: 'outbound' | 'inbound';
  readonly idle: MemorySample;
  readonly afterTraffic: MemorySample;
}

export interface RssResult {
  readonly rounds: readonly RssRound[];
  readonly requests: number;
}

export async function runRss(o: RssOptions): Promise<RssResult> {
  const builds = [...o.builds.keys()];
  const upstream = await startSlowServer(o.procs, [...o.builds.values()][0]!, o.dir, 'upstream', 0);
  const rounds: RssRound[] = [];
  try {
    for (let r = 0; r < o.rounds; r++) {
      // Alternate which build goes first, so neither always runs on the warmer machine.
      const order = r % 2 === 0 ? builds : [...builds].reverse();
      for (const build of order) {
        o.log(`rss: round ${r + 1}/${o.rounds}, ${build}`);
        const pair = await startTrellisPair(o.procs, o.builds.get(build)!, o.dir, upstream.port);
        try {
          const proxies = pair.processes ?? [];
          await sleep(o.settleS * 1000);
          const idle = await Promise.all(proxies.map((p) => sample(p.managed)));
          await traffic(pair.url, o.requests);
          await sleep(o.settleS * 1000);
          const after = await Promise.all(proxies.map((p) => sample(p.managed)));
          proxies.forEach((p, i) => {
            rounds.push({ build, role: p.role, idle: idle[i]!, afterTraffic: after[i]! });
          });
        } finally {
          await pair.stop();
        }
      }
    }
  } finally {
    await upstream.stop();
  }
  return { rounds, requests: o.requests };
}

/** RSS and PSS of the proxy's process group, and its heap as its /metrics reports it. */
async function sample(m: Managed): Promise<MemorySample> {
  const pid = m.child.pid ?? -1;
  const g = sampleGroups([pid])?.get(pid);
  if (!g || g.processes === 0) throw new Error(`${m.name}: not running (${m.output().slice(-300)})`);
  const heap = await heapUsed(m);
  return {
    rssMb: rssMb(g.rssKb),
    ...(g.pssKb > 0 ? { pssMb: rssMb(g.pssKb) } : {}),
    ...(heap !== undefined ? { heapUsedMb: heap / 2 ** 20 } : {}),
  };
}

/** `trellis_proxy_nodejs_heap_size_used_bytes` from the admin server the proxy printed at start; undefined when not found. */
async function heapUsed(m: Managed): Promise<number | undefined> {
  const admin = /: admin (http:\/\/127\.0\.0\.1:\d+)/.exec(m.output())?.[1];
  if (admin === undefined) return undefined;
  try {
    const text = await (await fetch(`${admin}/metrics`)).text();
    const v = /^trellis_proxy_nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1];
    return v === undefined ? undefined : Number(v);
  } catch {
    return undefined;
  }
}

/** `n` GETs through the pair, 8 at a time over keep-alive connections; any non-200 throws. */
async function traffic(url: string, n: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      http
        .get(url, { agent }, (res) => {
          res.resume();
          res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`GET ${url}: ${res.statusCode}`))));
        })
        .once('error', reject);
    });
  try {
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next++ < n) await one();
      }),
    );
  } finally {
    agent.destroy();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The median of each build's samples per role, idle and after traffic. */
export function formatRss(r: RssResult): string {
  const builds = [...new Set(r.rounds.map((x) => x.build))];
  const mb = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(1));
  const lines = [
    `Sidecar memory (MB; median of ${r.rounds.length / (builds.length * 2)} fresh pairs per build; ${r.requests} requests between idle and after)`,
    'build      proxy     idle RSS  idle PSS  idle heap  after RSS  after PSS  after heap',
  ];
  for (const build of builds) {
    for (const role of ['outbound', 'inbound'] as const) {
      const xs = r.rounds.filter((x) => x.build === build && x.role === role);
      const m = (f: (x: RssRound) => number | undefined): string => mb(median(xs.map(f).filter((v): v is number => v !== undefined)));
      lines.push(
        `${build.padEnd(10)} ${role.padEnd(9)} ${m((x) => x.idle.rssMb).padStart(8)}  ${m((x) => x.idle.pssMb).padStart(8)}  ${m((x) => x.idle.heapUsedMb).padStart(9)}  ${m((x) => x.afterTraffic.rssMb).padStart(9)}  ${m((x) => x.afterTraffic.pssMb).padStart(9)}  ${m((x) => x.afterTraffic.heapUsedMb).padStart(10)}`,
      );
    }
  }
  lines.push('Target (issue 13): ≤ 60 MB RSS per sidecar. A shared machine: compare builds within one run.');
  return `${lines.join('\n')}\n`;
}
