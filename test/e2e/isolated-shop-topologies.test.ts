// The shop's topologies 1 and 3 under `trellis up --isolate` (topology 2:
// isolated-shop.test.ts), against raw clients on the host and inside the pods: each
// topology's allowed paths work (the public services only through the ingress Gateway's
// HTTPS listeners from the host, with the localhost CA `trellis up` made) and its refusals
// hold. after() stops each mesh and removes its run by id even when a test failed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chmodSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, REPO, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { runIn, type Ran } from '../helpers/pods.js';
import { isolationMissing } from '../../src/runner/isolation/preflight.js';
import { findOnPath } from '../../src/runner/on-path.js';
import { NETNS_PREFIX, removeRun, run } from '../../src/runner/isolation/network.js';

const missing = [...isolationMissing(), ...['curl', 'psql', 'redis-cli', 'redis-server'].filter((b) => findOnPath(b) === undefined).map((b) => `${b} on PATH`)];

const curl = (url: string): string[] => ['curl', '-sS', '--max-time', '5', '-o', '-', '-w', '\n%{http_code}', url];
const psql = (host: string, port: number): string[] => [
  'psql',
  `postgresql://shop:shop@${host}:${port}/shop?connect_timeout=5&sslmode=disable`,
  '-Atc',
  'select count(*) from products',
];
const redisPing = (host: string, port: number): string[] => ['redis-cli', '-h', host, '-p', String(port), 'ping'];
const served = (r: Ran): boolean => r.code === 0 && /\n200$/.test(r.stdout);
const pong = (r: Ran): boolean => r.code === 0 && r.stdout === 'PONG';

/** One isolated run of `topology`, with what a test asks of it. */
function isolatedShop(topology: string, subnet: string) {
  const dir = mkdtempSync(join(tmpdir(), `trellis-isolated-${topology}-`));
  chmodSync(dir, 0o755);
  let mesh: RunningMesh | undefined;
  let runId = '';
  const pod = (id: string): { netns: string; address: string } => {
    const p = mesh?.state.isolation?.pods[id];
    assert.ok(p, `instance ${id} has a pod`);
    return p;
  };
  const port = (service: string): number => {
    const p = mesh?.state.isolation?.services[service]?.ports[0];
    assert.ok(p !== undefined, `${service} has a port`);
    return p;
  };
  before(async () => {
    mesh = await meshUp(join(REPO, `examples/shop/${topology}.yaml`), dir, ['--isolate', '--isolate-subnet', subnet, '--free-ports'], 240_000);
    runId = mesh.state.isolation?.runId ?? '';
  });
  after(async () => {
    try {
      await stopMesh(mesh);
    } finally {
      if (runId !== '') await removeRun(runId);
      await rm(dir, { recursive: true, force: true });
    }
    const left = (await run('ip', ['netns', 'list'])).split('\n').filter((l) => runId !== '' && l.startsWith(`${NETNS_PREFIX}${runId}`));
    assert.deepEqual(left, [], 'no namespace of the run is left');
  });
  return {
    pod,
    port,
    inPod: (id: string, argv: string[]): Promise<Ran> => runIn(pod(id).netns, argv, 15_000),
    onHost: (argv: string[]): Promise<Ran> => runIn(undefined, argv, 15_000),
    /** The public `service` through the ingress, from the host (HTTPS with the run's localhost CA). */
    async publicServed(service: string, path: string): Promise<void> {
      const url = mesh?.state.publicUrls[service];
      assert.ok(url, `${service} is public`);
      const ca = mesh?.state.localCa;
      const argv = ca !== undefined && url.startsWith('https:') ? [...curl(`${url}${path}`), '--cacert', ca] : curl(`${url}${path}`);
      await eventually(
        async () => {
          const r = await runIn(undefined, argv, 15_000);
          assert.ok(served(r), `${url}${path}: ${r.stderr || r.stdout}`);
        },
        { timeoutMs: 30_000, intervalMs: 500 },
      );
    },
    async psqlWorks(id: string): Promise<void> {
      const r = await eventually(
        async () => {
          const x = await runIn(pod(id).netns, psql('postgres', port('postgres')), 15_000);
          assert.equal(x.code, 0, x.stderr);
          return x;
        },
        { timeoutMs: 30_000, intervalMs: 500 },
      );
      assert.equal(r.stdout, '8');
    },
  };
}

const skip = missing.length > 0 ? `needs ${missing.join('; ')}` : false;

describe('the shop (topology 1) isolated, against raw clients', { skip, timeout: 300_000 }, () => {
  const shop = isolatedShop('topology-1', '10.224.0.0/16');

  test('allowed: frontend and backend through the ingress from the host, backend → Postgres and Redis', async () => {
    await shop.publicServed('frontend', '/');
    await shop.publicServed('backend', '/api/products');
    await shop.psqlWorks('backend-v1-0');
    assert.ok(pong(await shop.inPod('backend-v2-0', redisPing('redis', shop.port('redis')))));
  });

  test('refused: app ports from the host; Postgres, Redis and the backend from the frontend pod', async () => {
    assert.ok(!served(await shop.onHost(curl(`http://${shop.pod('backend-v1-0').address}:${shop.port('backend')}/api/products`))), 'host → backend app port');
    assert.notEqual((await shop.onHost(psql(shop.pod('postgres-0').address, shop.port('postgres')))).code, 0, 'host → Postgres');
    assert.ok(!pong(await shop.onHost(redisPing(shop.pod('redis-0').address, shop.port('redis')))), 'host → Redis');
    // The frontend has no upstreams in this topology: the browser calls the backend itself.
    assert.ok(!served(await shop.inPod('frontend-0', curl(`http://backend:${shop.port('backend')}/api/products`))), 'frontend pod → backend');
    assert.notEqual((await shop.inPod('frontend-0', psql('postgres', shop.port('postgres')))).code, 0, 'frontend pod → Postgres');
    assert.ok(!pong(await shop.inPod('frontend-0', redisPing('redis', shop.port('redis')))), 'frontend pod → Redis');
    assert.ok(!pong(await shop.inPod('postgres-0', redisPing('redis', shop.port('redis')))), 'Postgres pod → Redis');
  });
});

describe('the shop (topology 3) isolated, against raw clients', { skip, timeout: 300_000 }, () => {
  const shop = isolatedShop('topology-3', '10.225.0.0/16');

  test('allowed: frontend and backend through the ingress from the host, backend and backup → Postgres', async () => {
    await shop.publicServed('frontend', '/');
    await shop.publicServed('backend', '/api/products');
    await shop.psqlWorks('backend-v1-0');
    await shop.psqlWorks('backup-0');
  });

  test('refused: the backup from anyone, Postgres from the host and the frontend', async () => {
    assert.ok(!served(await shop.onHost(curl(`http://${shop.pod('backup-0').address}:${shop.port('backup')}/backups`))), 'host → backup app port');
    assert.notEqual((await shop.onHost(psql(shop.pod('postgres-0').address, shop.port('postgres')))).code, 0, 'host → Postgres');
    assert.ok(!served(await shop.inPod('backend-v1-0', curl(`http://backup:${shop.port('backup')}/backups`))), 'backend pod → backup');
    assert.ok(
      !served(await shop.inPod('frontend-0', curl(`http://${shop.pod('backup-0').address}:${shop.port('backup')}/backups`))),
      'frontend pod → backup pod',
    );
    assert.notEqual((await shop.inPod('frontend-0', psql('postgres', shop.port('postgres')))).code, 0, 'frontend pod → Postgres');
  });
});
