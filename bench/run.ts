// `npm run bench`: the same load against the same upstream four ways (direct, a Trellis
// sidecar pair, an nginx pair, an HAProxy pair), all on loopback, in one run; prints
// throughput and latency per target with ratios to nginx, and writes the results as
// JSON to bench/results/<time>.json. See bench/README.md for how to read it.
//
// Scenarios: max rate (wrk, in rounds that visit every target in turn) and fixed
// 1,000 rps with 1 KB GETs; the same fixed rate
// with 10 KB and 100 KB responses and 1 KB POST bodies; TCP echo throughput through a
// pair; and each proxy's RSS and CPU seconds per 1,000 requests.
//
// With --baseline DIR (or --baseline-ref REF, which builds one), a fifth target: the
// Trellis pair of that other build, in the same max-rate rounds and the 1 KB fixed
// rate, for an A/B of this checkout against it (bench/baseline.ts).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { existingBaseline, makeBaseline, type Baseline } from './baseline.js';
import { runFixedRate, type FixedRateResult } from './fixed-rate.js';
import { cpuBetween, cpuOverSpans, sampleCpu, type CpuSample, type CpuUsage } from './machine.js';
import {
  LATENCY_SCENARIOS,
  LATENCY_SCENARIO_SPECS,
  evaluate,
  formatReport,
  maxRateRatios,
  maxRateVsBaseline,
  medianRun,
  runsExtraScenarios,
  scenarioTitle,
  type BenchReport,
  type LatencyScenario,
  type NewConnectionTargetResult,
  type ProxyResources,
  type Settings,
  type TargetName,
  type TargetResult,
  type TcpResult,
} from './report.js';
import { cpuSecondsPer1k, joinGroupSpans, rssMb, sampleGroups, type GroupSample } from './resources.js';
import { formatRss, runRss } from './rss.js';
import {
  BODY_1KB,
  Processes,
  findBinary,
  makeBody,
  probe,
  profileProxiesInto,
  startEchoServer,
  startHaproxyPair,
  startHaproxyTcpPair,
  startNginxPair,
  startNginxTcpPair,
  startTrellisPair,
  startUpstream,
  tcpPort,
  versionOf,
  type Binaries,
  type Target,
} from './targets.js';
import { defaultEchoOptions, runEcho } from './tcp-echo.js';
import { defaultNewConnectionOptions, runNewConnections } from './new-connections.js';
import { formatInterception, runInterception } from './interception.js';
import { makeTlsMaterial, startHaproxyTlsPair, startHaproxyTlsTcpPair, startNginxTlsPair, startNginxTlsTcpPair, type TlsMaterial } from './tls-peers.js';
import { formatRouteRules, runRouteRules, type RouteRulesResult } from './route-rules.js';
import { formatBalancing, runBalancing, type BalancingResult } from './balancing.js';
import { runWrk, type WrkResult } from './wrk.js';
import { formatScale, runScale, type ScaleResult } from './scale.js';
import { formatBigMesh, runBigMesh } from './bigmesh.js';
import { formatIngressTls, runIngressTls } from './ingress-tls.js';
import { formatTracing, runTracing } from './tracing.js';
import { formatScrape, runScrape } from './scrape.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const PATHS: Record<TargetName, string> = {
  direct: 'client → upstream',
  trellis: 'client → trellis outbound ═mTLS═► trellis inbound → upstream (the default)',
  'trellis-plain': 'client → trellis outbound → trellis inbound → upstream, mTLS off (PeerAuthentication DISABLE)',
  baseline: 'client → trellis outbound → trellis inbound → upstream, of the baseline build',
  nginx: 'client → nginx → nginx → upstream',
  'nginx-tls': 'client → nginx ═mutual TLS═► nginx → upstream',
  haproxy: 'client → haproxy → haproxy → upstream',
  'haproxy-tls': 'client → haproxy ═mutual TLS═► haproxy → upstream',
};
/** The targets of the new-connection (handshake) rate scenario, each its own TCP pair. */
type NewConnectionTarget = 'direct' | 'trellis' | 'trellis-plain' | 'nginx-tls' | 'haproxy-tls';
const NEW_CONNECTION_PATHS: Record<NewConnectionTarget, string> = {
  direct: 'client → echo server',
  trellis: 'client → trellis outbound ═mTLS═► trellis inbound → echo server (protocol: tcp)',
  'trellis-plain': 'client → trellis outbound → trellis inbound → echo server (protocol: tcp, mTLS off)',
  'nginx-tls': 'client → nginx stream ═mutual TLS═► nginx stream → echo server',
  'haproxy-tls': 'client → haproxy ═mutual TLS═► haproxy → echo server (mode tcp)',
};
/** What the plaintext Trellis pair adds to its mesh file: mTLS off for the whole (default) namespace. */
const PLAINTEXT_VARIANT = {
  name: 'plain',
  yaml: `apiVersion: trellis.dev/v1alpha1
kind: PeerAuthentication
metadata:
  name: plaintext
spec:
  mtls:
    mode: DISABLE
`,
} as const;
/** The targets of the TCP echo scenario: all but the baseline (runsExtraScenarios). */
type TcpTargetName = 'direct' | 'trellis' | 'nginx' | 'haproxy';
const TCP_PATHS: Record<TcpTargetName, string> = {
  direct: 'client → echo server',
  trellis: 'client → trellis outbound → trellis inbound → echo server (protocol: tcp)',
  nginx: 'client → nginx stream → nginx stream → echo server',
  haproxy: 'client → haproxy → haproxy → echo server (mode tcp)',
};
// The baseline beside trellis, so the two runs of a round that its A/B compares are seconds apart.
const ORDER: readonly TargetName[] = ['direct', 'trellis', 'baseline', 'trellis-plain', 'nginx', 'nginx-tls', 'haproxy', 'haproxy-tls'];
/** What runs without --targets: the baseline only when there is one (--baseline). */
const DEFAULT_TARGETS: readonly TargetName[] = ORDER.filter((t) => t !== 'baseline');

const USAGE = `usage: node dist/bench/run.js [options]
  All targets are started first; the max rate is measured in rounds, each running wrk
  against every target in turn (so drift of the machine's speed between rounds cancels
  out of the ratios to nginx); then each target's fixed-rate scenarios, one at a time.
  --rounds N              max-rate rounds (default 3, 1 to 20); the round with the median
                          rps is the target's, the ratios are the median of the rounds'
  --duration S            measured seconds of each max-rate round (default 5; with --only,
                          of each run: default 10)
  --warmup S              warm-up seconds before the max-rate rounds (per target) and
                          before each fixed-rate load (default 2)
  --connections N         wrk connections (default 50)
  --rate R                fixed-rate requests per second (default 1000)
  --fixed-connections N   fixed-rate keep-alive connections (default 20)
  --fixed-duration S      measured seconds of the 1KB fixed-rate load (default 10)
  --p99-rounds N          paired rounds for the added-p99 targets (default 5; 0: none):
                          each round runs the 1KB fixed rate against direct, each
                          Trellis pair and nginx's pairs in turn, so each pair's p99 is
                          compared with direct's from the same seconds; the target is
                          the median
  --p99-duration S        measured seconds of each paired run (default 4, after 1 s warm-up)
  --extra-duration S      measured seconds of each extra scenario: 10KB/100KB/POST
                          fixed rate and TCP echo (default 5)
  --extra-warmup S        warm-up seconds of each extra scenario (default 1)
  --tcp-connections N     parallel connections of the TCP echo (default 4)
  --new-connections N     connections at once in the new-connection (handshake) rate
                          scenario (default 8): connect, 32 bytes echoed, close, through
                          TCP pairs with TLS between the proxies (uses the extra durations)
  --no-extra              only the max-rate and 1KB fixed-rate scenarios
  --only interception     only transparent interception (root: makes network namespaces
                          with trellis up --isolate) against the explicit-port path, from
                          inside a pod, keep-alive and Connection: close
  --only route-rules      only the route-matching scenario: max throughput of a Trellis
                          pair whose route has 50 rules (the request matching the last)
                          against 1 rule, as a ratio (uses --duration, --warmup,
                          --connections; the full run uses the extra durations)
  --only ingress-tls      only the ingress scenario: the Trellis ingress (a Gateway's HTTPS
                          listener) against nginx, both terminating TLS with one localhost
                          certificate then mTLS to an inbound proxy: keep-alive max throughput
                          (--connections, --duration, --warmup, in --rounds rounds, with
                          each edge's CPU per request) and the new-TLS-connection rate
                          (--new-connections at once), as trellis/nginx ratios; with
                          --baseline its Trellis edge runs in the same rounds; with
                          --relay a bare Node TLS relay edge too (bench/tls-relay.ts:
                          the floor of a Node edge, so CPU per request splits into
                          relay/nginx and trellis/relay)
  --only balancing        only the balancing scenario: three instances behind a Trellis
                          pair, one 50 ms slower, at a fixed rate (--balancing-rate,
                          --balancing-connections; --duration, --warmup), with the
                          RoundRobin balancer and with PeakEWMA: p50, p99 and the slow
                          instance's share (the full run uses the extra durations)
  --only rss              only sidecar memory: a Trellis pair (mTLS on, as the mesh runs it),
                          each proxy's RSS, PSS and heap idle and after --rss-requests
                          requests (default 2000), --rss-settle seconds (default 3) of quiet
                          before each sample; --rounds fresh pairs, alternating with the
                          --baseline / --baseline-ref build when one is given
  --only scale            only the control plane at scale: N simulated proxies on the real
                          stream protocol against a real \`trellis control\`: registration
                          time, snapshots per proxy, bytes sent, a route change's fan-out
                          (p50 and until every caller has it), the control plane's RSS,
                          CPU and worst /healthz answer time (bench/scale.ts)
  --only bigmesh          only a sidecar's memory in a big mesh: a real sidecar whose
                          service calls 5 services, in a mesh of each --bigmesh-sizes
                          services (one simulated instance each), --rounds fresh meshes
                          alternating; its idle RSS and heap, again after a route edit to
                          a service it does not call, and what of the mesh it holds
                          (bench/bigmesh.ts; --rss-settle seconds before each sample)
  --bigmesh-sizes LIST    the mesh sizes, comma-separated (default 8,1000)
 --only tracing          only the tracing cost: three Trellis pairs at 0%, 1% and 100% head
                          sampling, spans exported over OTLP/HTTP to their control plane,
                          max throughput in --rounds interleaved rounds (--duration,
                          --warmup, --connections); 1% and 100% as ratios to 0% (median
                          of per-round ratios; targets ≥ 0.95 and ≥ 0.8)
  --only scrape           only the metrics scrape: p50/p99 of GET /metrics of a proxy with
                          about 1,000 series (--scrape-routes routes, one label set each),
                          idle (text and OpenMetrics) and under wrk load; target p99 < 10 ms
  --scrape-routes N       HTTPRoutes of the scrape scenario's service (default 40)
  --scrapes N             timed scrapes of each kind (default 200)
  --cpu-prof DIR          every Trellis proxy (and a pair's control plane) writes a V8 CPU profile (.cpuprofile) into
                          DIR when it stops (open in Chrome DevTools or speedscope)
  --scale-proxies LIST    the sizes, comma-separated (default 100,500,1000)
  --scale-services N      services the proxies are spread over (default 10)
  --scale-calls N         upstreams each service calls (default 5)
  --scale-timeout S       a phase that has not settled by then is reported so (default 120)
  --balancing-rate R      requests per second of the balancing scenario (default 500)
  --balancing-connections N  its keep-alive connections (default 50)
  --route-rounds N        alternating runs per variant in the route-matching scenario,
                          the best of each counts (default 2)
  --baseline DIR          A/B against another build: a fifth target, the Trellis pair of
                          the checkout in DIR (built: bin/trellis.js and dist/), in every
                          max-rate round (beside trellis: the two trade places every
                          other round) and the 1KB fixed rate;
                          prints trellis's throughput over it (median of per-round
                          ratios) and both added p99s
  --baseline-ref REF      the same, with DIR made by the bench: a git worktree of REF
                          (e.g. HEAD~1, main) in its temp folder, npm ci (or this
                          checkout's node_modules, when package-lock.json is the same),
                          npm run build; removed at the end
  --targets LIST          comma-separated subset of ${DEFAULT_TARGETS.join(',')} (default all;
                          baseline is added by --baseline)
  --no-install            do not run scripts/install-bench-deps.sh (which installs what is missing)
  --no-save               do not write bench/results/<time>.json
`;

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function binaries(allowInstall: boolean): Binaries & { missing: string[] } {
  const find = (): Partial<Binaries> => ({ nginx: findBinary('nginx'), haproxy: findBinary('haproxy'), wrk: findBinary('wrk') });
  let b = find();
  if (allowInstall) {
    // Idempotent and quick when everything is there; it also adds nginx's stream module for the TCP scenario.
    const r = spawnSync('bash', [path.join(repoRoot, 'scripts', 'install-bench-deps.sh')], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
    if (r.status !== 0) log(`install-bench-deps.sh failed (${r.error?.message ?? `exit ${r.status}`})`);
    b = find();
  }
  const missing = (['nginx', 'haproxy', 'wrk'] as const).filter((k) => !b[k]);
  return { nginx: b.nginx ?? '', haproxy: b.haproxy ?? '', wrk: b.wrk ?? '', missing };
}

/**
 * RSS after the last max-rate round and CPU seconds per 1,000 requests, per proxy
 * process group. The max-rate samples are the rounds joined (joinGroupSpans).
 */
function proxyResources(
  proxies: readonly { role: 'outbound' | 'inbound'; managed: { child: { pid?: number } } }[],
  s: {
    maxBefore?: Map<number, GroupSample>;
    maxAfter?: Map<number, GroupSample>;
    fixedBefore?: Map<number, GroupSample>;
    fixedAfter?: Map<number, GroupSample>;
  },
  maxRateRequests: number | undefined,
  fixed: FixedRateResult | undefined,
): ProxyResources[] {
  // The fixed-rate run's CPU covers its warm-up too, so its requests count the warm-up's.
  const fixedRequests = fixed ? Math.round((fixed.warmupMs / 1000) * fixed.rate) + fixed.completed : undefined;
  return proxies.map((p) => {
    const pid = p.managed.child.pid ?? -1;
    const after = s.maxAfter?.get(pid);
    const out: Mutable<ProxyResources> = { role: p.role, processes: after?.processes ?? 0 };
    if (after && after.processes > 0) {
      out.rssMb = rssMb(after.rssKb);
      if (after.pssKb > 0) out.pssMb = rssMb(after.pssKb);
    }
    const maxCpu = cpuSecondsPer1k(s.maxBefore?.get(pid), after, maxRateRequests ?? 0);
    if (maxCpu !== undefined) out.cpuSecondsPer1kMaxRate = maxCpu;
    const fixedCpu = cpuSecondsPer1k(s.fixedBefore?.get(pid), s.fixedAfter?.get(pid), fixedRequests ?? 0);
    if (fixedCpu !== undefined) out.cpuSecondsPer1kFixedRate = fixedCpu;
    return out;
  });
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
/** Samples taken right before and right after a measured load. */
type Span<T> = readonly [T | undefined, T | undefined];

/** A target kept running through the max-rate rounds, and what is measured of it. */
interface Running {
  readonly target: Target;
  readonly result: Mutable<TargetResult>;
  /** Its proxies' process groups (none for direct), for RSS and CPU per request. */
  readonly pgids: readonly number[];
  /** Each completed max-rate round, in order. */
  readonly rounds: Measured<WrkResult>[];
}

/** A load's result and the samples around it: the machine's CPU, and the target's proxies. */
interface Measured<T> {
  readonly value: T;
  readonly cpu: Span<CpuSample>;
  readonly groups: Span<Map<number, GroupSample>>;
}

/** Runs `load` between samples of the machine's CPU and of the target's proxy process groups. */
async function measured<T>(procs: Processes, pgids: readonly number[], load: () => Promise<T>): Promise<Measured<T>> {
  const groupsNow = (): Map<number, GroupSample> | undefined => (pgids.length > 0 ? sampleGroups(pgids) : undefined);
  const cpuBefore = sampleCpu(procs.groups);
  const groupsBefore = groupsNow();
  const value = await load();
  const groupsAfter = groupsNow();
  return { value, cpu: [cpuBefore, sampleCpu(procs.groups)], groups: [groupsBefore, groupsAfter] };
}

/** Starts a target and checks GET / through it; on failure, the reason, on one line. */
async function startChecked(name: TargetName, start: () => Promise<Target>, bodyBytes: number): Promise<Target | string> {
  log(`${name}: starting (${PATHS[name]})`);
  try {
    const target = await start();
    const r = await probe(target.url);
    if (!('status' in r) || r.status !== 200 || r.bytes !== bodyBytes) {
      await target.stop();
      throw new Error(`GET / through it answered ${JSON.stringify(r)}, expected 200 with ${bodyBytes} bytes`);
    }
    return target;
  } catch (e) {
    const reason = (e as Error).message.replace(/\s+/g, ' ').slice(0, 300);
    log(`${name}: unavailable: ${reason}`);
    return reason;
  }
}

/**
 * The max-rate scenario in interleaved rounds: every target warmed up, then each round
 * runs wrk against every target in turn, so that all targets meet the same machine (a
 * shared host's speed drifts over minutes; nginx alone has measured 13.7k to 24.5k rps in
 * one day). A target whose wrk fails sits out the later rounds and keeps those it
 * completed. Idle targets wait between their turns; an idle pair costs no CPU.
 */
async function maxRateRounds(running: readonly Running[], w: Settings['wrk'], wrk: string, procs: Processes): Promise<void> {
  const load = (t: Running, durationS: number): Promise<WrkResult> =>
    runWrk({ wrk, url: t.target.url, threads: w.threads, connections: w.connections, durationS, timeoutS: 5 });
  const attempt = async (t: Running, what: string, run: () => Promise<void>): Promise<void> => {
    if (t.result.maxRateError !== undefined) return;
    log(`${t.result.name}: ${what}`);
    try {
      await run();
    } catch (e) {
      t.result.maxRateError = (e as Error).message;
    }
  };
  if (w.warmupS > 0) {
    for (const t of running) await attempt(t, `max-rate warm-up ${w.warmupS}s`, () => load(t, w.warmupS).then(() => {}));
  }
  const rounds = w.rounds ?? 1;
  for (let i = 1; i <= rounds; i++) {
    for (const t of roundOrder(running, i)) {
      await attempt(t, `max-rate round ${i}/${rounds}, ${w.durationS}s (wrk -t${w.threads} -c${w.connections})`, async () => {
        t.rounds.push(await measured(procs, t.pgids, () => load(t, w.durationS)));
      });
    }
  }
  for (const t of running) {
    const runs = t.rounds.map((r) => r.value);
    const median = medianRun(runs);
    if (!median) continue;
    t.result.maxRate = median;
    t.result.maxRateRounds = runs.map((r) => r.rps);
    t.result.maxRateCpu = cpuOverSpans(t.rounds.map((r) => r.cpu));
  }
}

/**
 * The added-p99 targets' measure: `rounds` short runs of the 1 KB fixed rate against
 * direct and each Trellis pair (the baseline's too; and nginx's pairs, for reference),
 * visiting them in turn every round
 * and starting each round one place further along, so that each target's round i runs
 * within seconds of direct's. The single fixed-rate run per target compares moments a
 * minute or more apart, and on a shared machine direct's own p99 drifts between them by
 * more than the millisecond being judged. Each run has its own warm-up (new client
 * connections; the pair's own connections stay open between runs).
 */
async function pairedP99Rounds(running: readonly Running[], f: Settings['fixedRate'], p: NonNullable<Settings['p99Rounds']>): Promise<void> {
  // nginx's pairs too: what two proxies written in C add on this machine, in the same rounds.
  const paired = running.filter((t) => ['direct', 'trellis', 'trellis-plain', 'baseline', 'nginx', 'nginx-tls'].includes(t.result.name));
  if (!paired.some((t) => t.result.name === 'direct') || paired.length < 2) return;
  for (const t of paired) t.result.p99Rounds = [];
  for (let i = 0; i < p.rounds; i++) {
    for (let j = 0; j < paired.length; j++) {
      const t = paired[(i + j) % paired.length]!;
      log(`${t.result.name}: paired p99 round ${i + 1}/${p.rounds}, fixed-rate ${f.rate} rps, ${p.warmupS}s warm-up + ${p.durationS}s`);
      let p99: number | null = null;
      try {
        const r = await runFixedRate({
          url: t.target.url,
          rate: f.rate,
          durationMs: p.durationS * 1000,
          warmupMs: p.warmupS * 1000,
          connections: f.connections,
          timeoutMs: 5000,
        });
        // A round with failed requests says nothing about the tail: left out.
        if (r.errors === 0 && r.timeouts === 0 && r.latencyUs.count > 0) p99 = r.latencyUs.p99;
      } catch (e) {
        log(`${t.result.name}: paired p99 round ${i + 1} failed: ${(e as Error).message}`);
      }
      (t.result.p99Rounds as (number | null)[]).push(p99);
    }
  }
}

/**
 * The targets in round `i`'s order: trellis and the baseline trade places every other
 * round, so that neither always runs right after the other (whatever the one before
 * leaves behind, such as sockets in TIME_WAIT or a warmer CPU, falls on both).
 */
function roundOrder(running: readonly Running[], i: number): readonly Running[] {
  const a = running.findIndex((t) => t.result.name === 'trellis');
  const b = running.findIndex((t) => t.result.name === 'baseline');
  if (i % 2 === 1 || a < 0 || b < 0) return running;
  const order = [...running];
  [order[a], order[b]] = [order[b]!, order[a]!];
  return order;
}

/** What the fixed-rate scenarios of one target need. */
interface LatencyContext {
  readonly procs: Processes;
  readonly settings: Settings;
  readonly postBody: Buffer;
}

/**
 * The outbound mutual TLS connections a Trellis proxy has opened (the sum of its
 * `trellis_tls_connections_total{direction="outbound"}` series), read from its admin
 * `/metrics`; undefined when it cannot be read (a build without the metric: no count).
 */
async function outboundHandshakes(admin: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${admin}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return undefined;
    let n = 0;
    let seen = false;
    for (const line of (await res.text()).split('\n')) {
      if (!line.startsWith('trellis_tls_connections_total{') || !line.includes('direction="outbound"')) continue;
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
      seen = true;
    }
    return seen && Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One target's fixed-rate scenarios (1 KB GET, then the extra ones), and its proxies'
 * cost over the max-rate rounds and the 1 KB fixed-rate run.
 */
async function latencyScenarios(t: Running, c: LatencyContext): Promise<void> {
  const { result, pgids } = t;
  const name = result.name;
  let fixedGroups: Span<Map<number, GroupSample>> | undefined;
  try {
    const f = c.settings.fixedRate;
    log(`${name}: fixed-rate ${f.rate} rps, ${f.warmupS}s warm-up + ${f.durationS}s`);
    const admin = t.target.outboundAdmin;
    const handshakesBefore = admin === undefined ? undefined : await outboundHandshakes(admin);
    // Sampled over warm-up and measurement both: close enough for a noise indicator.
    const m = await measured(c.procs, pgids, () =>
      runFixedRate({
        url: t.target.url,
        rate: f.rate,
        durationMs: f.durationS * 1000,
        warmupMs: f.warmupS * 1000,
        connections: f.connections,
        timeoutMs: 5000,
      }),
    );
    result.fixedRate = m.value;
    result.fixedRateCpu = cpuBetween(...m.cpu);
    fixedGroups = m.groups;
    const handshakesAfter = admin === undefined ? undefined : await outboundHandshakes(admin);
    if (handshakesBefore !== undefined && handshakesAfter !== undefined) result.fixedRateHandshakes = handshakesAfter - handshakesBefore;
  } catch (e) {
    result.fixedRateError = (e as Error).message;
  }
  if (pgids.length > 0) {
    const max = joinGroupSpans(t.rounds.map((r) => r.groups));
    const maxRequests = t.rounds.reduce((sum, r) => sum + r.value.requests, 0);
    result.resources = proxyResources(
      t.target.processes ?? [],
      { maxBefore: max?.before, maxAfter: max?.after, fixedBefore: fixedGroups?.[0], fixedAfter: fixedGroups?.[1] },
      maxRequests,
      result.fixedRate,
    );
  }
  if (!c.settings.extra || !runsExtraScenarios(name)) return;
  const x = c.settings.extra;
  const latency: Partial<Record<LatencyScenario, FixedRateResult>> = {};
  const latencyErrors: Partial<Record<LatencyScenario, string>> = {};
  const latencyCpu: Partial<Record<LatencyScenario, CpuUsage>> = {};
  for (const id of x.scenarios) {
    const sp = LATENCY_SCENARIO_SPECS[id];
    try {
      log(`${name}: fixed-rate ${scenarioTitle(id)} (${sp.method} ${sp.path}) ${x.rate} rps, ${x.warmupS}s warm-up + ${x.durationS}s`);
      const m = await measured(c.procs, [], () =>
        runFixedRate({
          url: new URL(sp.path, t.target.url).href,
          rate: x.rate,
          durationMs: x.durationS * 1000,
          warmupMs: x.warmupS * 1000,
          connections: x.connections,
          timeoutMs: 5000,
          ...(sp.method === 'POST' ? { method: 'POST', body: c.postBody } : {}),
        }),
      );
      latency[id] = m.value;
      const cpu = cpuBetween(...m.cpu);
      if (cpu) latencyCpu[id] = cpu;
    } catch (e) {
      latencyErrors[id] = (e as Error).message;
    }
  }
  result.latency = latency;
  if (Object.keys(latencyErrors).length > 0) result.latencyErrors = latencyErrors;
  result.latencyCpu = latencyCpu;
}

function isoBasic(d: Date): string {
  // ISO 8601 basic format (20250102T030405Z): sortable, and no ':' in file names.
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' }, // its default depends on --only
      'fixed-duration': { type: 'string', default: '10' },
      rounds: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '50' },
      rate: { type: 'string', default: '1000' },
      'fixed-connections': { type: 'string', default: '20' },
      'p99-rounds': { type: 'string', default: '5' },
      'p99-duration': { type: 'string', default: '4' },
      'extra-duration': { type: 'string', default: '5' },
      'extra-warmup': { type: 'string', default: '1' },
      'tcp-connections': { type: 'string', default: String(defaultEchoOptions.connections) },
      'new-connections': { type: 'string', default: String(defaultNewConnectionOptions.concurrency) },
      'no-extra': { type: 'boolean', default: false },
      relay: { type: 'boolean', default: false },
      'rss-requests': { type: 'string', default: '2000' },
      'rss-settle': { type: 'string', default: '3' },
      only: { type: 'string' },
      'route-rounds': { type: 'string', default: '2' },
      'balancing-rate': { type: 'string', default: '500' },
      'balancing-connections': { type: 'string', default: '50' },
      'scale-proxies': { type: 'string', default: '100,500,1000' },
      'scale-services': { type: 'string', default: '10' },
      'scale-calls': { type: 'string', default: '5' },
      'scale-timeout': { type: 'string', default: '120' },
      'bigmesh-sizes': { type: 'string', default: '8,1000' },
      'scrape-routes': { type: 'string', default: '40' },
      scrapes: { type: 'string', default: '200' },
      'cpu-prof': { type: 'string' },
      targets: { type: 'string', default: DEFAULT_TARGETS.join(',') },
      baseline: { type: 'string' },
      'baseline-ref': { type: 'string' },
      'no-install': { type: 'boolean', default: false },
      'no-save': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const num = (name: string, v: string, min: number, max: number, integer = false): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got "${v}"`);
    }
    return n;
  };
  const settings: Settings = {
    wrk: {
      threads: 1,
      connections: num('connections', values.connections, 1, 10_000),
      // Rounds add up (3 × 4 targets), so a round is 5 s; a single --only scenario keeps 10 s runs.
      durationS: num('duration', values.duration ?? (values.only === undefined ? '5' : '10'), 1, 120),
      warmupS: num('warmup', values.warmup, 0, 30),
      rounds: num('rounds', values.rounds, 1, 20, true),
    },
    fixedRate: {
      rate: num('rate', values.rate, 1, 100_000),
      connections: num('fixed-connections', values['fixed-connections'], 1, 1000),
      durationS: num('fixed-duration', values['fixed-duration'], 1, 120),
      warmupS: num('warmup', values.warmup, 0, 30),
    },
    bodyBytes: Buffer.byteLength(BODY_1KB),
  };
  const p99Rounds = num('p99-rounds', values['p99-rounds'], 0, 20, true);
  if (p99Rounds > 0) {
    Object.assign(settings, { p99Rounds: { rounds: p99Rounds, durationS: num('p99-duration', values['p99-duration'], 1, 60), warmupS: 1 } });
  }
  if (!values['no-extra']) {
    const extraDurationS = num('extra-duration', values['extra-duration'], 1, 120);
    const extraWarmupS = num('extra-warmup', values['extra-warmup'], 0, 30);
    Object.assign(settings, {
      extra: {
        rate: settings.fixedRate.rate,
        connections: settings.fixedRate.connections,
        durationS: extraDurationS,
        warmupS: extraWarmupS,
        scenarios: LATENCY_SCENARIOS,
      },
      tcp: {
        connections: num('tcp-connections', values['tcp-connections'], 1, 256),
        chunkBytes: defaultEchoOptions.chunkBytes,
        windowBytes: defaultEchoOptions.windowBytes,
        durationS: extraDurationS,
        warmupS: extraWarmupS,
      },
      newConnections: {
        concurrency: num('new-connections', values['new-connections'], 1, 256, true),
        durationS: extraDurationS,
        warmupS: extraWarmupS,
      },
    } satisfies Partial<Settings>);
  }
  const wanted = values.targets
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  for (const t of wanted) if (!ORDER.includes(t as TargetName)) throw new Error(`--targets: unknown target "${t}" (known: ${ORDER.join(', ')})`);
  if (values.baseline !== undefined && values['baseline-ref'] !== undefined) throw new Error('--baseline and --baseline-ref: give one of them');
  const withBaseline = values.baseline !== undefined || values['baseline-ref'] !== undefined;
  if (withBaseline && values.only !== undefined && values.only !== 'rss' && values.only !== 'ingress-tls') {
    throw new Error('--baseline is for the full run (max rate and 1KB fixed rate), --only rss and --only ingress-tls, not other --only scenarios');
  }
  if (wanted.includes('baseline') && !withBaseline) throw new Error('--targets baseline needs --baseline DIR or --baseline-ref REF');
  if (withBaseline && !wanted.includes('baseline')) wanted.push('baseline');
  const order = ORDER.filter((t) => wanted.includes(t));
  // Checked before anything is started: a DIR that is not built fails in a second, not after the setup.
  let baseline: Baseline | undefined = values.baseline !== undefined ? existingBaseline(values.baseline, repoRoot) : undefined;
  let removeBaseline = (): void => {}; // --baseline-ref's worktree, once it exists

  if (values['cpu-prof'] !== undefined) {
    profileProxiesInto(values['cpu-prof']);
    log(`CPU profiles of the Trellis proxies go to ${path.resolve(values['cpu-prof'])}`);
  }
  const bins = binaries(!values['no-install']);
  if (!bins.nginx || !bins.wrk) {
    log(`cannot run: ${bins.missing.join(', ')} not found (run scripts/install-bench-deps.sh as root)`);
    return 1;
  }

  const procs = new Processes();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'trellis-bench-'));
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await procs.stopAll();
    removeBaseline(); // before the folder it lives in goes
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', () => {
    procs.killAllSync();
    removeBaseline();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping everything the bench started`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const routeRounds = num('route-rounds', values['route-rounds'], 1, 10);
  const balancingLoad = {
    rate: num('balancing-rate', values['balancing-rate'], 1, 100_000),
    connections: num('balancing-connections', values['balancing-connections'], 1, 1000),
  };
  const environment = (): Record<string, unknown> => ({ cores: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', node: process.version });
  // A single scenario on its own (`--only`): it runs, prints and saves just that.
  const scenarios: Record<string, () => Promise<{ text: string; settings: Record<string, unknown>; result: Record<string, unknown> }>> = {
    balancing: async () => {
      const balancing = await runBalancing({ procs, repoRoot, dir, ...balancingLoad, durationS: settings.wrk.durationS, warmupS: settings.wrk.warmupS, log });
      return {
        text: formatBalancing(balancing),
        settings: { durationS: settings.wrk.durationS, warmupS: settings.wrk.warmupS, ...balancingLoad },
        result: { balancing },
      };
    },
    rss: async () => {
      const builds = new Map([['trellis', repoRoot]]);
      if (values['baseline-ref'] !== undefined) {
        baseline = await makeBaseline({ procs, repoRoot, runDir: dir, ref: values['baseline-ref'], log, own: (remove) => (removeBaseline = remove) });
      }
      if (baseline) builds.set('baseline', baseline.info.dir);
      const o = {
        rounds: settings.wrk.rounds ?? 3,
        requests: num('rss-requests', values['rss-requests'], 0, 1_000_000, true),
        settleS: num('rss-settle', values['rss-settle'], 0, 60),
      };
      const rss = await runRss({ procs, dir, builds, ...o, log });
      return { text: formatRss(rss), settings: { ...o, ...(baseline ? { baseline: baseline.info } : {}) }, result: { rss } };
    },
    scale: async () => {
      const sizes = values['scale-proxies'].split(',').map((v) => num('scale-proxies', v.trim(), 1, 5000, true));
      const scaleSettings = {
        services: num('scale-services', values['scale-services'], 2, 1000, true),
        calls: num('scale-calls', values['scale-calls'], 1, 100, true),
        quietMs: 3000,
        phaseTimeoutMs: num('scale-timeout', values['scale-timeout'], 10, 3600) * 1000,
      };
      const results: ScaleResult[] = [];
      for (const proxies of sizes) results.push(await runScale({ repoRoot, dir, proxies, ...scaleSettings, log }));
      return { text: `${formatScale(results)}\n`, settings: { sizes, ...scaleSettings }, result: { scale: results } };
    },
    bigmesh: async () => {
      const o = {
        sizes: values['bigmesh-sizes'].split(',').map((v) => num('bigmesh-sizes', v.trim(), 5, 2000, true)),
        calls: 5,
        rounds: settings.wrk.rounds ?? 3,
        settleS: num('rss-settle', values['rss-settle'], 0, 60),
      };
      const bigmesh = await runBigMesh({ procs, repoRoot, dir, ...o, log });
      return { text: formatBigMesh(bigmesh), settings: o, result: { bigmesh } };
    },
    'ingress-tls': async () => {
      if (values['baseline-ref'] !== undefined) {
        baseline = await makeBaseline({ procs, repoRoot, runDir: dir, ref: values['baseline-ref'], log, own: (remove) => (removeBaseline = remove) });
      }
      const upstream = await startUpstream(procs, bins, dir);
      try {
        const ingressTls = await runIngressTls({
          procs,
          bins: bins as Binaries,
          repoRoot,
          ...(baseline ? { baselineRoot: baseline.info.dir } : {}),
          relay: values.relay,
          dir,
          rounds: settings.wrk.rounds ?? 3,
          upstreamPort: upstream.port,
          connections: settings.wrk.connections,
          durationS: settings.wrk.durationS,
          warmupS: settings.wrk.warmupS,
          newConnections: num('new-connections', values['new-connections'], 1, 256, true),
          log,
        });
        return {
          text: formatIngressTls(ingressTls),
          settings: { ...settings.wrk, ...(baseline ? { baseline: baseline.info } : {}) },
          result: { ingressTls },
        };
      } finally {
        await upstream.stop();
      }
    },
    // Root, ip, nft and setpriv: it runs `trellis up --isolate` (bench/interception.ts).
    interception: async () => {
      const rounds = 3;
      const interception = await runInterception({
        repoRoot,
        dir,
        wrk: bins.wrk,
        connections: settings.wrk.connections,
        durationS: settings.wrk.durationS,
        warmupS: settings.wrk.warmupS,
        rounds,
        log,
      });
      return { text: formatInterception(interception), settings: { ...settings.wrk, rounds }, result: { interception } };
    },
    tracing: async () => {
      const upstream = await startUpstream(procs, bins, dir);
      try {
        const rounds = settings.wrk.rounds ?? 3;
        const tracing = await runTracing({
          procs,
          repoRoot,
          dir,
          upstreamPort: upstream.port,
          wrk: bins.wrk,
          connections: settings.wrk.connections,
          durationS: settings.wrk.durationS,
          warmupS: settings.wrk.warmupS,
          rounds,
          log,
        });
        return { text: formatTracing(tracing), settings: { ...settings.wrk }, result: { tracing } };
      } finally {
        await upstream.stop();
      }
    },
    scrape: async () => {
      const upstream = await startUpstream(procs, bins, dir);
      try {
        const o = {
          routes: num('scrape-routes', values['scrape-routes'], 1, 1000, true),
          scrapes: num('scrapes', values.scrapes, 10, 100_000, true),
          connections: settings.wrk.connections,
        };
        const scrape = await runScrape({ procs, repoRoot, dir, upstreamPort: upstream.port, ...(bins.wrk ? { wrk: bins.wrk } : {}), ...o, log });
        return { text: formatScrape(scrape), settings: o, result: { scrape } };
      } finally {
        await upstream.stop();
      }
    },
    'route-rules': async () => {
      const upstream = await startUpstream(procs, bins, dir);
      const routeRules = await runRouteRules({
        procs,
        repoRoot,
        dir,
        upstreamPort: upstream.port,
        wrk: bins.wrk,
        connections: settings.wrk.connections,
        durationS: settings.wrk.durationS,
        warmupS: settings.wrk.warmupS,
        rounds: routeRounds,
        log,
      });
      await upstream.stop();
      return { text: formatRouteRules(routeRules), settings: { ...settings.wrk }, result: { routeRules } };
    },
  };
  if (values.only !== undefined) {
    const scenario = scenarios[values.only];
    if (!scenario) throw new Error(`--only: unknown scenario "${values.only}" (known: ${Object.keys(scenarios).join(', ')})`);
    try {
      const { text, settings: used, result } = await scenario();
      process.stdout.write(`\n${text}`);
      if (!values['no-save']) saveResult({ time: new Date().toISOString(), environment: environment(), settings: used, ...result });
    } catch (e) {
      log(`failed: ${(e as Error).message}`);
      await cleanup();
      return 1;
    }
    await cleanup();
    return 0;
  }

  if (values['baseline-ref'] !== undefined) {
    try {
      baseline = await makeBaseline({ procs, repoRoot, runDir: dir, ref: values['baseline-ref'], log, own: (remove) => (removeBaseline = remove) });
    } catch (e) {
      log(`failed: ${(e as Error).message}`);
      await cleanup();
      return 1;
    }
  }
  if (baseline) log(`baseline: ${baseline.info.dir}${baseline.info.commit ? ` (commit ${baseline.info.commit.slice(0, 12)})` : ''}`);

  const idleBefore = sampleCpu(procs.groups);
  await new Promise((r) => setTimeout(r, 1000));
  const backgroundCores = cpuBetween(idleBefore, sampleCpu(procs.groups))?.foreignCores;
  if (backgroundCores !== undefined) log(`background load: ${backgroundCores.toFixed(2)} cores busy with other processes`);

  const results: TargetResult[] = [];
  const tcpResults: TcpResult[] = [];
  const newConnectionResults: NewConnectionTargetResult[] = [];
  let routeRules: RouteRulesResult | undefined;
  let balancing: BalancingResult | undefined;
  try {
    log(`upstream: nginx on loopback, ${settings.bodyBytes}-byte body`);
    const upstream = await startUpstream(procs, bins, dir);
    const check = await probe(upstream.url);
    if (!('status' in check) || check.status !== 200 || check.bytes !== settings.bodyBytes) {
      throw new Error(`the upstream answers ${JSON.stringify(check)}, expected 200 with ${settings.bodyBytes} bytes`);
    }
    const postBody = Buffer.from(makeBody(LATENCY_SCENARIO_SPECS.post1k.requestBytes));
    if (settings.extra) {
      for (const id of settings.extra.scenarios) {
        const sp = LATENCY_SCENARIO_SPECS[id];
        const r = await probe(new URL(sp.path, upstream.url).href, 1000, sp.method === 'POST' ? { method: 'POST', body: postBody } : {});
        if (!('status' in r) || r.status !== 200 || r.bytes !== sp.responseBytes) {
          throw new Error(`the upstream answers ${sp.method} ${sp.path} with ${JSON.stringify(r)}, expected 200 with ${sp.responseBytes} bytes`);
        }
      }
    }

    // One PKI for the TLS peers, made when the first of them starts.
    let material: TlsMaterial | undefined;
    const tls = (): TlsMaterial => {
      if (!material) {
        const tdir = path.join(dir, 'tls');
        mkdirSync(tdir, { recursive: true });
        material = makeTlsMaterial(tdir);
      }
      return material;
    };
    const starters: Record<TargetName, () => Promise<Target>> = {
      direct: async () => ({ name: 'direct', url: upstream.url, stop: async () => {} }),
      trellis: () => startTrellisPair(procs, repoRoot, dir, upstream.port),
      'trellis-plain': () => startTrellisPair(procs, repoRoot, dir, upstream.port, 'http', PLAINTEXT_VARIANT),
      'nginx-tls': () => startNginxTlsPair(procs, bins, dir, upstream.port, tls()),
      'haproxy-tls': async () => {
        if (!bins.haproxy) throw new Error('haproxy not found');
        return startHaproxyTlsPair(procs, bins, dir, upstream.port, tls());
      },
      baseline: async () => {
        if (!baseline) throw new Error('no --baseline');
        // Its own folder for its mesh file and logs, beside this checkout's pair's.
        const bdir = path.join(dir, 'baseline');
        mkdirSync(bdir, { recursive: true });
        return startTrellisPair(procs, baseline.info.dir, bdir, upstream.port);
      },
      nginx: () => startNginxPair(procs, bins, dir, upstream.port),
      haproxy: async () => {
        if (!bins.haproxy) throw new Error('haproxy not found');
        return startHaproxyPair(procs, bins, dir, upstream.port);
      },
    };

    // Every target is started first and kept running, so the max-rate rounds can visit them in turn.
    const running: Running[] = [];
    for (const name of order) {
      const target = await startChecked(name, starters[name], settings.bodyBytes);
      const result: Mutable<TargetResult> = typeof target === 'string' ? { name, path: PATHS[name], unavailable: target } : { name, path: PATHS[name] };
      results.push(result);
      if (typeof target !== 'string') running.push({ target, result, pgids: (target.processes ?? []).flatMap((p) => p.managed.child.pid ?? []), rounds: [] });
    }
    await maxRateRounds(running, settings.wrk, bins.wrk, procs);
    if (settings.p99Rounds) await pairedP99Rounds(running, settings.fixedRate, settings.p99Rounds);
    for (const t of running) {
      await latencyScenarios(t, { procs, settings, postBody });
      await t.target.stop();
    }
    if (settings.extra && order.includes('trellis')) {
      try {
        routeRules = await runRouteRules({
          procs,
          repoRoot,
          dir,
          upstreamPort: upstream.port,
          wrk: bins.wrk,
          connections: settings.wrk.connections,
          durationS: settings.extra.durationS,
          warmupS: settings.extra.warmupS,
          rounds: routeRounds,
          log,
        });
      } catch (e) {
        log(`route rules: unavailable: ${(e as Error).message}`);
      }
      try {
        balancing = await runBalancing({ procs, repoRoot, dir, ...balancingLoad, durationS: settings.extra.durationS, warmupS: settings.extra.warmupS, log });
      } catch (e) {
        log(`balancing: unavailable: ${(e as Error).message}`);
      }
    }
    await upstream.stop();

    const tcpOrder = order.filter((n): n is TcpTargetName => runsExtraScenarios(n));
    if (settings.tcp) {
      log(`tcp echo: echo server (node) on loopback`);
      let echo: Awaited<ReturnType<typeof startEchoServer>> | undefined;
      try {
        echo = await startEchoServer(procs, repoRoot, dir);
      } catch (e) {
        const reason = `the echo server did not start: ${(e as Error).message.replace(/\s+/g, ' ').slice(0, 300)}`;
        log(`tcp echo: ${reason}`);
        for (const name of tcpOrder) tcpResults.push({ name, path: TCP_PATHS[name], unavailable: reason });
      }
      if (echo) await runTcpScenario(echo);
    }

    async function runTcpScenario(echo: Target & { port: number }): Promise<void> {
      const t = settings.tcp!;
      const tcpStarters: Record<TcpTargetName, () => Promise<Target>> = {
        direct: async () => ({ name: 'direct', url: echo.url, stop: async () => {} }),
        trellis: () => startTrellisPair(procs, repoRoot, dir, echo.port, 'tcp'),
        nginx: () => startNginxTcpPair(procs, bins, dir, echo.port),
        haproxy: async () => {
          if (!bins.haproxy) throw new Error('haproxy not found');
          return startHaproxyTcpPair(procs, bins, dir, echo.port);
        },
      };
      for (const name of tcpOrder) {
        log(`${name}: tcp echo: starting (${TCP_PATHS[name]})`);
        let target: Target;
        try {
          target = await tcpStarters[name]();
        } catch (e) {
          const reason = (e as Error).message.replace(/\s+/g, ' ').slice(0, 300);
          log(`${name}: tcp echo unavailable: ${reason}`);
          tcpResults.push({ name, path: TCP_PATHS[name], unavailable: reason });
          continue;
        }
        const r: Mutable<TcpResult> = { name, path: TCP_PATHS[name] };
        try {
          log(`${name}: tcp echo, ${t.connections} connections × ${t.chunkBytes / 1024}KB writes, ${t.warmupS}s warm-up + ${t.durationS}s`);
          const before = sampleCpu(procs.groups);
          r.echo = await runEcho({
            port: tcpPort(target.url),
            connections: t.connections,
            chunkBytes: t.chunkBytes,
            windowBytes: t.windowBytes,
            durationMs: t.durationS * 1000,
            warmupMs: t.warmupS * 1000,
          });
          r.cpu = cpuBetween(before, sampleCpu(procs.groups));
        } catch (e) {
          r.error = (e as Error).message;
        }
        tcpResults.push(r);
        await target.stop();
      }
      if (settings.newConnections) await runNewConnectionScenario(echo, settings.newConnections);
      await echo.stop();
    }

    /**
     * The new-connection (handshake) rate: each target its own TCP pair in front of the
     * echo server, one at a time; every client connection is a new connection between
     * the two proxies, so with TLS between them every one is a handshake.
     */
    async function runNewConnectionScenario(echo: Target & { port: number }, n: NonNullable<Settings['newConnections']>): Promise<void> {
      const names = (Object.keys(NEW_CONNECTION_PATHS) as NewConnectionTarget[]).filter((name) => order.includes(name) || name === 'direct');
      const starters: Record<NewConnectionTarget, () => Promise<Target>> = {
        direct: async () => ({ name: 'direct', url: echo.url, stop: async () => {} }),
        trellis: () => startTrellisPair(procs, repoRoot, dir, echo.port, 'tcp'),
        'trellis-plain': () => startTrellisPair(procs, repoRoot, dir, echo.port, 'tcp', PLAINTEXT_VARIANT),
        'nginx-tls': () => startNginxTlsTcpPair(procs, bins, dir, echo.port, tls()),
        'haproxy-tls': async () => {
          if (!bins.haproxy) throw new Error('haproxy not found');
          return startHaproxyTlsTcpPair(procs, bins, dir, echo.port, tls());
        },
      };
      for (const name of names) {
        log(`${name}: new connections: starting (${NEW_CONNECTION_PATHS[name]})`);
        let target: Target;
        try {
          target = await starters[name]();
        } catch (e) {
          const reason = (e as Error).message.replace(/\s+/g, ' ').slice(0, 300);
          log(`${name}: new connections unavailable: ${reason}`);
          newConnectionResults.push({ name, path: NEW_CONNECTION_PATHS[name], unavailable: reason });
          continue;
        }
        const r: Mutable<NewConnectionTargetResult> = { name, path: NEW_CONNECTION_PATHS[name] };
        try {
          log(`${name}: new connections, ${n.concurrency} at once, ${n.warmupS}s warm-up + ${n.durationS}s`);
          const before = sampleCpu(procs.groups);
          r.result = await runNewConnections({
            port: tcpPort(target.url),
            concurrency: n.concurrency,
            durationMs: n.durationS * 1000,
            warmupMs: n.warmupS * 1000,
          });
          r.cpu = cpuBetween(before, sampleCpu(procs.groups));
        } catch (e) {
          r.error = (e as Error).message;
        }
        newConnectionResults.push(r);
        await target.stop();
      }
    }
  } catch (e) {
    log(`failed: ${(e as Error).message}`);
    await cleanup();
    return 1;
  }
  await cleanup();

  const trellisVersion = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  const { goals, warnings } = evaluate(results, settings, tcpResults, newConnectionResults);
  const now = new Date();
  const report: BenchReport = {
    time: now.toISOString(),
    environment: {
      cores: os.cpus().length,
      cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      node: process.version,
      nginx: versionOf(bins.nginx, ['-v']).replace(/^nginx version:\s*/, ''),
      haproxy: bins.haproxy ? versionOf(bins.haproxy, ['-v']).replace(/\s+-\s+https?:.*$/, '') : 'not installed',
      wrk: versionOf(bins.wrk, ['-v'])
        .replace(/\s+\[.*$/, '')
        .replace(/^wrk\s+/, 'wrk '),
      trellis: trellisVersion,
      ...(backgroundCores !== undefined ? { backgroundCores } : {}),
    },
    settings,
    results,
    maxRateVsNginx: maxRateRatios(results),
    ...(baseline ? { baseline: baseline.info, maxRateVsBaseline: maxRateVsBaseline(results) } : {}),
    ...(settings.tcp ? { tcp: tcpResults } : {}),
    ...(settings.newConnections ? { newConnections: newConnectionResults } : {}),
    ...(routeRules ? { routeRules } : {}),
    ...(balancing ? { balancing } : {}),
    goals,
    warnings,
  };
  process.stdout.write(`\n${formatReport(report)}`);
  if (balancing) process.stdout.write(`\n${formatBalancing(balancing)}`);
  if (!values['no-save']) saveResult(report);
  return 0;
}

/** Writes bench/results/<time>.json and says where. */
function saveResult(report: { readonly time: string; readonly [key: string]: unknown } | BenchReport): void {
  const outDir = path.join(repoRoot, 'bench', 'results');
  if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `${isoBasic(new Date(report.time))}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), file) || file}\n`);
}

try {
  process.exitCode = await main();
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
