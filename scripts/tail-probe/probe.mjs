#!/usr/bin/env node
// Where a Trellis pair's tail latency comes from (issue 13): interleaved fixed-rate runs
// (1,000 rps by default) against several Trellis pairs started as the bench starts them
// (bench/targets.ts), each proxy preloaded with monitor.cjs, which counts GC pauses and
// (--hooks) event-loop callbacks over 0.5 ms by what ran them. Per run and per proxy, all
// per 1,000 requests: GC count, pauses > 0.5 / > 1 ms, GC ms, major GCs, callbacks
// > 0.5 ms of wall time and of CPU, CPU ms (/proc schedstat) and the time the proxy waited
// for a core (runqueue), context switches; RSS. Latency (p50/p99/p99.9) is printed
// beside them, but on a loaded machine only the counts compare.
//
// A pair is `label=ROOT:VARIANT[:SEMI[:EXTRA]]`: ROOT `tail` (this checkout) or `base`
// (--base DIR, e.g. a worktree of main, built) or a path; VARIANT mtls | plain; SEMI a
// --max-semi-space-size in MB replacing the proxies' own; EXTRA more node flags ('+' for
// spaces), e.g. `s2=tail:mtls:2`, `st=base:mtls::--single-threaded-gc`.
//   npm run build && node scripts/tail-probe/probe.mjs --base /work/wt-base --pairs 'a=base:mtls,b=tail:mtls' --rounds 3 --dur 10 [--hooks] [--path /10k]
// --strace counts each proxy's syscalls over a run (strace -c); --heapprof DIR keeps an
// allocation sampling profile of each proxy's measured window (heap-summary.mjs reads it).
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { readFileSync, readdirSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
const { values } = parseArgs({
  allowNegative: true,
  options: {
    base: { type: 'string' },
    pairs: { type: 'string', default: 'base:mtls,tail:mtls' }, // name=root:variant[:semi][:extra]
    rounds: { type: 'string', default: '3' },
    dur: { type: 'string', default: '10' },
    rate: { type: 'string', default: '1000' },
    hooks: { type: 'boolean', default: false },
    strace: { type: 'boolean', default: false },
    heapprof: { type: 'string' },
    direct: { type: 'boolean', default: true },
    path: { type: 'string', default: '/' },
  },
});
const here = path.dirname(fileURLToPath(import.meta.url));
const roots = { base: values.base, tail: path.resolve(here, '..', '..') };
const T = await import(`${roots.tail}/dist/bench/targets.js`);
const { runFixedRate } = await import(`${roots.tail}/dist/bench/fixed-rate.js`);
const procs = new T.Processes();
process.on('exit', () => procs.killAllSync());
process.on('SIGINT', () => process.exit(1));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tail-exp-'));
const bins = { nginx: T.findBinary('nginx'), haproxy: T.findBinary('haproxy'), wrk: T.findBinary('wrk') };
const up = await T.startUpstream(procs, bins, tmp);
const plainYaml = `apiVersion: trellis.dev/v1alpha1\nkind: PeerAuthentication\nmetadata:\n  name: plaintext\nspec:\n  mtls:\n    mode: DISABLE\n`;
const realExec = process.execPath;
const pairs = [];
for (const spec of values.pairs.split(',')) {
  const eq = spec.indexOf('=');
  const [label, rest] = eq > 0 ? [spec.slice(0, eq), spec.slice(eq + 1)] : [spec, spec];
  const [rootName, variant, semi, extra] = rest.split(':');
  const mon = path.join(tmp, `mon-${label}`);
  mkdirSync(mon);
  process.env.TAIL_MON_DIR = mon;
  process.env.TAIL_MON_HOOKS = values.hooks ? '1' : '0';
  process.env.TAIL_MON_HEAPPROF = values.heapprof ? '1' : '0';
  process.env.NODE_OPTIONS = `--require ${path.join(here, 'monitor.cjs')}`;
  process.env.TAIL_SEMI = semi ?? '';
  process.env.TAIL_EXTRA = extra ? extra.replace(/\+/g, ' ') : '';
  process.execPath = path.join(here, 'node-wrap.sh');
  const dir = path.join(tmp, label);
  mkdirSync(dir);
  const t = await T.startTrellisPair(
    procs,
    roots[rootName] ?? rootName,
    dir,
    up.port,
    'http',
    variant === 'plain' ? { name: 'plain', yaml: plainYaml } : undefined,
  );
  process.execPath = realExec;
  delete process.env.NODE_OPTIONS;
  pairs.push({ label, url: t.url.replace(/\/$/, values.path), mon, pids: t.processes.map((p) => ({ role: p.role, pid: p.managed.child.pid })) });
}
if (values.direct) pairs.unshift({ label: 'direct', url: up.url.replace(/\/$/, values.path), mon: undefined, pids: [] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function snap(p) {
  for (const { pid } of p.pids)
    try {
      process.kill(pid, 'SIGUSR2');
    } catch {}
  await sleep(150);
  const s = { procs: {} };
  for (const { role, pid } of p.pids) {
    const f = p.mon && readdirSync(p.mon).find((n) => n.endsWith(`-${pid}.json`));
    const m = f ? JSON.parse(readFileSync(path.join(p.mon, f), 'utf8')) : undefined;
    const ss = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    s.procs[role] = { m, runNs: ss[0], waitNs: ss[1] };
  }
  const me = readFileSync(`/proc/self/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
  s.self = { runNs: me[0], waitNs: me[1] };
  return s;
}
const R = Number(values.rounds),
  rate = Number(values.rate),
  dur = Number(values.dur) * 1000;
const rows = [];
const load = () => os.loadavg()[0].toFixed(2);
for (let r = 0; r < R; r++) {
  const order = r % 2 === 0 ? pairs : [...pairs].reverse();
  for (const p of order) {
    await runFixedRate({ url: p.url, rate, durationMs: 2000, warmupMs: 0, connections: 20, timeoutMs: 5000 });
    await sleep(600);
    const a = await snap(p);
    const { spawn } = await import('node:child_process');
    const st = values.strace
      ? p.pids.map(({ role, pid }) => {
          const c = spawn('strace', ['-c', '-f', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
          let out = '';
          c.stderr.on('data', (d) => (out += d));
          return { role, c, done: new Promise((r) => c.on('exit', () => r(out))) };
        })
      : [];
    if (st.length) await sleep(500);
    const res = await runFixedRate({ url: p.url, rate, durationMs: dur, warmupMs: 300, connections: 20, timeoutMs: 5000 });
    for (const s of st) {
      s.c.kill('SIGINT');
      const out = await s.done;
      console.log(`== strace ${p.label} ${s.role} completed=${res.completed}`);
      console.log(
        out
          .split('\n')
          .filter((l) => /calls|total|^\s*\d/.test(l))
          .slice(0, 14)
          .join('\n'),
      );
    }
    await sleep(600);
    const b = await snap(p);
    const n = res.completed / 1000;
    const row = {
      round: r,
      label: p.label,
      load: load(),
      p50: res.latencyUs.p50 / 1000,
      p99: res.latencyUs.p99 / 1000,
      p999: res.latencyUs.p999 / 1000,
      lag99: res.sendLagUs.p99 / 1000,
      err: res.errors + res.timeouts,
    };
    row.selfWaitMsPerK = (b.self.waitNs - a.self.waitNs) / 1e6 / n;
    for (const role of ['outbound', 'inbound']) {
      const A = a.procs[role],
        B = b.procs[role];
      if (!A) continue;
      const k = role[0];
      row[`${k}.waitMs/k`] = (B.waitNs - A.waitNs) / 1e6 / n;
      row[`${k}.cpuMs/k`] = (B.runNs - A.runNs) / 1e6 / n;
      if (A.m && B.m) {
        row[`${k}.gc/k`] = 0;
        for (const g of Object.keys(B.m.gc)) row[`${k}.gc/k`] += (B.m.gc[g].n - (A.m.gc[g]?.n ?? 0)) / n;
        row[`${k}.gc>.5/k`] = (B.m.gcOver05 - A.m.gcOver05) / n;
        row[`${k}.gc>1/k`] = (B.m.gcOver1 - A.m.gcOver1) / n;
        row[`${k}.gcMs/k`] = (B.m.gcMs - A.m.gcMs) / n;
        row[`${k}.major`] = (B.m.gc.major?.n ?? 0) - (A.m.gc.major?.n ?? 0);
        row[`${k}.ivcsw/k`] = (B.m.ivcsw - A.m.ivcsw) / n;
        row[`${k}.vcsw/k`] = (B.m.vcsw - A.m.vcsw) / n;
        row[`${k}.rssMB`] = B.m.rss / 1048576;
        if (values.hooks) {
          row[`${k}.cb>.5/k`] = (B.m.cbOver05 - A.m.cbOver05) / n;
          row[`${k}.cb>1/k`] = (B.m.cbOver1 - A.m.cbOver1) / n;
          row[`${k}.cbs/req`] = (B.m.cbs - A.m.cbs) / n / 1000;
          row[`${k}.cpu>.5/k`] = ((B.m.cpuOver05 ?? 0) - (A.m.cpuOver05 ?? 0)) / n;
          const d = {};
          for (const [ty, v] of Object.entries(B.m.cbByType)) {
            const a0 = A.m.cbByType[ty] ?? { n: 0, ms: 0, cpu: 0, cpuN: 0 };
            const dn = v.n - a0.n;
            if (dn) d[ty] = `n${dn} wall${((v.ms - a0.ms) / dn).toFixed(2)} cpu${((v.cpu - a0.cpu) / dn).toFixed(2)} cpuN${v.cpuN - a0.cpuN}`;
          }
          row[`${k}.longTypes`] = JSON.stringify(d);
        }
      }
    }
    rows.push(row);
    console.log(JSON.stringify(Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'number' ? Math.round(v * 1000) / 1000 : v]))));
  }
}
// summary: median per label
const labels = [...new Set(rows.map((r) => r.label))];
const med = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
console.log('--- medians');
for (const l of labels) {
  const rs = rows.filter((r) => r.label === l);
  const keys = Object.keys(rs[0]).filter((k) => typeof rs[0][k] === 'number' && k !== 'round');
  console.log(l, JSON.stringify(Object.fromEntries(keys.map((k) => [k, Math.round(med(rs.map((r) => r[k] ?? 0)) * 1000) / 1000]))));
}
if (values.heapprof) {
  const { cpSync } = await import('node:fs');
  // the proxies write their profiles asynchronously after the second SIGUSR2: wait for them
  for (let i = 0; i < 100; i++) {
    const want = pairs.filter((p) => p.mon).reduce((n, p) => n + p.pids.length, 0);
    const have = pairs.filter((p) => p.mon).reduce((n, p) => n + readdirSync(p.mon).filter((f) => f.endsWith('.heapprofile')).length, 0);
    if (have >= want) break;
    await sleep(200);
  }
  for (const p of pairs) if (p.mon) cpSync(p.mon, path.join(values.heapprof, p.label), { recursive: true });
}
await procs.stopAll();
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
