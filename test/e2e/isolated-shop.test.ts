// The shop's topology 2 under `trellis up --isolate`, with mutual TLS STRICT between the
// sidecars and the admin lock on, held against raw clients that do not play along: curl,
// psql and redis-cli run on the host and inside the pods (as the apps there run: root
// without NET_ADMIN, NET_RAW, SYS_ADMIN), and as the sidecar's own uid. What the topology
// allows works (the browser through the ingress, frontend → backend, backend → Postgres
// and Redis); nothing else reaches an app. The after() hook stops the mesh and removes the
// run by its id even when a test failed, and checks nothing of it is left.
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
import { DEFAULT_SIDECAR_UID, POD_PORTS } from '../../src/runner/isolation/pods.js';

const MESH = join(REPO, 'examples/shop/topology-2.yaml');
const missing = [...isolationMissing(), ...['curl', 'psql', 'redis-cli', 'redis-server'].filter((b) => findOnPath(b) === undefined).map((b) => `${b} on PATH`)];
const SUBNET = '10.223.0.0/16';
// The shop's Postgres and Redis fix no port (a developer's own may hold 5432 and 6379 on
// loopback): the runner picks one per service, the same in every pod, read from the run's state.

const curl = (url: string): string[] => ['curl', '-sS', '--max-time', '5', '-o', '-', '-w', '\n%{http_code}', url];
const psql = (host: string, port: number): string[] => [
  'psql',
  `postgresql://shop:shop@${host}:${port}/shop?connect_timeout=5&sslmode=disable`,
  '-Atc',
  'select count(*) from products',
];
const redisPing = (host: string, port: number): string[] => ['redis-cli', '-h', host, '-p', String(port), 'ping'];
/** As the sidecar's uid (which its own pod's rules let through): what an app that setuid()s gets. */
const asSidecar = (argv: string[]): string[] => [
  'setpriv',
  `--reuid=${DEFAULT_SIDECAR_UID}`,
  `--regid=${DEFAULT_SIDECAR_UID}`,
  '--clear-groups',
  '--',
  ...argv,
];

const served = (r: Ran): boolean => r.code === 0 && /\n200$/.test(r.stdout);
const pong = (r: Ran): boolean => r.code === 0 && r.stdout === 'PONG';

describe('the shop (topology 2) isolated, against raw clients', { skip: missing.length > 0 ? `needs ${missing.join('; ')}` : false, timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-isolated-shop-'));
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
  const inPod = (id: string, argv: string[]): Promise<Ran> => runIn(pod(id).netns, argv, 15_000);
  const onHost = (argv: string[]): Promise<Ran> => runIn(undefined, argv, 15_000);

  before(async () => {
    mesh = await meshUp(MESH, dir, ['--isolate', '--isolate-subnet', SUBNET, '--free-ports'], 240_000);
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
  });

  test('what the topology allows works: the ingress from the host, frontend → backend, backend → Postgres and Redis', async () => {
    const ingress = mesh?.state.publicUrls.frontend;
    assert.ok(ingress);
    // The public entry is the ingress Gateway's HTTPS listener, with the localhost certificate trellis up made.
    const ca = mesh?.state.localCa;
    const argv = ca !== undefined && ingress.startsWith('https:') ? [...curl(`${ingress}/api/products`), '--cacert', ca] : curl(`${ingress}/api/products`);
    await eventually(
      async () => {
        const r = await onHost(argv);
        assert.ok(served(r), `${ingress}: ${r.stderr || r.stdout}`);
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    const viaFrontend = await inPod('frontend-0', curl(`http://backend:${port('backend')}/api/products`));
    assert.ok(served(viaFrontend), viaFrontend.stderr || viaFrontend.stdout);
    const db = await eventually(
      async () => {
        const r = await inPod('backend-v1-0', psql('postgres', port('postgres')));
        assert.equal(r.code, 0, r.stderr);
        return r;
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    assert.equal(db.stdout, '8');
    assert.ok(pong(await inPod('backend-v2-0', redisPing('redis', port('redis')))));
  });

  test('from the host: no app port, no sidecar inbound without mutual TLS', async () => {
    const frontend = pod('frontend-0').address;
    const backend = pod('backend-v1-0').address;
    // The public frontend's pod takes the host's connections at its sidecar only, which wants a peer certificate.
    assert.ok(!served(await onHost(curl(`http://${frontend}:${port('frontend')}/`))), 'plaintext to the frontend app port');
    assert.ok(!served(await onHost(curl(`http://${frontend}:${POD_PORTS.inbound}/`))), 'plaintext to the frontend sidecar');
    assert.ok(!served(await onHost(curl(`http://${backend}:${port('backend')}/api/products`))), 'the backend app port');
    assert.ok(!served(await onHost(curl(`http://${backend}:${POD_PORTS.inbound}/api/products`))), 'the backend sidecar');
    assert.notEqual((await onHost(psql(pod('postgres-0').address, port('postgres')))).code, 0, 'psql to Postgres');
    assert.ok(!pong(await onHost(redisPing(pod('redis-0').address, port('redis')))), 'redis-cli to Redis');
  });

  test('from the frontend pod: only the backend, and only through the sidecar', async () => {
    assert.notEqual((await inPod('frontend-0', psql('postgres', port('postgres')))).code, 0, 'psql postgres: not an upstream of the frontend');
    assert.notEqual((await inPod('frontend-0', psql(pod('postgres-0').address, port('postgres')))).code, 0, "psql at Postgres's pod address");
    assert.ok(!pong(await inPod('frontend-0', redisPing('redis', port('redis')))), 'redis-cli redis');
    assert.ok(
      !served(await inPod('frontend-0', curl(`http://${pod('backend-v1-0').address}:${port('backend')}/api/products`))),
      'the backend pod, around the sidecar',
    );
  });

  test('from the Postgres and Redis pods: nothing else', async () => {
    assert.ok(!served(await inPod('postgres-0', curl(`http://backend:${port('backend')}/api/products`))), 'postgres → backend');
    assert.ok(!pong(await inPod('postgres-0', redisPing('redis', port('redis')))), 'postgres → redis');
    assert.notEqual((await inPod('redis-0', psql('postgres', port('postgres')))).code, 0, 'redis → postgres');
  });

  test("an app cannot rewrite its pod's rules, and the sidecar's uid does not carry another sidecar's identity", async () => {
    const nft = await inPod('backend-v1-0', ['nft', 'flush', 'ruleset']);
    assert.notEqual(nft.code, 0, 'nft flush ruleset is refused to an app');
    assert.match(nft.stderr, /Operation not permitted/);
    const addr = await inPod('backend-v1-0', ['ip', 'addr', 'add', `${mesh?.state.isolation?.gateway.replace(/\.1$/, '.2')}/32`, 'dev', 'eth0']);
    assert.notEqual(addr.code, 0, "taking the control plane's address (whose probes reach app ports) is refused");
    // Becoming the sidecar's uid gets around the backend pod's own rules; Postgres's pod still
    // answers only its sidecar, and that sidecar only a peer certificate the caller has not got.
    assert.notEqual((await inPod('backend-v1-0', asSidecar(psql(pod('postgres-0').address, port('postgres'))))).code, 0, "psql as uid 1337 at Postgres's pod");
    assert.ok(!pong(await inPod('backend-v1-0', asSidecar(redisPing(pod('redis-0').address, port('redis'))))), "redis-cli as uid 1337 at Redis's pod");
    assert.ok(
      !served(await inPod('frontend-0', asSidecar(curl(`http://${pod('backend-v1-0').address}:${POD_PORTS.inbound}/api/products`)))),
      'curl as uid 1337 at the backend sidecar',
    );
  });
});
