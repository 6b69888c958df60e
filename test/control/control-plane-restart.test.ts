// A restarted control plane learns the mesh again as proxies reconnect one by one. A
// proxy that resumes (it serves on a snapshot from before) is sent nothing until the
// instances its snapshot routes to are registered again, so it never gets a snapshot
// that drops live endpoints only because their proxies reconnected later; an instance
// whose proxy resumed stays routable while its health is still unknown; and an
// instance that never comes back holds nobody past the resume window.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startControlPlane, type ControlPlane } from '../../src/control/admin-server.js';
import type { CheckResult } from '../../src/control/health-checker.js';
import { connect, MESH_YAML, routesYaml, sidecar, tempDir, type FakeProxy } from './helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function plane(resumeWaitMs: number, logs: string[]): Promise<ControlPlane> {
  const files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', routesYaml('backend-v1'));
  // Checks never finish: every instance's health stays unknown for the whole test.
  const p = await startControlPlane({
    configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: (l) => logs.push(l), pushDebounceMs: 5, resumeWaitMs,
    health: { probe: () => new Promise<CheckResult>(() => {}) },
  });
  cleanup.push(() => files.remove(), () => p.close());
  return p;
}

async function proxy(p: ControlPlane): Promise<FakeProxy> {
  const c = await connect(p.address);
  cleanup.push(() => void c.socket.destroy());
  return c;
}

test('a resumed proxy waits for the instances it knew, which stay routable while their health is unknown', async () => {
  const p = await plane(30_000, []);
  const front = await proxy(p);
  front.send({ type: 'hello', proxy: { ...sidecar('frontend-r', 'frontend'), resumed: { endpoints: ['backend-v1-r'] } } });
  // Nothing for the frontend until backend-v1-r is back; a fresh proxy is answered at once meanwhile.
  const other = await proxy(p);
  other.send({ type: 'hello', proxy: sidecar('frontend-fresh', 'frontend') });
  const fresh = await other.snapshot();
  assert.deepEqual(fresh.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints, [], 'a fresh proxy sees only healthy instances');
  assert.equal(front.pending().filter((m) => m.type === 'snapshot').length, 0, 'the resumed proxy was sent nothing yet');

  const back = await proxy(p);
  back.send({ type: 'hello', proxy: { ...sidecar('backend-v1-r', 'backend', 'v1'), resumed: { endpoints: [] } } });
  const first = await front.snapshot();
  assert.deepEqual(first.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints.map((e) => e.id), ['backend-v1-r'],
    'its first snapshot keeps the resumed instance, whose health is not known yet');
});

test('an instance that never comes back holds the resumed proxies only until the window closes', async () => {
  const logs: string[] = [];
  const p = await plane(300, logs);
  const front = await proxy(p);
  front.send({ type: 'hello', proxy: { ...sidecar('frontend-r', 'frontend'), resumed: { endpoints: ['backend-v1-gone'] } } });
  const first = await front.snapshot(5000);
  assert.deepEqual(first.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints, []);
  assert.ok(logs.some((l) => /without every instance they knew/.test(l)), logs.join('\n'));
});
