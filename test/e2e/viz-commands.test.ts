// The see-the-mesh commands against a mesh run by `trellis up`: `web` calls `api` (v1,
// v2) through its sidecar; a route sends `x-version: v2` to v2 and /api to v1. Each
// command runs as the real CLI (a child process) against the running mesh.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { meshUp, stopMesh, REPO, request, TRELLIS, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';

let dir: string;
let mesh: RunningMesh;
let port: number; // web's sidecar listener for api

const APP = join(REPO, 'test', 'fixtures', 'apps', 'logging-server.js');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-viz-'));
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: viz
spec:
  include: [routes.yaml]
  accessLog: { fields: [ts, direction, source, destination, route, method, path, status, duration_ms] }
  services:
    - name: web
      command: node ${APP}
      upstreams: [api]
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
    - name: api
      command: node ${APP}
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
      versions:
        - name: v1
        - name: v2
`,
  );
  await writeFile(
    join(dir, 'routes.yaml'),
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: api-route
spec:
  parentRefs:
    - name: api
  rules:
    - matches:
        - headers:
            - name: x-version
              value: v2
      backendRefs:
        - name: api-v2
    - matches:
        - path: { type: PathPrefix, value: /api }
      backendRefs:
        - name: api-v1
      timeouts: { request: 5s }
`,
  );
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'));
  const web = mesh.state.instances.find((i) => i.service === 'web')!;
  port = web.upstreams.find((u) => u.service === 'api')!.port;
});

after(() => stopMesh(mesh, dir));

/** Runs `trellis ARGS` to its end: exit code and output. */
function cli(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRELLIS, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`trellis ${args.join(' ')} did not end within ${timeoutMs} ms:\n${out}\n${err}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

const control = (): string[] => ['--control', mesh.state.control];

test('trellis top shows the rate, success rate and latency of known traffic, per service and per route', async () => {
  // 25 requests a second, one in five answered 503, while top reads a 3 s window.
  let stop = false;
  const traffic = (async () => {
    let i = 0;
    const started = performance.now();
    while (!stop) {
      const due = started + i * 40;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      void request(port, i % 5 === 0 ? `/api/fail/${i}` : `/api/ok/${i}`).catch(() => {});
      i++;
    }
  })();
  try {
    await sleep(1000); // the rate settles before the window opens
    // Both views at once: each `top` reads the proxies on its own, over its own window.
    const [services, routes] = await Promise.all([
      cli(['top', '--once', '--interval', '3s', ...control()]),
      cli(['top', '--once', '--routes', '--interval', '2s', ...control()]),
    ]);
    assert.equal(services.code, 0, services.err);
    const row = services.out.split('\n').find((l) => l.startsWith('api '));
    assert.ok(row, services.out);
    const [, rps, success, p50, p99] = row.trim().split(/\s+/);
    assert.ok(Math.abs(Number(rps) - 25) <= 25 * 0.3, `api at ${rps} req/s (25 sent)\n${services.out}`);
    assert.ok(Math.abs(parseFloat(success!) - 80) <= 8, `success ${success} (80% answered 200)\n${services.out}`);
    assert.match(p50!, /ms$/);
    assert.match(p99!, /ms$/);
    assert.equal(routes.code, 0, routes.err);
    assert.match(routes.out, /^DESTINATION\s+ROUTE\s+RPS\s+SUCCESS\s+P50\s+P99\s+REQUESTS/m);
    assert.match(routes.out, /^api\s+default\/api-route\/rule\/1\s+\d/m, routes.out);
  } finally {
    stop = true;
    await traffic;
  }
});

test('trellis tap streams the requests through a service, filtered, and stops after --max', async () => {
  const tapping = cli(['tap', 'api', '--method', 'GET', '--path', '/api/tapped', '--status', '2xx', '--max', '3', ...control()]);
  let done = false;
  void tapping.then(() => (done = true));
  // The tap opens when the CLI has connected: send until it has seen three.
  for (let i = 0; !done && i < 400; i++) {
    await request(port, `/api/other/${i}`);
    await request(port, `/api/fail/tapped/${i}`);
    await request(port, `/api/tapped/${i}`);
    await sleep(20);
  }
  const { code, out, err } = await tapping;
  assert.equal(code, 0, err);
  const lines = out.trim().split('\n');
  assert.equal(lines.length, 3, out);
  // Seen at api's inbound sidecar (the Host there is its own listener's address).
  for (const l of lines) assert.match(l, /api-v1-0 in {2}GET \S+ \/api\/tapped\/\d+ 200 [\d.]+ms from=web route=inbound endpoint=127\.0\.0\.1:\d+ bytes=\d+/);
});

test("trellis routes prints the routes web's sidecar holds, with weights and policies", async () => {
  const { code, out, err } = await cli(['routes', 'web', ...control()]);
  assert.equal(code, 0, err);
  assert.match(out, /^Routes of web-0 \(snapshot v\d+\)/);
  // Gateway API precedence: the longer path prefix (/api, rule 1) is tried before the header-only rule (prefix /).
  assert.match(
    out,
    /^api\s+default\/api-route\/rule\/1\s+prefix \/api\s+api-v1=1\s+timeout 5000ms\napi\s+default\/api-route\/rule\/0\s+prefix \/ x-version=v2\s+api-v2=1\s+-$/m,
  );
  assert.match(out, /^ {2}api: protocol detect/m);
});

test('trellis explain names the matched rule and why the rule before it did not match, with the endpoints', async () => {
  const plain = await cli(['explain', '--from', 'web', 'GET', 'http://api/api/products', ...control()]);
  assert.equal(plain.code, 0, plain.err);
  assert.match(plain.out, /destination: api/);
  assert.match(plain.out, /=>\s+default\/api-route\/rule\/1\s+matched/);
  assert.match(plain.out, /default\/api-route\/rule\/0\s+not tried/);
  assert.match(plain.out, /Matched rule default\/api-route\/rule\/1:/);
  assert.match(plain.out, /timeouts: \{"requestMs":5000\}/);
  assert.match(plain.out, /authorization: /);
  assert.match(plain.out, /api-v1\s+api-v1-0\s+127\.0\.0\.1:\d+\s+v1\s+\S+.*in rotation/);

  const v2 = await cli(['explain', '--from', 'web', 'GET', 'http://api/other', '-H', 'x-version: v2', ...control()]);
  assert.equal(v2.code, 0, v2.err);
  assert.match(v2.out, /default\/api-route\/rule\/1\s+no: path wants the prefix "\/api", got "\/other"/);
  assert.match(v2.out, /=>\s+default\/api-route\/rule\/0\s+matched/);
  assert.match(v2.out, /api-v2\s+api-v2-0/);

  const none = await cli(['explain', '--from', 'web', 'GET', 'http://api/other', '-H', 'x-version: v3', ...control()]);
  assert.equal(none.code, 0, none.err);
  assert.match(none.out, /default\/api-route\/rule\/0\s+no: header x-version wants exactly "v2", got "v3"/);
  assert.match(none.out, /answer: no-route/);

  const unknown = await cli(['explain', '--from', 'web', 'POST', 'http://nowhere/x', ...control()]);
  assert.equal(unknown.code, 0, unknown.err);
  assert.match(unknown.out, /answer: unknown-service/);
});

test('trellis logs interleaves app and access logs by time, with the access log field set, control characters escaped; -f follows', async () => {
  await request(port, '/api/logged/1');
  await request(port, '/api/evil');
  const logs = join(dir, '.trellis');
  const { out } = await eventually(async () => {
    const r = await cli(['logs', 'api', '--state-dir', logs]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /api-v1-0 app {4}api-v1-0 request GET \/api\/evil/);
    assert.match(
      r.out,
      /api-v1-0 access \{"ts":"[^"]+","direction":"inbound","source":"web","destination":"api","route":"inbound","method":"GET","path":"\/api\/logged\/1","status":200,"duration_ms":[\d.]+\}/,
    );
    return r;
  });
  const lines = out.trim().split('\n');
  const times = lines.map((l) => Date.parse(l.slice(0, 24)));
  assert.ok(
    times.every((t, i) => i === 0 || t >= times[i - 1]!),
    'lines are in time order',
  );
  // Both sources of one instance, in one stream (an app line is stamped when the runner reads it).
  assert.ok(lines.some((l) => l.includes('app    api-v1-0 request GET /api/logged/1')));
  assert.ok(lines.some((l) => l.includes('"path":"/api/logged/1"')));
  assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no control character reaches the terminal');
  assert.match(out, /evil \\x1b\[2J\\x1b\]0;pwned\\x07 \\x9b31m done/);
  assert.doesNotMatch(out, /"upstream"/, 'fields outside the set are not logged');

  // --since now: none of the lines above; -f then prints what comes.
  await sleep(50);
  const since = new Date().toISOString();
  const child = spawn(process.execPath, [TRELLIS, 'logs', 'api', '-f', '--since', since, '--state-dir', logs], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let followed = '';
  child.stdout.on('data', (c: Buffer) => (followed += c.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await eventually(async () => {
      await request(port, '/api/followed');
      assert.match(followed, /app {4}api-v1-0 request GET \/api\/followed/);
      assert.match(followed, /access \{[^}]*"path":"\/api\/followed"/);
    });
    assert.doesNotMatch(followed, /\/api\/logged\/1/, '--since leaves out older lines');
  } finally {
    child.kill('SIGINT');
    await exited;
  }
});
