// The shop's topologies under their AuthorizationPolicies (the documents at the end of
// each topology file), run by `trellis up` as a user runs them, plus one extra service,
// `intruder`, that declares the protected services as upstreams: a real caller of the
// mesh that the policies do not allow. Each allowed path works (the page's products
// from Postgres; health checks, which probe apps directly; the ingress), and the
// intruder is refused over HTTP with 403 `forbidden`, named in the access log.
//
// TCP (Postgres, Redis): the caller is the peer certificate of the mutual TLS connection,
// so the intruder's connection to Postgres is closed before Postgres sees it.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { eventually } from '../helpers/eventually.js';
import { allGone, getJson, meshUp, REPO, request, type RunningMesh } from '../helpers/mesh-run.js';

const INTRUDER = `const http = require('node:http');
http.createServer((req, res) => res.end('intruder')).listen(Number(process.env.PORT), process.env.HOST);
`;

/**
 * The shop's `topology` with an `intruder` service whose upstreams are `targets`, as a
 * mesh file in `dir`; the shop's apps still run from examples/shop (where their modules
 * resolve), and its policies are the topology file's own.
 */
async function shopWithIntruder(dir: string, topology: string, targets: string[]): Promise<{ meshFile: string; tcpDryRun: boolean }> {
  const shop = join(REPO, 'examples', 'shop');
  await writeFile(join(dir, 'intruder.js'), INTRUDER);
  const file = join(dir, topology);
  const docs = parseAllDocuments(await readFile(join(shop, topology), 'utf8'));
  const mesh = docs[0]!.toJSON() as { spec: { include: string[]; services: { cwd?: string }[] } };
  mesh.spec.include = mesh.spec.include.map((f) => join(shop, f));
  for (const s of mesh.spec.services) s.cwd = shop;
  mesh.spec.services.push({ name: 'intruder', protocol: 'http', command: 'node intruder.js', upstreams: targets, health: { tcp: {}, interval: '2s' } } as {
    cwd?: string;
  });
  const policies = docs.slice(1).map((d) => d.toJSON() as { spec: { targetRefs?: { name: string }[]; dryRun?: boolean } });
  const tcpDryRun = policies.some((p) => p.spec.dryRun === true && p.spec.targetRefs?.some((r) => r.name === 'postgres'));
  await writeFile(file, [JSON.stringify(mesh), ...docs.slice(1).map((d) => d.toString())].join('\n---\n'));
  return { meshFile: file, tcpDryRun };
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** The access-log lines of an instance's sidecar. */
async function accessLog(mesh: RunningMesh, instanceId: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(mesh.state.logDir, `${instanceId}.access.log`), 'utf8').catch(() => '');
  return text
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Every instance of the mesh healthy in the control plane's view (its checks probe the apps). */
async function allHealthy(mesh: RunningMesh, services: string[]): Promise<void> {
  await eventually(
    async () => {
      // The admin API takes the token (getJson finds it as the CLI does).
      const { instances } = await getJson<{ instances: { service: string; health: { status: string } }[] }>(`${mesh.state.control}/v1/instances`);
      for (const s of services) {
        const mine = instances.filter((i) => i.service === s);
        assert.ok(mine.length > 0 && mine.every((i) => i.health.status === 'healthy'), `${s}: ${JSON.stringify(mine.map((i) => i.health))}`);
      }
    },
    { timeoutMs: 30_000 },
  );
}

/** Products through the public API (topology 1, 3: the backend; 2: the frontend's /api). */
async function products(port: number): Promise<{ products: unknown[] }> {
  return eventually(
    async () => {
      const r = await request(port, '/api/products');
      assert.equal(r.status, 200, r.body);
      return JSON.parse(r.body) as { products: unknown[] };
    },
    { timeoutMs: 30_000 },
  );
}

/** Opens a TCP connection through the intruder's sidecar to `service`; resolves when it closes (or after `ms`). */
function touch(mesh: RunningMesh, service: string, ms = 2000): Promise<{ closedByPeer: boolean }> {
  const intruder = mesh.state.instances.find((i) => i.service === 'intruder')!;
  const port = intruder.upstreams.find((u) => u.service === service)!.port;
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ closedByPeer: false });
    }, ms);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ closedByPeer: true });
    });
    sock.on('error', () => {});
  });
}

/** The TCP half: the intruder's connection is closed by the Postgres sidecar, named in its access log. */
function tcpCases(get: () => { mesh: RunningMesh; tcpDryRun: boolean }, policy: string): void {
  test('postgres refuses the intruder (its peer certificate names it)', async () => {
    const { mesh, tcpDryRun } = get();
    assert.equal(tcpDryRun, false, `${policy} is enforced, not in dry run`);
    assert.deepEqual(await touch(mesh, 'postgres'), { closedByPeer: true });
    const pg = mesh.state.instances.find((i) => i.service === 'postgres')!;
    await eventually(async () => assert.ok((await accessLog(mesh, pg.id)).some((l) => l.authz_policy === policy && l.authz_result === 'denied')));
  });
}

const TOPOLOGIES = [
  { file: 'topology-1.yaml', targets: ['postgres'], tcpPolicy: 'default/postgres-from-backend' },
  { file: 'topology-2.yaml', targets: ['backend', 'postgres'], tcpPolicy: 'default/postgres-from-backend' },
  { file: 'topology-3.yaml', targets: ['backup', 'postgres'], tcpPolicy: 'default/postgres-from-backend-and-backup' },
];

for (const topology of TOPOLOGIES) {
  describe(`the shop's policies, ${topology.file}`, () => {
    let dir: string;
    let mesh: RunningMesh;
    let tcpDryRun = true;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'trellis-shop-authz-'));
      // Postgres runs as the unprivileged `postgres` user and must reach its data folder.
      await chmod(dir, 0o755);
      const made = await shopWithIntruder(dir, topology.file, topology.targets);
      tcpDryRun = made.tcpDryRun;
      mesh = await meshUp(made.meshFile, join(dir, 'state'), ['--free-ports'], 120_000);
    });

    after(async () => {
      const pids = [mesh?.state.controlPid, ...(mesh?.state.instances ?? []).flatMap((i) => [i.appPid, i.sidecarPid])];
      assert.equal(await mesh?.stop(), 0);
      await allGone(pids);
      await rm(dir, { recursive: true, force: true });
    });

    test('the allowed paths work: products from Postgres through the ingress, every instance healthy', async () => {
      const publicApi = topology.file === 'topology-2.yaml' ? mesh.state.publicUrls.frontend! : mesh.state.publicUrls.backend!;
      const body = await products(portOf(publicApi));
      assert.ok(body.products.length >= 5);
      const page = await request(portOf(mesh.state.publicUrls.frontend!), '/');
      assert.equal(page.status, 200, 'the ingress reaches the frontend');
      await allHealthy(mesh, ['frontend', 'backend', 'postgres', ...(topology.file === 'topology-3.yaml' ? ['backup'] : [])]);
    });

    if (topology.file === 'topology-2.yaml') {
      test('the backend refuses a caller other than the frontend (403 forbidden, named in its access log)', async () => {
        const intruder = mesh.state.instances.find((i) => i.service === 'intruder')!;
        const port = intruder.upstreams.find((u) => u.service === 'backend')!.port;
        const r = await request(port, '/api/products');
        assert.equal(r.status, 403, r.body);
        assert.equal(r.headers['trellis-error'], 'forbidden');
        const backends = mesh.state.instances.filter((i) => i.service === 'backend');
        await eventually(async () => {
          const lines = (await Promise.all(backends.map((b) => accessLog(mesh, b.id)))).flat();
          assert.ok(
            lines.some((l) => l.source === 'intruder' && l.status === 403 && l.authz_policy === 'default/backend-from-frontend' && l.authz_result === 'denied'),
          );
        });
      });
    }

    if (topology.file === 'topology-3.yaml') {
      test('the backup job answers no caller through the mesh (403), yet stays healthy and backs up', async () => {
        const intruder = mesh.state.instances.find((i) => i.service === 'intruder')!;
        const port = intruder.upstreams.find((u) => u.service === 'backup')!.port;
        const r = await request(port, '/backups');
        assert.equal(r.status, 403, r.body);
        assert.equal(r.headers['trellis-error'], 'forbidden');
        // Its app, asked directly (as its health checks are), answers and holds a backup of Postgres.
        const backup = mesh.state.instances.find((i) => i.service === 'backup')!;
        await eventually(
          async () => {
            const list = await request(backup.app.port, '/backups');
            assert.equal(list.status, 200);
            assert.ok((JSON.parse(list.body) as { backups: unknown[] }).backups.length > 0, list.body);
          },
          { timeoutMs: 30_000 },
        );
      });
    }

    tcpCases(() => ({ mesh, tcpDryRun }), topology.tcpPolicy);
  });
}
