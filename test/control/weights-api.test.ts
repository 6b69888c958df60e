// PUT /v1/services/<name>/weights on a real control plane with real files: the route
// file is edited, the config reloads, and the answer comes once every proxy that calls
// the service was sent the new routes, naming the snapshot version to wait for.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { WeightsChange, WeightsView } from '../../src/api/admin.js';
import { adminAuth, connect, getJson, listeners, MESH_YAML, sidecar, tempDir, type FakeProxy, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { eventually } from '../helpers/eventually.js';

const ROUTES = `# the split of the backend
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-split
spec:
  parentRefs: [{ name: backend }]
  rules:
    - backendRefs:
        - name: backend-v1   # stable
          weight: 90
        - name: backend-v2
          weight: 10
`;

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
let front: FakeProxy;
let back: FakeProxy;

async function put(service: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${plane.address.port}/v1/services/${service}/weights`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...adminAuth(plane), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Answers every snapshot and delta with an ACK, as a proxy does. */
function autoAck(p: FakeProxy): void {
  p.socket.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.startsWith('{"type":"snapshot"') || line.startsWith('{"type":"delta"'))
        p.send({ type: 'ack', version: (JSON.parse(line) as { version: number }).version });
    }
  });
}

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', ROUTES);
  plane = await startControlPlane({ bootstrapSecret: TEST_BOOTSTRAP_SECRET, configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: () => {} });
  front = await connect(plane.address);
  autoAck(front);
  front.send({ type: 'hello', proxy: sidecar('frontend-0', 'frontend', 'default', { upstreams: listeners('backend') }) });
  back = await connect(plane.address);
  autoAck(back);
  back.send({ type: 'hello', proxy: sidecar('backend-v1-0', 'backend', 'v1') });
  await eventually(() => plane.model.proxy('frontend-0')?.ackedVersion !== undefined && plane.model.proxy('backend-v1-0')?.ackedVersion !== undefined, {
    what: 'first ACKs',
  });
});

after(async () => {
  front.socket.destroy();
  back.socket.destroy();
  await plane.close();
  await files.remove();
});

test('GET shows the split in force and the rule that carries it', async () => {
  const { status, body } = await getJson<WeightsView>(plane, '/v1/services/backend/weights');
  assert.equal(status, 200);
  assert.deepEqual(body.versions, ['v1', 'v2']);
  assert.deepEqual(body.weights, { v1: 90, v2: 10 });
  assert.deepEqual(
    body.rules.map((r) => [r.route, r.rule]),
    [['default/backend-split', 0]],
  );
});

test('PUT edits the route file in place, and answers once the callers were sent the new routes', async () => {
  const { status, body } = await put('backend', { weights: { v1: 40, v2: 60 } });
  assert.equal(status, 200, JSON.stringify(body));
  const change = body as unknown as WeightsChange;
  assert.deepEqual(change.before, { v1: 90, v2: 10 });
  assert.deepEqual(change.after, { v1: 40, v2: 60 });
  assert.equal(change.changed, true);
  assert.equal(change.sent, true);
  assert.equal(change.created, null);
  assert.equal(await readFile(join(files.dir, 'routes.yaml'), 'utf8'), ROUTES.replace('weight: 90', 'weight: 40').replace('weight: 10', 'weight: 60'));
  // Only frontend calls backend; the backend's own sidecar is not a caller.
  assert.deepEqual(
    change.callers.map((c) => c.id),
    ['frontend-0'],
  );
  const sent = plane.model.proxy('frontend-0')!.lastSnapshot!;
  assert.equal(change.callers[0]!.version, sent.version);
  assert.deepEqual(sent.upstreams.backend!.routes[0]!.backends, [
    { backend: 'backend-v1', weight: 40 },
    { backend: 'backend-v2', weight: 60 },
  ]);
  await eventually(() => plane.model.proxy('frontend-0')!.ackedVersion === sent.version, { what: 'the ACK' });
});

test('PUT with the weights already in force writes nothing', async () => {
  const before = await readFile(join(files.dir, 'routes.yaml'), 'utf8');
  const { status, body } = await put('backend', { weights: { v1: 40, v2: 60 } });
  assert.equal(status, 200);
  assert.equal(body.changed, false);
  assert.equal(await readFile(join(files.dir, 'routes.yaml'), 'utf8'), before);
});

test('bad requests are refused with the reason, and change nothing', async () => {
  const before = await readFile(join(files.dir, 'routes.yaml'), 'utf8');
  const cases: [string, unknown, number, RegExp][] = [
    ['nosuch', { weights: { v1: 1 } }, 404, /no service named "nosuch" in the mesh; its services are: frontend, backend/],
    ['backend', { weights: { v3: 1 } }, 400, /backend has no version "v3"; its versions are: v1, v2/],
    ['backend', { weights: { v1: 0, v2: 0 } }, 400, /every weight is 0/],
    ['backend', { weights: { v1: 1.5 } }, 400, /the weight of v1 must be a whole number from 0 to 1000000 \(got 1.5\)/],
    ['backend', { weights: {} }, 400, /give a weight to at least one version/],
    ['backend', 'v1=90', 400, /the body is not JSON/],
  ];
  for (const [service, body, status, message] of cases) {
    const res = await put(service, body);
    assert.equal(res.status, status, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.match(String(res.body.message), message);
  }
  const fromPage = await put('backend', { weights: { v1: 1 } }, { origin: 'http://evil.example' });
  assert.equal(fromPage.status, 403);
  assert.equal(await readFile(join(files.dir, 'routes.yaml'), 'utf8'), before);
});

test('a config that does not load on disk is not edited on top', async () => {
  const good = await readFile(join(files.dir, 'routes.yaml'), 'utf8');
  await writeFile(join(files.dir, 'routes.yaml'), good.replace('parentRefs: [{ name: backend }]', 'parentRefs: [{ name: backend-v9 }]'));
  try {
    await plane.reload();
    const { status, body } = await put('backend', { weights: { v1: 1, v2: 1 } });
    assert.equal(status, 409);
    assert.equal(body.code, 'TRELLIS_E_WEIGHTS_REFUSED');
    assert.match(String(body.message), /the config files on disk do not load \(1 problem\(s\), see `trellis status`\); fix them first/);
  } finally {
    await writeFile(join(files.dir, 'routes.yaml'), good);
    await plane.reload();
  }
  assert.equal(plane.model.configState.failedReload, undefined);
});
