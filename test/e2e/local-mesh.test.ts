// `trellis up` on a test mesh with real processes: a `client` service calling `echo`
// (v1 × 2, v2 × 1) through its sidecar. The test plays the client app, sending through
// the client's sidecar listener exactly as the app would.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive, getJson, meshUp, stopMesh, REPO, request, type RunningMesh } from '../helpers/mesh-run.js';
import type { Snapshot } from '../../src/api/protocol.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { countVersions, trellisCli } from '../helpers/traffic.js';
import { eventually } from '../helpers/eventually.js';

let dir: string;
let mesh: RunningMesh;
let port: number; // the client sidecar's listener for upstream `echo`

const ECHO = join(REPO, 'test', 'fixtures', 'apps', 'echo-server.js');

function routeYaml(v1: number, v2: number): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo-split
spec:
  parentRefs:
    - name: echo
  rules:
    - backendRefs:
        - name: echo-v1
          weight: ${v1}
        - name: echo-v2
          weight: ${v2}
`;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-e2e-'));
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: e2e
spec:
  include: [routes.yaml]
  # Small files, so the 1,000 requests below rotate the client's access log.
  accessLog: { maxFileBytes: 65536, maxFiles: 1 }
  services:
    - name: client
      command: node ${ECHO}
      upstreams: [echo]
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
    - name: echo
      command: node ${ECHO}
      # A killed instance refuses connections at once, so a long timeout does not slow detection
      # and keeps a busy machine from marking live instances unhealthy.
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s, unhealthyThreshold: 1 }
      versions:
        - name: v1
          replicas: 2
        - name: v2
`,
  );
  await writeFile(join(dir, 'routes.yaml'), routeYaml(90, 10));
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'));
  const client = mesh.state.instances.find((i) => i.service === 'client')!;
  port = client.upstreams.find((u) => u.service === 'echo')!.port;
});

after(() => stopMesh(mesh, dir));

async function metrics(admin: { host: string; port: number }): Promise<string> {
  return (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
}

/** Sends `n` requests through the client's listener for echo, `concurrency` at a time. */
const load = (n: number, concurrency = 8) => countVersions(port, n, concurrency, '/work');

test('trellis up prints what runs where', () => {
  const out = mesh.output();
  for (const id of ['client-0', 'echo-v1-0', 'echo-v1-1', 'echo-v2-0'])
    assert.match(out, new RegExp(`${id}\\s+127\\.0\\.0\\.1:\\d+\\s+127\\.0\\.0\\.1:\\d+\\s+healthy`));
});

test('the admin API is locked; trellis status and trellis check find the token with no flag; no log holds it', async () => {
  const tokenFile = join(mesh.state.stateDir, 'control', 'admin-token');
  assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const anonymous = await fetch(`${mesh.state.control}/v1/services/echo/weights`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ weights: { v1: 0, v2: 100 } }),
  });
  assert.equal(anonymous.status, 401);
  await anonymous.body?.cancel();
  const status = await trellisCli(['status', '--control', mesh.state.control]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /echo\s+v1\s+echo-v1-0/);
  const check = await trellisCli(['check', '--control', mesh.state.control]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /ok {4}\d+ proxies connected/);
  assert.match(check.stdout, /ok {4}every connected proxy acknowledged its latest snapshot/);
  for (const f of await readdir(mesh.state.logDir)) {
    assert.ok(!(await readFile(join(mesh.state.logDir, f), 'utf8')).includes(token), `${f} does not hold the admin token`);
  }
});

test('requests flow through both sidecars, visible in their metrics', async () => {
  const r = await request(port, '/hello');
  assert.equal(r.status, 200);
  const client = mesh.state.instances.find((i) => i.service === 'client')!;
  const answered = JSON.parse(r.body).instance as string;
  const echo = mesh.state.instances.find((i) => i.id === answered)!;
  assert.match(
    await metrics(client.admin),
    /trellis_http_requests_total\{direction="outbound",source="client",destination="echo",destination_version="v[12]",route="default\/echo-split\/rule\/0",status="200"/,
  );
  assert.match(
    await metrics(echo.admin),
    /trellis_http_requests_total\{direction="inbound",source="client",destination="echo",destination_version="v[12]",route="inbound",status="200"/,
  );
});

test('a 90/10 split lands within tolerance over 1,000 requests', async () => {
  const { versions, failures } = await load(1000);
  assert.deepEqual(failures, []);
  const v2 = (versions.v2 ?? 0) / 1000;
  assert.ok(v2 > 0.06 && v2 < 0.14, `v2 share ${v2} (expected 0.10 ± 0.04)`);
});

test('access logs are private files, rotated as the Mesh file says, with query values redacted', async () => {
  for (let i = 0; i < 20; i++) assert.equal((await request(port, `/login?user=ann&password=hunter${i}`)).status, 200);
  const logs = join(mesh.state.stateDir, 'logs');
  const client = join(logs, 'client-0.access.log');
  // The sidecar writes its log once per event-loop turn: wait for the last request's line.
  const logins = async (): Promise<number> => {
    let n = 0;
    for (const f of [client, `${client}.1`]) n += (await readFile(f, 'utf8').catch(() => '')).split('"path":"/login?').length - 1;
    return n;
  };
  await eventually(async () => (await logins()) >= 20, { what: 'the client sidecar to log the 20 requests' });
  assert.equal((await stat(client)).mode & 0o777, 0o600);
  assert.equal((await stat(`${client}.1`)).mode & 0o777, 0o600, 'the 1,000 requests before rotated it (maxFileBytes 65536)');
  await assert.rejects(stat(`${client}.2`), 'maxFiles: 1 keeps one rotated file');
  const names = (await readdir(logs)).filter((f) => f.includes('.access.log'));
  for (const f of names) {
    const text = await readFile(join(logs, f), 'utf8');
    assert.ok(!/hunter\d/.test(text), `${f} has no query value`);
  }
  assert.match((await readFile(client, 'utf8')) + (await readFile(`${client}.1`, 'utf8')), /"path":"\/login\?user=REDACTED&password=REDACTED"/);
});

test('killing the control plane leaves traffic flowing, and it comes back', async () => {
  // Steady requests from before the kill until well after the proxies reconnected: the
  // restart itself (instances registering again with unknown health) must not cost one.
  let stop = false;
  const failures: string[] = [];
  let sent = 0;
  const loops = Array.from({ length: 4 }, async () => {
    while (!stop) {
      sent++;
      try {
        const r = await request(port, '/restart');
        if (r.status !== 200) failures.push(`${r.status} ${r.headers['trellis-error'] ?? ''} ${r.body}`);
      } catch (e) {
        failures.push((e as Error).message);
      }
      // Pacing, not waiting for anything: a steady trickle of requests, not a flood.
      await sleep(5);
    }
  });
  try {
    const controlPid = mesh.state.controlPid!;
    process.kill(controlPid, 'SIGKILL');
    // Once the killed process is gone, whatever answers on the admin address is the restarted one.
    await eventually(() => assert.equal(alive(controlPid), false, 'the killed control plane is gone'));
    // The runner restarts it; proxies reconnect and the mesh is whole again.
    await eventually(
      async () => {
        const body = await getJson<{ proxies?: { id: string; connected: boolean }[] }>(`${mesh.state.control}/v1/proxies`);
        const proxies = body.proxies ?? [];
        assert.ok(proxies.filter((p) => p.connected).length >= 4, `proxies reconnected: ${JSON.stringify(proxies)}`);
      },
      { timeoutMs: 20_000 },
    );
    // Through the restarted control plane's first health checks: traffic keeps flowing
    // until every instance is healthy again and the client's sidecar has acknowledged a
    // snapshot with all three echo endpoints (the end of what the restart could disturb).
    await eventually(
      async () => {
        const { instances } = await getJson<{ instances: { id: string; health: { status: string } }[] }>(`${mesh.state.control}/v1/instances`);
        assert.deepEqual(
          instances.filter((i) => i.health.status !== 'healthy').map((i) => i.id),
          [],
          'every instance healthy',
        );
        const { proxies } = await getJson<{ proxies: { id: string; ackedVersion: number | null }[] }>(`${mesh.state.control}/v1/proxies`);
        const snapshot = await getJson<Snapshot>(`${mesh.state.control}/v1/snapshots/client-0`);
        assert.equal(proxies.find((p) => p.id === 'client-0')?.ackedVersion, snapshot.version, 'the client acknowledged its latest snapshot');
        const endpoints = [...new Set(Object.values(snapshot.upstreams.echo!.backends).flatMap((b) => b.endpoints.map((e) => e.id)))].sort();
        assert.deepEqual(endpoints, ['echo-v1-0', 'echo-v1-1', 'echo-v2-0']);
      },
      { timeoutMs: 20_000 },
    );
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  assert.ok(sent > 100, `${sent} requests sent`);
  assert.deepEqual(failures, [], 'no request fails while the control plane is down, restarts, or takes the proxies back');
});

test('killing an instance removes it from rotation until it is healthy again', async () => {
  const victim = mesh.state.instances.find((i) => i.id === 'echo-v1-0')!;
  const marker = join(mesh.state.stateDir, 'data', 'echo', 'echo-v1-0.down');
  await writeFile(marker, 'down');
  // The app runs in its own process group (the runner starts it detached).
  process.kill(-victim.appPid!, 'SIGKILL');
  const during = await load(400);
  assert.deepEqual(during.failures, [], 'no request fails while the instance is down');
  // The control plane sees it unhealthy and it is out of every snapshot.
  await eventually(async () => assert.equal(await instanceHealth('echo-v1-0'), 'unhealthy'));
  const out = await load(200);
  assert.deepEqual(out.failures, []);
  assert.equal(out.instances['echo-v1-0'] ?? 0, 0, 'the dead instance gets no traffic');
  assert.ok((out.instances['echo-v1-1'] ?? 0) > 0);
  assert.match(mesh.output(), /echo-v1-0 exited .*restarting in/);
  // Let it start again: the runner's backoff restart brings it back into rotation.
  await rm(marker);
  await eventually(async () => assert.equal(await instanceHealth('echo-v1-0'), 'healthy'), { timeoutMs: 30_000 });
  const back = await load(300);
  assert.ok((back.instances['echo-v1-0'] ?? 0) > 0, 'it is back in rotation');
});

test('editing the route file live shifts traffic with no failed request', async () => {
  let stop = false;
  const failures: string[] = [];
  const seen: string[] = [];
  const loops = Array.from({ length: 4 }, async () => {
    while (!stop) {
      try {
        const r = await request(port, '/live');
        if (r.status !== 200) failures.push(`${r.status} ${r.body}`);
        else seen.push(JSON.parse(r.body).version as string);
      } catch (err) {
        failures.push(String(err));
      }
    }
  });
  let changedAt = 0;
  try {
    // Traffic is flowing on v1 (the 90/10 split) before the edit.
    await eventually(() => assert.ok(seen.includes('v1'), 'traffic was on v1 before'));
    changedAt = seen.length;
    await writeFile(join(dir, 'routes.yaml'), routeYaml(0, 100));
    // Wait until 100 answers in a row come from v2.
    await eventually(() => seen.length - changedAt > 100 && seen.slice(-100).every((v) => v === 'v2'), { what: '100 answers in a row from v2' });
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  assert.deepEqual(failures, []);
  assert.ok(
    seen.slice(-100).every((v) => v === 'v2'),
    'traffic moved to v2',
  );
  assert.ok(
    seen.slice(0, changedAt).some((v) => v === 'v1'),
    'traffic was on v1 before',
  );
});

test('a bad route file is refused and the last good config stays in force', async () => {
  await writeFile(join(dir, 'routes.yaml'), routeYaml(0, 100).replace('- name: echo\n', '- name: echo-v9\n'));
  // The control plane read the bad file and refused it (not merely: has not read it yet).
  await eventually(async () => {
    const config = await getJson<Record<string, unknown>>(`${mesh.state.control}/v1/config`);
    assert.match(JSON.stringify(config), /routes\.yaml.*echo-v9/);
  });
  const { versions, failures } = await load(100);
  assert.deepEqual(failures, []);
  assert.equal(versions.v2, 100, 'still routed by the last good config');
});

async function instanceHealth(id: string): Promise<string> {
  const body = await getJson<{ id: string; health?: { status?: string } | string }[] | { instances: { id: string; health?: { status?: string } | string }[] }>(
    `${mesh.state.control}/v1/instances`,
  );
  const list = Array.isArray(body) ? body : body.instances;
  const i = list.find((x) => x.id === id);
  if (!i) return 'absent';
  return typeof i.health === 'string' ? i.health : (i.health?.status ?? 'unknown');
}
