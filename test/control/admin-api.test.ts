import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { ConfigView, ServiceView } from '../../src/api/admin.js';
import { renderStatus, run as status } from '../../src/cli/status.js';
import type { ProxyView } from '../../src/api/admin.js';
import { TrellisError } from '../../src/errors.js';
import { adminAuth, connect, getJson, MESH_YAML, routesYaml, sidecar, tempDir, type FakeProxy, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { eventually } from '../helpers/eventually.js';

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
let app: http.Server;
let back: FakeProxy;

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', routesYaml('backend'));
  app = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  plane = await startControlPlane({ bootstrapSecret: TEST_BOOTSTRAP_SECRET, configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: () => {} });
  back = await connect(plane.address);
  back.send({ type: 'hello', proxy: sidecar('backend-v1-0', 'backend', 'v1', { app: { host: '127.0.0.1', port: (app.address() as AddressInfo).port } }) });
  const snap = await back.snapshot();
  back.send({ type: 'ack', version: snap.version });
  await eventually(() => plane.model.health('backend-v1-0')?.status === 'healthy', { what: 'healthy' });
  await eventually(() => plane.model.proxy('backend-v1-0')?.ackedVersion === snap.version, { what: 'ack' });
});

after(async () => {
  back.socket.destroy();
  await plane.close();
  await new Promise((r) => app.close(r));
  await files.remove();
});

test('GET /healthz answers ok', async () => {
  const res = await getJson(plane, '/healthz');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'ok\n');
});

test('/v1/services lists every service with its versions and instances with health', async () => {
  const { status, body } = await getJson<{ services: ServiceView[] }>(plane, '/v1/services');
  assert.equal(status, 200);
  assert.deepEqual(
    body.services.map((s) => s.name),
    ['frontend', 'backend'],
  );
  const backend = body.services.find((s) => s.name === 'backend')!;
  assert.deepEqual(
    backend.versions.map((v) => v.name),
    ['v1', 'v2'],
  );
  assert.equal(backend.protocol, 'detect'); // not declared in the mesh file
  assert.equal(backend.instances.length, 1);
  const i = backend.instances[0]!;
  assert.equal(i.id, 'backend-v1-0');
  assert.equal(i.health.status, 'healthy');
  assert.ok(i.health.lastCheck);
  assert.deepEqual(body.services.find((s) => s.name === 'frontend')!.upstreams, [{ service: 'backend' }]);
});

test('/v1/instances and /v1/config describe the running mesh', async () => {
  const inst = await getJson<{ instances: { id: string; service: string }[] }>(plane, '/v1/instances');
  assert.deepEqual(
    inst.body.instances.map((i) => [i.id, i.service]),
    [['backend-v1-0', 'backend']],
  );
  const cfg = await getJson<ConfigView>(plane, '/v1/config');
  assert.equal(cfg.body.files.length, 2);
  assert.deepEqual(cfg.body.routes, ['default/backend-split']);
  assert.ok(cfg.body.loadedAt);
});

test('/v1/snapshots/<id> returns the snapshot last sent, and unknown paths a JSON 404', async () => {
  const snap = await getJson<{ service: string; version: number }>(plane, '/v1/snapshots/backend-v1-0');
  assert.equal(snap.status, 200);
  assert.equal(snap.body.service, 'backend');
  const missing = await getJson<{ code: string; message: string }>(plane, '/v1/snapshots/nobody');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.code, 'TRELLIS_E_NOT_FOUND');
  const unknown = await getJson<{ code: string; message: string }>(plane, '/v2/what');
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.message, /\/v2\/what/);
});

test('the admin API is read-only', async () => {
  const res = await fetch(`http://127.0.0.1:${plane.address.port}/v1/services`, { method: 'POST', headers: adminAuth(plane) });
  assert.equal(res.status, 405);
  await res.body?.cancel();
});

test('trellis status renders one row per instance with health and acked/sent versions', async () => {
  const services = (await getJson<{ services: ServiceView[] }>(plane, '/v1/services')).body.services;
  const proxies = (await getJson<{ proxies: ProxyView[] }>(plane, '/v1/proxies')).body.proxies;
  const config = (await getJson<ConfigView>(plane, '/v1/config')).body;
  const text = renderStatus(services, proxies, config);
  const lines = text.trimEnd().split('\n');
  assert.match(lines[0]!, /^SERVICE\s+VERSION\s+INSTANCE\s+APP\s+INBOUND\s+HEALTH\s+CONFIG/);
  assert.match(text, /frontend\s+default\s+-\s+-\s+-\s+no instances/);
  assert.match(text, /backend\s+v1\s+backend-v1-0\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:\d+\s+healthy\s+v1\/v1/);
  const nacked = renderStatus(
    services,
    proxies.map((p) => ({ ...p, sentVersion: 2, lastNack: { version: 2, error: 'bad regex', at: null } })),
    config,
  );
  assert.match(nacked, /v1\/v2 NACK v2: bad regex/);
});

test('trellis status fails with TRELLIS_E_CONTROL_UNREACHABLE when nothing listens', async () => {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  await assert.rejects(status(['--control', `http://127.0.0.1:${port}`]), (err: unknown) => {
    assert.ok(err instanceof TrellisError);
    assert.equal(err.code, 'TRELLIS_E_CONTROL_UNREACHABLE');
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
});
