// The control plane's Prometheus HTTP service discovery endpoint: every connected
// proxy's metrics endpoint, with its labels, in the `http_sd_configs` format; proxies
// gone, and addresses Prometheus could not use, left out.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { PrometheusTargetGroup } from '../../src/api/admin.js';
import { adminAuth, connect, gateway, MESH_YAML, routesYaml, sidecar, tempDir, type FakeProxy, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { eventually } from '../helpers/eventually.js';

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
const proxies: FakeProxy[] = [];

async function join(info: ReturnType<typeof sidecar>): Promise<FakeProxy> {
  const p = await connect(plane.address);
  proxies.push(p);
  p.send({ type: 'hello', proxy: info });
  await p.snapshot();
  return p;
}

async function targets(): Promise<{ status: number; type: string | null; groups: PrometheusTargetGroup[] }> {
  const res = await fetch(`http://${plane.address.host}:${plane.address.port}/v1/prometheus/targets`, { headers: adminAuth(plane) });
  return { status: res.status, type: res.headers.get('content-type'), groups: (await res.json()) as PrometheusTargetGroup[] };
}

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', routesYaml('backend'));
  plane = await startControlPlane({ bootstrapSecret: TEST_BOOTSTRAP_SECRET, configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: () => {} });
});

after(async () => {
  for (const p of proxies) p.socket.destroy();
  await plane.close();
  await files.remove();
});

test('no proxy connected: an empty list, as JSON Prometheus accepts', async () => {
  const t = await targets();
  assert.equal(t.status, 200);
  // Prometheus's http_sd wants exactly application/json (an optional utf-8 charset).
  assert.match(t.type ?? '', /^application\/json(; charset=utf-8)?$/);
  assert.deepEqual(t.groups, []);
});

test('every connected proxy is a target: its admin address, /metrics, service, version, instance id and kind', async () => {
  await join(sidecar('backend-v1-0', 'backend', 'v1', { admin: { host: '127.0.0.1', port: 23001 } }));
  await join(sidecar('frontend-0', 'frontend', 'default', { admin: { host: '::1', port: 23002 } }));
  await join({ ...gateway('trellis-ingress', ['frontend']), admin: { host: '0.0.0.0', port: 23003 } });
  const t = await targets();
  assert.deepEqual(t.groups, [
    {
      targets: ['127.0.0.1:23001'],
      labels: { __metrics_path__: '/metrics', service: 'backend', version: 'v1', instance_id: 'backend-v1-0', kind: 'sidecar' },
    },
    {
      targets: ['[::1]:23002'],
      labels: { __metrics_path__: '/metrics', service: 'frontend', version: 'default', instance_id: 'frontend-0', kind: 'sidecar' },
    },
    {
      // Listening on every address: scraped on loopback.
      targets: ['127.0.0.1:23003'],
      labels: { __metrics_path__: '/metrics', service: 'trellis-ingress', version: 'default', instance_id: 'trellis-ingress', kind: 'gateway' },
    },
  ]);
});

test('a proxy whose admin address Prometheus could not use is left out, the others stay listed', async () => {
  for (const [i, admin] of [
    { host: 'evil.example/x?y', port: 23010 },
    { host: '127.0.0.1', port: 0 },
    { host: '127.0.0.1', port: 70000 },
    { host: '', port: 23011 },
    { host: 'a b', port: 23012 },
  ].entries()) {
    await join(sidecar(`backend-v1-odd-${i}`, 'backend', 'v1', { admin }));
  }
  const ids = (await targets()).groups.map((g) => g.labels.instance_id);
  assert.deepEqual(ids, ['backend-v1-0', 'frontend-0', 'trellis-ingress']);
});

test('a proxy that disconnects leaves the list', async () => {
  const p = await join(sidecar('backend-v2-0', 'backend', 'v2', { admin: { host: '127.0.0.1', port: 23020 } }));
  assert.ok((await targets()).groups.some((g) => g.labels.instance_id === 'backend-v2-0'));
  await p.close();
  await eventually(async () => assert.ok(!(await targets()).groups.some((g) => g.labels.instance_id === 'backend-v2-0')));
});
