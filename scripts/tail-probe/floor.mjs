#!/usr/bin/env node
// The floor under a Trellis pair's added p99 (issue 13): how much p99 a pair of bare
// Node.js byte relays adds at the same fixed rate, with TLS between them and without, in
// interleaved rounds with direct and the Trellis pairs (mTLS and plaintext). A relay pair
// has no HTTP, no pool, no layers, no telemetry: client → relay A → (TLS or not) → relay B
// → nginx, one upstream connection per client connection, bytes copied as they come.
// What it adds over direct is what Node's sockets, TLSWrap, its event loop and the
// machine's scheduling of two more processes cost; what Trellis adds beyond it is its own.
// nginx's plaintext pair runs in the same rounds: two more processes, written in C.
//
//   npm run build && node scripts/tail-probe/floor.mjs [--rounds 5] [--dur 5] [--rate 1000]
//
// Per round every target runs once (starting one place further along each round), and a
// target's added p99 is the median over rounds of its p99 minus direct's in that round.
// Loopback only; everything it starts is stopped when it exits.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const self = fileURLToPath(import.meta.url);

// A relay process: `floor.mjs --relay MODE UPSTREAM_PORT CERT_DIR`; prints its port.
if (process.argv[2] === '--relay') {
  const [, , , mode, to, dir] = process.argv;
  const f = (n) => readFileSync(path.join(dir, n));
  const relay = (a, b) => {
    a.on('data', (d) => {
      if (!b.write(d)) {
        a.pause();
        b.once('drain', () => a.resume());
      }
    });
    a.on('close', () => b.destroy());
    a.on('error', () => {});
  };
  const out = () =>
    mode === 'out-tls'
      ? tls.connect({ port: Number(to), host: '127.0.0.1', cert: f('client.crt'), key: f('client.key'), ca: f('ca.crt'), servername: 'inbound.bench.test' })
      : net.connect({ port: Number(to), host: '127.0.0.1' });
  const onConnection = (c) => {
    c.setNoDelay(true);
    const u = out();
    u.setNoDelay(true);
    relay(c, u);
    relay(u, c);
  };
  const server =
    mode === 'in-tls'
      ? tls.createServer({ cert: f('server.crt'), key: f('server.key'), ca: f('ca.crt'), requestCert: true, rejectUnauthorized: true }, onConnection)
      : net.createServer(onConnection);
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
  process.on('SIGTERM', () => process.exit(0));
} else {
  const { values } = parseArgs({
    options: { rounds: { type: 'string', default: '5' }, dur: { type: 'string', default: '5' }, rate: { type: 'string', default: '1000' } },
  });
  const root = path.resolve(path.dirname(self), '..', '..');
  const T = await import(`${root}/dist/bench/targets.js`);
  const { runFixedRate } = await import(`${root}/dist/bench/fixed-rate.js`);
  const { makeTlsMaterial } = await import(`${root}/dist/bench/tls-peers.js`);
  const procs = new T.Processes();
  const relays = [];
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tail-floor-'));
  process.on('exit', () => {
    procs.killAllSync();
    for (const r of relays) r.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });
  process.on('SIGINT', () => process.exit(1));
  process.on('SIGTERM', () => process.exit(1));
  const up = await T.startUpstream(procs, { nginx: T.findBinary('nginx') }, tmp);
  const tdir = path.join(tmp, 'tls');
  mkdirSync(tdir);
  const m = makeTlsMaterial(tdir);
  const certs = path.join(tmp, 'certs');
  mkdirSync(certs);
  for (const [k, n] of [
    ['ca', 'ca.crt'],
    ['serverCert', 'server.crt'],
    ['serverKey', 'server.key'],
    ['clientCert', 'client.crt'],
    ['clientKey', 'client.key'],
  ])
    copyFileSync(m[k], path.join(certs, n));
  const startRelay = (mode, to) =>
    new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [self, '--relay', mode, String(to), certs], { stdio: ['ignore', 'pipe', 'inherit'] });
      relays.push(c);
      c.stdout.once('data', (d) => resolve(Number(String(d).trim())));
      c.once('exit', (code) => reject(new Error(`a relay exited (${code})`)));
    });
  const relayPair = async (withTls) => {
    const b = await startRelay(withTls ? 'in-tls' : 'plain', up.port);
    const a = await startRelay(withTls ? 'out-tls' : 'plain', b);
    return `http://127.0.0.1:${a}/`;
  };
  const plainYaml = 'apiVersion: trellis.dev/v1alpha1\nkind: PeerAuthentication\nmetadata:\n  name: plaintext\nspec:\n  mtls:\n    mode: DISABLE\n';
  const targets = [
    { label: 'direct', url: up.url },
    // nginx's pair (HTTP, keep-alive to the upstream): what two proxies written in C add here
    { label: 'nginx', url: (await T.startNginxPair(procs, { nginx: T.findBinary('nginx') }, tmp, up.port)).url },
    { label: 'relay-plain', url: await relayPair(false) },
    { label: 'relay-tls', url: await relayPair(true) },
  ];
  for (const v of ['mtls', 'plain']) {
    const d = path.join(tmp, v);
    mkdirSync(d);
    const t = await T.startTrellisPair(procs, root, d, up.port, 'http', v === 'plain' ? { name: 'plain', yaml: plainYaml } : undefined);
    targets.push({ label: `trellis-${v}`, url: t.url });
  }
  const rounds = Number(values.rounds);
  const rate = Number(values.rate);
  const load = (url, durationMs, warmupMs) => runFixedRate({ url, rate, durationMs, warmupMs, connections: 20, timeoutMs: 5000 });
  const res = Object.fromEntries(targets.map((t) => [t.label, []]));
  for (const t of targets) await load(t.url, 3000, 0); // warm every target (JIT, pools)
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < targets.length; j++) {
      const t = targets[(r + j) % targets.length];
      const x = await load(t.url, Number(values.dur) * 1000, 1000);
      res[t.label][r] = { p50: x.latencyUs.p50 / 1000, p99: x.latencyUs.p99 / 1000, p999: x.latencyUs.p999 / 1000, failed: x.errors + x.timeouts };
    }
    console.log(
      `round ${r + 1}: ${targets.map((t) => `${t.label} ${res[t.label][r].p99.toFixed(2)}`).join('  ')}  (p99 ms; load ${os.loadavg()[0].toFixed(2)})`,
    );
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  for (const t of targets) {
    const rs = res[t.label];
    const added = rs.map((v, i) => v.p99 - res.direct[i].p99);
    const failed = rs.reduce((n, v) => n + v.failed, 0);
    console.log(
      `${t.label.padEnd(14)} p50 ${med(rs.map((v) => v.p50)).toFixed(2)}  p99 ${med(rs.map((v) => v.p99)).toFixed(2)}  p99.9 ${med(rs.map((v) => v.p999)).toFixed(2)}  added p99 ${med(added).toFixed(2)} (${added.map((v) => v.toFixed(2)).join(', ')})${failed ? `  failed ${failed}` : ''}`,
    );
  }
  process.exit(0);
}
