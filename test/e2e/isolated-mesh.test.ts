// `trellis up --isolate` for real: network namespaces, veths, a bridge and nftables rules
// made by the runner (Linux, root, ip, nft, setpriv; skipped otherwise, saying what is
// missing). Unmodified clients inside the pods call services by name and pass through
// both sidecars; nothing reaches Postgres's port but through the mesh. The after() hook
// stops the mesh and removes the run by its id even when a test failed, and checks that
// nothing of it is left.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, REPO, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { isolationMissing } from '../../src/runner/isolation/preflight.js';
import { NETNS_PREFIX, removeRun, run } from '../../src/runner/isolation/network.js';
import { POD_PORTS } from '../../src/runner/isolation/pods.js';

const MESH = join(REPO, 'test/fixtures/config/isolated/mesh.yaml');
const missing = isolationMissing();
// Its own subnet, so a developer's `trellis up --isolate` on the default one is not in the way.
const SUBNET = '10.219.0.0/16';

/** Runs a Node script inside a namespace as a plain (root, not sidecar) process; resolves with its stdout. */
function inPod(netns: string, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', script], { cwd: REPO, timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim()),
    );
  });
}

/** A script that connects to host:port and prints `connected` or the error's code. */
const connectScript = (host: string, port: number): string =>
  `import net from 'node:net'; const s = net.connect(${port}, ${JSON.stringify(host)}); s.setTimeout(3000, () => { console.log('timeout'); process.exit(0); }); s.on('connect', () => { console.log('connected'); s.destroy(); }); s.on('error', (e) => console.log(e.code));`;

async function connectFromHost(host: string, port: number): Promise<string> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.setTimeout(3000, () => {
      s.destroy();
      resolve('timeout');
    });
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

async function metric(admin: { host: string; port: number }, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

describe('trellis up --isolate', { skip: missing.length > 0 ? `needs ${missing.join('; ')}` : false, timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-isolated-'));
  // The sidecars (uid 1337) write their access logs here, and Postgres runs as `postgres`.
  chmodSync(dir, 0o755);
  let mesh: RunningMesh | undefined;
  let runId = '';
  const pod = (id: string): { netns: string; address: string } => {
    const p = mesh?.state.isolation?.pods[id];
    assert.ok(p, `instance ${id} has a pod`);
    return p;
  };
  const instance = (id: string) => {
    const i = mesh?.state.instances.find((x) => x.id === id);
    assert.ok(i, `instance ${id} is planned`);
    return i;
  };

  before(async () => {
    mesh = await meshUp(MESH, dir, ['--isolate', '--isolate-subnet', SUBNET], 180_000);
    runId = mesh.state.isolation?.runId ?? '';
  });

  after(async () => {
    try {
      await stopMesh(mesh);
    } finally {
      // Whatever the stop left (it should leave nothing), removed by the run's prefix.
      if (runId !== '') await removeRun(runId);
      await rm(dir, { recursive: true, force: true });
    }
    const left = (await run('ip', ['netns', 'list'])).split('\n').filter((l) => l.startsWith(`${NETNS_PREFIX}${runId}`));
    assert.deepEqual(left, [], 'no namespace of the run is left');
  });

  test('each instance has its own namespace and address, names resolve to virtual addresses', async () => {
    const iso = mesh?.state.isolation;
    assert.ok(iso);
    assert.equal(iso.subnet, SUBNET);
    const netns = new Set(Object.values(iso.pods).map((p) => p.netns));
    assert.equal(netns.size, 3);
    const hosts = await inPod(pod('frontend-0').netns, `import { readFileSync } from 'node:fs'; console.log(readFileSync('/etc/hosts', 'utf8'))`);
    assert.match(hosts, new RegExp(`${iso.services.backend?.vip.replaceAll('.', '\\.')}\\tbackend `));
  });

  test('an unmodified client in the frontend pod calls http://backend:8080/ through both sidecars', async () => {
    const frontendAdmin = instance('frontend-0').admin;
    const backendAdmin = instance('backend-0').admin;
    const outBefore = await metric(frontendAdmin, /^trellis_http_requests_total\{.*direction="outbound".*destination="backend"/);
    const inBefore = await metric(backendAdmin, /^trellis_http_requests_total\{.*direction="inbound"/);
    const body = await inPod(
      pod('frontend-0').netns,
      `import http from 'node:http'; http.get('http://backend:8080/hello', (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(res.statusCode + ' ' + b)); }).on('error', (e) => console.log('error ' + e.code));`,
    );
    assert.match(body, /^200 .*"service":"backend".*"path":"\/hello"/);
    await eventually(async () => {
      assert.ok(
        (await metric(frontendAdmin, /^trellis_http_requests_total\{.*direction="outbound".*destination="backend"/)) > outBefore,
        'the frontend sidecar counted it',
      );
      assert.ok((await metric(backendAdmin, /^trellis_http_requests_total\{.*direction="inbound"/)) > inBefore, 'the backend sidecar counted it');
    });
  });

  test('a Postgres client in the backend pod reaches postgres:5432 by name through the mesh', async () => {
    const backendAdmin = instance('backend-0').admin;
    const before = await metric(backendAdmin, /^trellis_tcp_connections_total\{direction="outbound".*destination="postgres"/);
    // The backend's sidecar may hold Postgres's endpoint for a moment after it turned healthy.
    const out = await eventually(
      () =>
        inPod(
          pod('backend-0').netns,
          `import pg from 'pg'; const c = new pg.Client({ host: 'postgres', port: 5432, user: 'shop', password: 'shop', database: 'shop' }); await c.connect(); const r = await c.query('select 41 + 1 as n'); console.log(r.rows[0].n); await c.end();`,
        ),
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    assert.equal(out, '42');
    assert.ok(
      (await metric(backendAdmin, /^trellis_tcp_connections_total\{direction="outbound".*destination="postgres"/)) > before,
      'through the backend sidecar',
    );
  });

  test("Postgres's app port is unreachable from the host and from the frontend pod", async () => {
    const pg = pod('postgres-0').address;
    // From the host: the port is redirected to the sidecar, which a non-public service's pod closes to the host.
    assert.notEqual(await connectFromHost(pg, 5432), 'connected');
    assert.notEqual(await connectFromHost(pg, POD_PORTS.inbound), 'connected');
    // From the frontend pod: not an upstream of the frontend, neither by name nor by address.
    assert.notEqual(await inPod(pod('frontend-0').netns, connectScript('postgres', 5432)), 'connected');
    assert.notEqual(await inPod(pod('frontend-0').netns, connectScript(pg, 5432)), 'connected');
    assert.notEqual(await inPod(pod('frontend-0').netns, connectScript(pg, POD_PORTS.inbound)), 'connected');
  });

  test('a process inside a pod cannot skip its sidecar', async () => {
    const backendPod = pod('backend-0').netns;
    const pg = pod('postgres-0').address;
    // Straight to Postgres's pod, around the sidecar: refused in the backend's own pod.
    assert.equal(await inPod(backendPod, connectScript(pg, 5432)), 'ECONNREFUSED');
    assert.equal(await inPod(backendPod, connectScript(pg, POD_PORTS.inbound)), 'ECONNREFUSED');
    // Nor anywhere else (the control plane, the host).
    assert.equal(await inPod(backendPod, connectScript(mesh?.state.isolation?.gateway ?? '', 22)), 'ECONNREFUSED');
  });

  test('the public entry is reachable from the host', async () => {
    const url = mesh?.state.publicUrls.frontend;
    assert.ok(url);
    const res = await fetch(`${url}/p`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /"service":"frontend"/);
  });
});
