// `npm run bench`: the same load against the same upstream four ways (direct, a Trellis
// sidecar pair, an nginx pair, an HAProxy pair), all on loopback, in one run; prints
// throughput and latency per target with ratios to nginx, and writes the results as
// JSON to bench/results/<time>.json. See bench/README.md for how to read it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runFixedRate } from './fixed-rate.js';
import { cpuBetween, sampleCpu } from './machine.js';
import { evaluate, formatReport, type BenchReport, type Settings, type TargetName, type TargetResult } from './report.js';
import {
  BODY_1KB,
  Processes,
  findBinary,
  probe,
  startHaproxyPair,
  startNginxPair,
  startTrellisPair,
  startUpstream,
  versionOf,
  type Binaries,
  type Target,
} from './targets.js';
import { runWrk } from './wrk.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const PATHS: Record<TargetName, string> = {
  direct: 'client → upstream',
  trellis: 'client → trellis outbound → trellis inbound → upstream',
  nginx: 'client → nginx → nginx → upstream',
  haproxy: 'client → haproxy → haproxy → upstream',
};
const ORDER: readonly TargetName[] = ['direct', 'trellis', 'nginx', 'haproxy'];

const USAGE = `usage: node dist/bench/run.js [options]
  --duration S            measured seconds per load (default 10)
  --warmup S              warm-up seconds before each load (default 2)
  --connections N         wrk connections (default 50)
  --rate R                fixed-rate requests per second (default 1000)
  --fixed-connections N   fixed-rate keep-alive connections (default 20)
  --targets LIST          comma-separated subset of ${ORDER.join(',')} (default all)
  --no-install            do not run scripts/install-bench-deps.sh when a binary is missing
  --no-save               do not write bench/results/<time>.json
`;

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function binaries(allowInstall: boolean): Binaries & { missing: string[] } {
  const find = (): Partial<Binaries> => ({ nginx: findBinary('nginx'), haproxy: findBinary('haproxy'), wrk: findBinary('wrk') });
  let b = find();
  if ((!b.nginx || !b.haproxy || !b.wrk) && allowInstall) {
    log('nginx, haproxy or wrk is missing: running scripts/install-bench-deps.sh');
    const r = spawnSync('bash', [path.join(repoRoot, 'scripts', 'install-bench-deps.sh')], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
    if (r.status !== 0) log(`install-bench-deps.sh failed (${r.error?.message ?? `exit ${r.status}`})`);
    b = find();
  }
  const missing = (['nginx', 'haproxy', 'wrk'] as const).filter((k) => !b[k]);
  return { nginx: b.nginx ?? '', haproxy: b.haproxy ?? '', wrk: b.wrk ?? '', missing };
}

function isoBasic(d: Date): string {
  // ISO 8601 basic format (20250102T030405Z): sortable, and no ':' in file names.
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '50' },
      rate: { type: 'string', default: '1000' },
      'fixed-connections': { type: 'string', default: '20' },
      targets: { type: 'string', default: ORDER.join(',') },
      'no-install': { type: 'boolean', default: false },
      'no-save': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const num = (name: string, v: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name} must be a number from ${min} to ${max}, got "${v}"`);
    return n;
  };
  const settings: Settings = {
    wrk: {
      threads: 1,
      connections: num('connections', values.connections, 1, 10_000),
      durationS: num('duration', values.duration, 1, 120),
      warmupS: num('warmup', values.warmup, 0, 30),
    },
    fixedRate: {
      rate: num('rate', values.rate, 1, 100_000),
      connections: num('fixed-connections', values['fixed-connections'], 1, 1000),
      durationS: num('duration', values.duration, 1, 120),
      warmupS: num('warmup', values.warmup, 0, 30),
    },
    bodyBytes: Buffer.byteLength(BODY_1KB),
  };
  const wanted = values.targets.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of wanted) if (!ORDER.includes(t as TargetName)) throw new Error(`--targets: unknown target "${t}" (known: ${ORDER.join(', ')})`);
  const order = ORDER.filter((t) => wanted.includes(t));

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
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', () => procs.killAllSync());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping everything the bench started`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const idleBefore = sampleCpu(procs.groups);
  await new Promise((r) => setTimeout(r, 1000));
  const backgroundCores = cpuBetween(idleBefore, sampleCpu(procs.groups))?.foreignCores;
  if (backgroundCores !== undefined) log(`background load: ${backgroundCores.toFixed(2)} cores busy with other processes`);

  const results: TargetResult[] = [];
  try {
    log(`upstream: nginx on loopback, ${settings.bodyBytes}-byte body`);
    const upstream = await startUpstream(procs, bins, dir);
    const check = await probe(upstream.url);
    if (!('status' in check) || check.status !== 200 || check.bytes !== settings.bodyBytes) {
      throw new Error(`the upstream answers ${JSON.stringify(check)}, expected 200 with ${settings.bodyBytes} bytes`);
    }

    const starters: Record<TargetName, () => Promise<Target>> = {
      direct: async () => ({ name: 'direct', url: upstream.url, stop: async () => {} }),
      trellis: () => startTrellisPair(procs, repoRoot, dir, upstream.port),
      nginx: () => startNginxPair(procs, bins, dir, upstream.port),
      haproxy: async () => {
        if (!bins.haproxy) throw new Error('haproxy not found');
        return startHaproxyPair(procs, bins, dir, upstream.port);
      },
    };

    for (const name of order) {
      log(`${name}: starting (${PATHS[name]})`);
      let target: Target;
      try {
        target = await starters[name]();
        const r = await probe(target.url);
        if (!('status' in r) || r.status !== 200 || r.bytes !== settings.bodyBytes) {
          await target.stop();
          throw new Error(`GET / through it answered ${JSON.stringify(r)}, expected 200 with ${settings.bodyBytes} bytes`);
        }
      } catch (e) {
        const reason = (e as Error).message.replace(/\s+/g, ' ').slice(0, 300);
        log(`${name}: unavailable: ${reason}`);
        results.push({ name, path: PATHS[name], unavailable: reason });
        continue;
      }
      const result: { -readonly [K in keyof TargetResult]: TargetResult[K] } = { name, path: PATHS[name] };
      try {
        const w = settings.wrk;
        if (w.warmupS > 0) {
          log(`${name}: max-rate warm-up ${w.warmupS}s`);
          await runWrk({ wrk: bins.wrk, url: target.url, threads: w.threads, connections: w.connections, durationS: w.warmupS, timeoutS: 5 });
        }
        log(`${name}: max-rate ${w.durationS}s (wrk -t${w.threads} -c${w.connections})`);
        const before = sampleCpu(procs.groups);
        result.maxRate = await runWrk({ wrk: bins.wrk, url: target.url, threads: w.threads, connections: w.connections, durationS: w.durationS, timeoutS: 5 });
        result.maxRateCpu = cpuBetween(before, sampleCpu(procs.groups));
      } catch (e) {
        result.maxRateError = (e as Error).message;
      }
      try {
        const f = settings.fixedRate;
        log(`${name}: fixed-rate ${f.rate} rps, ${f.warmupS}s warm-up + ${f.durationS}s`);
        // Sampled over warm-up and measurement both: close enough for a noise indicator.
        const before = sampleCpu(procs.groups);
        result.fixedRate = await runFixedRate({
          url: target.url,
          rate: f.rate,
          durationMs: f.durationS * 1000,
          warmupMs: f.warmupS * 1000,
          connections: f.connections,
          timeoutMs: 5000,
        });
        result.fixedRateCpu = cpuBetween(before, sampleCpu(procs.groups));
      } catch (e) {
        result.fixedRateError = (e as Error).message;
      }
      results.push(result);
      await target.stop();
    }
    await upstream.stop();
  } catch (e) {
    log(`failed: ${(e as Error).message}`);
    await cleanup();
    return 1;
  }
  await cleanup();

  const trellisVersion = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  const { goals, warnings } = evaluate(results, settings);
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
      wrk: versionOf(bins.wrk, ['-v']).replace(/\s+\[.*$/, '').replace(/^wrk\s+/, 'wrk '),
      trellis: trellisVersion,
      ...(backgroundCores !== undefined ? { backgroundCores } : {}),
    },
    settings,
    results,
    goals,
    warnings,
  };
  process.stdout.write(`\n${formatReport(report)}`);
  if (!values['no-save']) {
    const outDir = path.join(repoRoot, 'bench', 'results');
    if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, `${isoBasic(now)}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`\nresults: ${path.relative(process.cwd(), file) || file}\n`);
  }
  return 0;
}

try {
  process.exitCode = await main();
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
