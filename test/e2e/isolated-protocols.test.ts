// Protocols through transparent interception (`trellis up --isolate`, mutual TLS STRICT
// between the sidecars, the admin lock on): from the client's pod, unmodified clients call
// each service by name and port — HTTP/1.1 (node:http), HTTP/2 prior knowledge
// (node:http2), gRPC (@grpc/grpc-js), WebSocket (ws), a server-speaks-first TCP greeting,
// Postgres (psql) and Redis (redis-cli) — and each call is counted by the client's
// sidecar. Then one instance's sidecar is restarted under a steady, bounded load: only
// requests in flight when it went down may fail; and the client's own sidecar is killed
// while its app keeps opening connections: none is refused, as the runner holds the
// sidecar's listeners across the restart. The after() hook stops the mesh and
// removes the run by its id even when a test failed, and checks nothing of it is left.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, REPO, stopMesh, TRELLIS, type RunningMesh } from '../helpers/mesh-run.js';
import type { LoadResult } from '../../src/loadgen/result.js';
import { eventually } from '../helpers/eventually.js';
import { metricSum, nodeIn, runIn } from '../helpers/pods.js';
import { isolationMissing } from '../../src/runner/isolation/preflight.js';
import { findOnPath } from '../../src/runner/on-path.js';
import { NETNS_PREFIX, removeRun, run } from '../../src/runner/isolation/network.js';

const MESH = join(REPO, 'test/fixtures/config/isolated/protocols.yaml');
const missing = [...isolationMissing(), ...['psql', 'redis-cli', 'redis-server'].filter((b) => findOnPath(b) === undefined).map((b) => `${b} on PATH`)];
// Its own subnet: another isolated test or a developer's run on the default one is not in the way.
const SUBNET = '10.221.0.0/16';

describe('trellis up --isolate: protocols through interception', { skip: missing.length > 0 ? `needs ${missing.join('; ')}` : false, timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-isolated-protocols-'));
  // The sidecars (uid 1337) write their access logs here, and Postgres runs as `postgres`.
  chmodSync(dir, 0o755);
  let mesh: RunningMesh | undefined;
  let runId = '';
  const clientPod = (): string => {
    const p = mesh?.state.isolation?.pods['client-0'];
    assert.ok(p, 'the client has a pod');
    return p.netns;
  };
  const instance = (id: string) => {
    const i = mesh?.state.instances.find((x) => x.id === id);
    assert.ok(i, `instance ${id} is planned`);
    return i;
  };
  /** The client sidecar's outbound count toward `destination` (HTTP requests, or TCP connections). */
  const outbound = (destination: string, family: 'http' | 'tcp'): Promise<number> =>
    metricSum(
      instance('client-0').admin,
      new RegExp(`^trellis_${family === 'http' ? 'http_requests' : 'tcp_connections'}_total\\{.*direction="outbound".*destination="${destination}"`),
    );
  /** Runs `call`, then waits for the client's sidecar to have counted it. */
  async function throughSidecar<T>(destination: string, family: 'http' | 'tcp', call: () => Promise<T>): Promise<T> {
    const before = await outbound(destination, family);
    const out = await call();
    await eventually(async () => assert.ok((await outbound(destination, family)) > before, `the client's sidecar counted the call to ${destination}`));
    return out;
  }

  before(async () => {
    mesh = await meshUp(MESH, dir, ['--isolate', '--isolate-subnet', SUBNET], 240_000);
    runId = mesh.state.isolation?.runId ?? '';
  });

  after(async () => {
    try {
      await stopMesh(mesh);
    } finally {
      if (runId !== '') await removeRun(runId);
      await rm(dir, { recursive: true, force: true });
    }
    const left = (await run('ip', ['netns', 'list'])).split('\n').filter((l) => l.startsWith(`${NETNS_PREFIX}${runId}`));
    assert.deepEqual(left, [], 'no namespace of the run is left');
    const links = (await run('ip', ['-o', 'link', 'show'])).split('\n').filter((l) => l.includes(`trl${runId}`));
    assert.deepEqual(links, [], 'no link of the run is left');
  });

  /** Resolves once the sidecar at `admin` answers /ready with 200 (a restarted one: once it has its snapshot). */
  const sidecarReady = (admin: { host: string; port: number }): Promise<void> =>
    eventually(
      async () => {
        const res = await fetch(`http://${admin.host}:${admin.port}/ready`);
        await res.arrayBuffer();
        assert.equal(res.status, 200);
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );

  /** web's port (two replicas: the runner picked it; the same in both pods). */
  const webPort = (): number => {
    const p = mesh?.state.isolation?.services.web?.ports[0];
    assert.ok(p !== undefined, 'web has a port');
    return p;
  };

  test('HTTP/1.1: node:http calls http://web:<port>/', async () => {
    const out = await throughSidecar('web', 'http', () =>
      nodeIn(
        clientPod(),
        `import http from 'node:http'; http.get('http://web:${webPort()}/one', (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(res.statusCode + ' ' + res.httpVersion + ' ' + b)); }).on('error', (e) => console.log('error ' + e.code));`,
      ),
    );
    assert.match(out, /^200 1\.1 .*"service":"web".*"path":"\/one"/);
  });

  test('HTTP/2 (prior knowledge): node:http2 calls http://h2:8081/, and the app is answered in HTTP/2', async () => {
    const out = await throughSidecar('h2', 'http', () =>
      nodeIn(
        clientPod(),
        `import http2 from 'node:http2'; const c = http2.connect('http://h2:8081'); c.on('error', (e) => { console.log('error ' + e.code); process.exit(0); }); const r = c.request({ ':path': '/two' }); let b = ''; let status = 0; r.on('response', (h) => (status = h[':status'])); r.on('data', (d) => (b += d)); r.on('end', () => { console.log(status + ' ' + b); c.close(); });`,
      ),
    );
    assert.match(out, /^200 .*"service":"h2".*"httpVersion":"2\.0".*"path":"\/two"/);
  });

  test('gRPC: @grpc/grpc-js calls grpc:9090', async () => {
    const out = await throughSidecar('grpc', 'http', () =>
      nodeIn(
        clientPod(),
        `import * as grpc from '@grpc/grpc-js'; const c = new grpc.Client('grpc:9090', grpc.credentials.createInsecure(), { 'grpc.service_config_disable_resolution': 1 }); const ser = (v) => Buffer.from(JSON.stringify(v)); const de = (b) => JSON.parse(b.toString()); c.makeUnaryRequest('/shop.Cart/Get', ser, de, { id: 7 }, (err, v) => { console.log(err ? 'error ' + err.code + ' ' + err.details : JSON.stringify(v)); c.close(); }); c.makeUnaryRequest('/shop.Cart/Fail', ser, de, {}, (err) => console.log('fail ' + (err ? err.code : 'none')));`,
      ),
    );
    assert.match(out, /"id":7,"service":"grpc"/);
    assert.match(out, /fail 5/, 'a gRPC status (NOT_FOUND) comes back as the app gave it');
  });

  test('WebSocket: ws upgrades ws://ws:8082/chat and messages go both ways', async () => {
    const out = await nodeIn(
      clientPod(),
      `import WebSocket from 'ws'; const ws = new WebSocket('ws://ws:8082/chat'); const got = []; ws.on('open', () => { ws.send('one'); ws.send('two'); }); ws.on('message', (m) => { got.push(String(m)); if (got.length === 2) { console.log(got.join('|')); ws.close(); } }); ws.on('error', (e) => console.log('error ' + e.message));`,
    );
    assert.equal(out, 'ws-0/chat: one|ws-0/chat: two');
  });

  test('server-speaks-first TCP: the greeting reaches a client that waits for it, without waiting for detection', async () => {
    const out = await throughSidecar('greeter', 'tcp', () =>
      nodeIn(
        clientPod(),
        `import net from 'node:net'; const t0 = performance.now(); const s = net.connect(3306, 'greeter'); let b = ''; let greetedMs = -1; s.on('data', (d) => { b += d; if (greetedMs < 0 && b.includes('\\n')) { greetedMs = Math.round(performance.now() - t0); s.write('HELO pod\\r\\n'); } if (b.includes('250 HELO pod')) { console.log(greetedMs + ' ' + JSON.stringify(b)); s.destroy(); } }); s.on('error', (e) => console.log('error ' + e.code));`,
      ),
    );
    const m = /^(\d+) (.*)$/.exec(out);
    assert.ok(m, out);
    assert.match(m[2] ?? '', /220 greeter-0 ready\\r\\n250 HELO pod/);
    // Detection would hold the connection for its whole timeout (10 s) waiting for the client.
    assert.ok(Number(m[1]) < 3000, `greeted after ${m[1]} ms`);
  });

  test('Postgres: psql reaches postgres:5432 by name', async () => {
    const r = await throughSidecar('postgres', 'tcp', () =>
      eventually(
        async () => {
          const r = await runIn(clientPod(), ['psql', 'postgresql://shop:shop@postgres:5432/shop?connect_timeout=5', '-Atc', 'select 41 + 1'], 20_000, {
            ...process.env,
            PGSSLMODE: 'disable',
          });
          assert.equal(r.code, 0, r.stderr);
          return r;
        },
        { timeoutMs: 30_000, intervalMs: 500 },
      ),
    );
    assert.equal(r.stdout, '42');
  });

  test('Redis: redis-cli reaches redis:6379 by name', async () => {
    const r = await throughSidecar('redis', 'tcp', () => runIn(clientPod(), ['redis-cli', '-h', 'redis', '-p', '6379', 'ping']));
    assert.equal(r.stdout, 'PONG', r.stderr);
    const set = await runIn(clientPod(), ['redis-cli', '-h', 'redis', '-p', '6379', 'set', 'k', 'through the mesh']);
    assert.equal(set.stdout, 'OK');
    const get = await runIn(clientPod(), ['redis-cli', '-h', 'redis', '-p', '6379', 'get', 'k']);
    assert.equal(get.stdout, 'through the mesh');
  });

  test('trellis load from the client pod: a small constant rate through both sidecars, no error', async () => {
    // The load generator sends only to loopback: in the pod that is the client's sidecar's
    // listener for web (where an intercepted http://web:<port>/ lands), and from there the
    // requests cross the bridge with mutual TLS to both web pods. Bounded: 20 req/s for 3 s.
    const listener = instance('client-0').upstreams.find((u) => u.service === 'web');
    assert.ok(listener, 'the client has a listener for web');
    const before = await outbound('web', 'http');
    const r = await runIn(
      clientPod(),
      [process.execPath, TRELLIS, 'load', `http://127.0.0.1:${listener.port}/load`, '--rate', '20', '--duration', '3s', '--json'],
      60_000,
    );
    assert.equal(r.code, 0, r.stderr || r.stdout);
    const result = JSON.parse(r.stdout) as LoadResult;
    const line = `${result.completed}/${result.scheduled} completed, statuses ${JSON.stringify(result.statuses)}, errors ${JSON.stringify(result.errors)}`;
    console.log(`# trellis load in the client pod: ${line}`);
    assert.equal(result.errors.total, 0, line);
    assert.ok(result.scheduled >= 50, line);
    assert.equal(result.completed, result.scheduled, line);
    assert.deepEqual(result.statuses, { 200: result.scheduled }, line);
    // Every request went through the client's sidecar (a failure would have been counted too).
    await eventually(async () => assert.ok((await outbound('web', 'http')) >= before + result.scheduled));
  });

  test('a sidecar restart under steady load fails no request that was not in flight', async () => {
    const web0 = instance('web-0');
    const oldPid = web0.sidecarPid;
    assert.ok(oldPid !== undefined && oldPid > 0, 'web-0 has a sidecar pid');
    // 4 callers, one request at a time each, until 400 requests that started after the new
    // sidecar was ready (the test writes that time to readyFile) were answered 200.
    // Bounded: 10 s, at most 20 000 requests.
    const readyFile = join(dir, 'web-0-ready-at');
    const load = nodeIn(
      clientPod(),
      `import http from 'node:http'; import { readFileSync } from 'node:fs';
       const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
       const end = Date.now() + 10000; const results = []; let n = 0; let readyAt = Infinity; let servedAfter = 0;
       const poll = setInterval(() => { try { readyAt = Number(readFileSync(${JSON.stringify(readyFile)}, 'utf8')); } catch {} }, 50);
       const one = () => new Promise((resolve) => {
         const start = Date.now();
         const req = http.get({ host: 'web', port: ${webPort()}, path: '/r' + n++, agent, timeout: 5000 }, (res) => {
           let b = ''; res.on('data', (c) => (b += c));
           res.on('end', () => { let instance = ''; try { instance = JSON.parse(b).instance; } catch {} results.push([start, Date.now(), res.statusCode, instance]); if (start > readyAt && res.statusCode === 200) servedAfter++; resolve(); });
           res.on('error', (e) => { results.push([start, Date.now(), e.code ?? 'error', '']); resolve(); });
         });
         req.on('timeout', () => req.destroy(new Error('timeout')));
         req.on('error', (e) => { results.push([start, Date.now(), e.code ?? e.message, '']); resolve(); });
       });
       const caller = async () => { while (Date.now() < end && n < 20000 && servedAfter < 400) await one(); };
       await Promise.all([caller(), caller(), caller(), caller()]);
       clearInterval(poll);
       console.log(JSON.stringify(results));`,
      30_000,
    );
    // Once web-0 takes part of the load, its sidecar goes (SIGTERM) and the runner starts it again.
    const before = await metricSum(web0.admin, /^trellis_http_requests_total\{.*direction="inbound"/);
    await eventually(async () => assert.ok((await metricSum(web0.admin, /^trellis_http_requests_total\{.*direction="inbound"/)) > before + 20));
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGTERM');
    await sidecarReady(web0.admin);
    const readyAt = Date.now();
    writeFileSync(readyFile, String(readyAt));
    const results = JSON.parse(await load) as [number, number, number | string, string][];
    const failed = results.filter((r) => r[2] !== 200);
    const inFlight = results.filter((r) => r[0] <= killedAt && r[1] >= killedAt);
    const line = `${results.length} requests, ${failed.length} failed, ${inFlight.length} in flight at the kill; the new sidecar ready ${readyAt - killedAt} ms after it`;
    console.log(`# sidecar restart: ${line}`);
    assert.ok(results.length > 100, line);
    // A request that started after the sidecar went, or ended before, never fails: new
    // connections are refused at the restarted pod and the caller's sidecar sends them to
    // the other replica; only one on a connection the old sidecar held may be cut.
    for (const f of failed)
      assert.ok(f[0] <= killedAt + 50 && f[1] >= killedAt, `request failed (${f[2]}) though not in flight at the kill: ${JSON.stringify(f)} (${line})`);
    const rotationFrom = Date.now();
    // And the restarted sidecar is back in rotation (once the caller's balancer takes it
    // again: its failures' penalty decays, peak EWMA). One request at a time, without a
    // pause, until one is answered by web-0 (bounded: 20 s, 20 000 requests, a try).
    await eventually(
      async () => {
        const out = await nodeIn(
          clientPod(),
          `import http from 'node:http'; const agent = new http.Agent({ keepAlive: true }); const seen = new Set(); const end = Date.now() + 20000; for (let i = 0; i < 20000 && Date.now() < end && !seen.has('web-0'); i++) seen.add(await new Promise((resolve) => http.get({ host: 'web', port: ${webPort()}, path: '/', agent }, (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => resolve(JSON.parse(b).instance)); }).on('error', (e) => resolve(e.code)))); console.log([...seen].sort().join(','));`,
          30_000,
        );
        assert.match(out, /web-0/);
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    console.log(`# web-0 back in rotation ${Date.now() - rotationFrom} ms after the load`);
  });

  test("a restart of the client's own sidecar refuses none of its app's connections: the runner holds the listeners", async () => {
    const client0 = instance('client-0');
    const oldPid = client0.sidecarPid;
    assert.ok(oldPid !== undefined && oldPid > 0, 'client-0 has a sidecar pid');
    // A new connection every 25 ms, each answered or failed within 30 s, until 20 opened
    // after the new sidecar was ready (the test writes that time to readyFile) were answered
    // 200. Bounded: 12 s, at most 480. The sidecar is killed (SIGKILL: a crash) after the
    // first 20 answers.
    const readyFile = join(dir, 'client-0-ready-at');
    const load = nodeIn(
      clientPod(),
      `import http from 'node:http'; import { readFileSync } from 'node:fs';
       const end = Date.now() + 12000; const results = []; const pending = []; let n = 0; let readyAt = Infinity; let servedAfter = 0;
       const poll = setInterval(() => { try { readyAt = Number(readFileSync(${JSON.stringify(readyFile)}, 'utf8')); } catch {} }, 50);
       const one = () => new Promise((resolve) => {
         const start = Date.now();
         const req = http.get({ host: 'web', port: ${webPort()}, path: '/c' + n++, agent: false, timeout: 30000 }, (res) => {
           res.resume();
           res.on('end', () => { results.push([start, Date.now(), res.statusCode]); if (start > readyAt && res.statusCode === 200) servedAfter++; resolve(); });
           res.on('error', (e) => { results.push([start, Date.now(), e.code ?? 'error']); resolve(); });
         });
         req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
         req.on('error', (e) => { results.push([start, Date.now(), e.code ?? e.message]); resolve(); });
       });
       while (Date.now() < end && n < 480 && servedAfter < 20) { pending.push(one()); await new Promise((r) => setTimeout(r, 25)); }
       await Promise.all(pending);
       clearInterval(poll);
       console.log(JSON.stringify(results));`,
      60_000,
    );
    const counted = await outbound('web', 'http');
    await eventually(async () => assert.ok((await outbound('web', 'http')) > counted + 20), { timeoutMs: 20_000 });
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGKILL');
    await sidecarReady(client0.admin);
    const readyAt = Date.now();
    writeFileSync(readyFile, String(readyAt));
    const results = JSON.parse(await load) as [number, number, number | string][];
    const failed = results.filter((r) => r[2] !== 200);
    const refused = results.filter((r) => r[2] === 'ECONNREFUSED');
    const whileDown = results.filter((r) => r[0] > killedAt + 50 && r[0] < readyAt);
    const line = `${results.length} connections, ${failed.length} failed (${refused.length} refused), ${whileDown.length} opened while the sidecar was down; ready again ${readyAt - killedAt} ms after the kill`;
    console.log(`# caller's sidecar restart: ${line}`);
    assert.deepEqual(refused, [], line);
    // Only a request on a connection the killed sidecar had accepted may fail.
    for (const f of failed)
      assert.ok(f[0] <= killedAt + 50 && f[1] >= killedAt, `request failed (${f[2]}) though not in flight at the kill: ${JSON.stringify(f)} (${line})`);
    // Connections opened while no sidecar ran waited in the held socket's queue and were served.
    assert.ok(whileDown.length > 0, line);
    assert.ok(
      results.some((r) => r[0] > readyAt && r[2] === 200),
      `requests after the restart are served (${line})`,
    );
  });
});
