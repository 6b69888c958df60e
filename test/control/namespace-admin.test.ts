// A service outside the default namespace through the admin API and the CLI: its key
// (`name.namespace`) is its name in /v1/services and in the weights path, a PUT of its
// weights edits its own namespace's producer route (not the same-named service of
// default), and `trellis status` shows a NAMESPACE column once a service has one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { ServiceView, WeightsChange, WeightsView } from '../../src/api/admin.js';
import { renderStatus } from '../../src/cli/status.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { eventually } from '../helpers/eventually.js';
import { adminAuth, connect, getJson, listeners, sidecar, tempDir, type FakeProxy, TEST_BOOTSTRAP_SECRET } from './helpers.js';

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: ns }
spec:
  include: [routes.yaml]
  services:
    - name: backend
      versions: [{ name: v1 }, { name: v2 }]
    - name: backend
      namespace: shop
      versions: [{ name: v1 }, { name: v2 }]
    - name: frontend
      namespace: shop
      upstreams: [backend]
`;

const ROUTES = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: split, namespace: shop }
spec:
  parentRefs: [{ name: backend }]
  rules:
    - backendRefs: [{ name: backend-v1, weight: 90 }, { name: backend-v2, weight: 10 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: split }
spec:
  parentRefs: [{ name: backend }]
  rules:
    - backendRefs: [{ name: backend-v1, weight: 30 }, { name: backend-v2, weight: 70 }]
`;

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
let front: FakeProxy;
let routesFile: string;

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH);
  routesFile = await files.write('routes.yaml', ROUTES);
  plane = await startControlPlane({ bootstrapSecret: TEST_BOOTSTRAP_SECRET, configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: () => {} });
  front = await connect(plane.address);
  front.socket.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.startsWith('{"type":"snapshot"')) front.send({ type: 'ack', version: (JSON.parse(line) as { version: number }).version });
    }
  });
  front.send({ type: 'hello', proxy: sidecar('frontend.shop-0', 'frontend.shop', 'default', { upstreams: listeners('backend.shop') }) });
  await eventually(() => plane.model.proxy('frontend.shop-0')?.ackedVersion !== undefined, { what: 'first ACK' });
});

after(async () => {
  front.socket.destroy();
  await plane.close();
  await files.remove();
});

test('services are listed by key, with their namespace outside default', async () => {
  const { body } = await getJson<ServiceView[]>(plane, '/v1/services');
  const list = Array.isArray(body) ? body : (body as unknown as { services: ServiceView[] }).services;
  assert.deepEqual(
    list.map((s) => [s.name, s.namespace]),
    [
      ['backend', undefined],
      ['backend.shop', 'shop'],
      ['frontend.shop', 'shop'],
    ],
  );
  assert.deepEqual(list.find((s) => s.name === 'frontend.shop')?.upstreams, [{ service: 'backend.shop' }]);
  const text = renderStatus(list, [], { files: [], loadedAt: null, services: [], routes: [], policies: [], reloadFailed: null, restoredFrom: null });
  assert.match(text.split('\n')[0]!, /^NAMESPACE +SERVICE +VERSION/);
  assert.match(text, /\nshop +frontend +default +frontend\.shop-0 /);
  assert.match(text, /\ndefault +backend +v1,v2 /);
});

test('the weights path takes svc.ns and edits that namespace’s producer route only', async () => {
  const view = await getJson<WeightsView>(plane, '/v1/services/backend.shop/weights');
  assert.equal(view.status, 200);
  assert.deepEqual(view.body.weights, { v1: 90, v2: 10 });
  assert.deepEqual(
    view.body.rules.map((r) => r.route),
    ['shop/split'],
  );
  const res = await fetch(`http://127.0.0.1:${plane.address.port}/v1/services/backend.shop/weights`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...adminAuth(plane) },
    body: JSON.stringify({ weights: { v1: 50, v2: 50 } }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const change = (await res.json()) as WeightsChange;
  assert.deepEqual([change.service, change.before, change.after], ['backend.shop', { v1: 90, v2: 10 }, { v1: 50, v2: 50 }]);
  assert.deepEqual(
    change.callers.map((c) => c.id),
    ['frontend.shop-0'],
  );
  const text = await readFile(routesFile, 'utf8');
  assert.match(text, /name: backend-v1, weight: 50 \}, \{ name: backend-v2, weight: 50/);
  assert.match(text, /name: backend-v1, weight: 30 \}, \{ name: backend-v2, weight: 70/, 'default/split is untouched');
  const other = await getJson<WeightsView>(plane, '/v1/services/backend/weights');
  assert.deepEqual(other.body.weights, { v1: 30, v2: 70 });
});
