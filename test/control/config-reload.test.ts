import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { ConfigView } from '../../src/api/admin.js';
import { TrellisError } from '../../src/errors.js';
import { brokenRoutesYaml, connect, getJson, MESH_YAML, routesYaml, sidecar, tempDir, type FakeProxy, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { eventually } from '../helpers/eventually.js';

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
let front: FakeProxy;
let routesFile: string;
const logs: string[] = [];

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  routesFile = await files.write('routes.yaml', routesYaml('backend-v1'));
  plane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    log: (l) => logs.push(l),
    watchDebounceMs: 30,
    pushDebounceMs: 5,
    health: { schedule: false },
  });
  front = await connect(plane.address);
  front.send({ type: 'hello', proxy: sidecar('frontend-0', 'frontend') });
  const first = await front.snapshot();
  front.send({ type: 'ack', version: first.version });
});

after(async () => {
  front.socket.destroy();
  await plane.close();
  await files.remove();
});

const routeBackends = (m: Awaited<ReturnType<FakeProxy['snapshot']>>) => m.snapshot.upstreams.backend!.routes.map((r) => r.backends.map((b) => b.backend));

test('rewriting a route file pushes a new snapshot to the proxies it concerns', async () => {
  await writeFile(routesFile, routesYaml('backend-v2'));
  const pushed = await front.snapshot(5000);
  assert.equal(pushed.version, 2);
  assert.deepEqual(routeBackends(pushed), [['backend-v2']]);
  assert.ok(logs.some((l) => l.startsWith('control: config reloaded')));
});

test('a file replaced by rename (as editors save) is picked up too', async () => {
  const tmp = await files.write('routes.yaml.tmp', routesYaml('backend'));
  await rename(tmp, routesFile);
  const pushed = await front.snapshot(5000);
  assert.deepEqual(routeBackends(pushed), [['backend']]);
});

test('a broken file keeps the last good config in force and shows the problem in /v1/config', async () => {
  const before = (await getJson<ConfigView>(plane, '/v1/config')).body;
  assert.equal(before.reloadFailed, null);
  assert.deepEqual(before.routes, ['default/backend-split']);

  await writeFile(routesFile, brokenRoutesYaml('backend-v9'));
  const view = await eventually(async () => {
    const v = (await getJson<ConfigView>(plane, '/v1/config')).body;
    assert.ok(v.reloadFailed, 'the failed reload');
    return v;
  });
  const problem = view.reloadFailed!.problems[0]!;
  assert.match(problem.file, /routes\.yaml$/);
  assert.equal(problem.path, 'spec.parentRefs[0].name');
  assert.match(problem.text, /backend-v9/);
  assert.equal(view.loadedAt, before.loadedAt, 'the config in force did not change');
  assert.ok(logs.some((l) => l.startsWith('control: config: ') && l.includes('backend-v9')));
  assert.deepEqual(
    front.pending().filter((m) => m.type === 'snapshot'),
    [],
    'proxies keep their snapshot',
  );
  assert.deepEqual(
    plane.model.config.routes[0]!.resource.spec.rules[0]!.backendRefs!.map((b) => b.name),
    ['backend'],
  );

  // Fixing the file clears the problem and pushes again. The stream is ordered, so a
  // snapshot pushed for the failed reload would have come before this one: the first
  // snapshot after the failure being the fix's shows none was (no sleep needed to see it).
  await writeFile(routesFile, routesYaml('backend-v1'));
  const pushed = await front.snapshot(5000);
  assert.deepEqual(routeBackends(pushed), [['backend-v1']], 'proxies kept their snapshot until the fix');
  const fixed = (await getJson<ConfigView>(plane, '/v1/config')).body;
  assert.equal(fixed.reloadFailed, null);
});

test('invalid YAML is a problem with a line number, not a crash', async () => {
  await writeFile(routesFile, 'apiVersion: [unclosed\n');
  const view = await eventually(async () => {
    const v = (await getJson<ConfigView>(plane, '/v1/config')).body;
    assert.ok(v.reloadFailed, 'the failed reload');
    return v;
  });
  assert.ok(view.reloadFailed!.problems.some((p) => p.line !== undefined));
  await writeFile(routesFile, routesYaml('backend-v1'));
  await eventually(async () => (await getJson<ConfigView>(plane, '/v1/config')).body.reloadFailed === null, { what: 'recovery' });
});

test('a config with problems at start-up is refused with every problem listed', async () => {
  const dir = await tempDir();
  try {
    const mesh = await dir.write('mesh.yaml', MESH_YAML);
    await dir.write('routes.yaml', brokenRoutesYaml('nope'));
    await assert.rejects(
      startControlPlane({ bootstrapSecret: TEST_BOOTSTRAP_SECRET, configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: () => {} }),
      (err: unknown) => {
        assert.ok(err instanceof TrellisError);
        assert.equal(err.code, 'TRELLIS_E_CONFIG_INVALID');
        const problems = err.params.problems as { message: string }[];
        assert.equal(problems.length, 1);
        assert.match(problems[0]!.message, /"nope"/);
        return true;
      },
    );
  } finally {
    await dir.remove();
  }
});

test('a route file written into an include folder that held none is loaded and pushed', async () => {
  const dir = await tempDir();
  let plane2: ControlPlane | undefined;
  let proxy: FakeProxy | undefined;
  try {
    const mesh = await dir.write('mesh.yaml', MESH_YAML.replace('include: [routes.yaml]', 'include: [routes]'));
    await mkdir(join(dir.dir, 'routes'));
    await dir.write('routes/README.md', 'routes go here');
    plane2 = await startControlPlane({
      bootstrapSecret: TEST_BOOTSTRAP_SECRET,
      configPaths: [mesh],
      admin: { host: '127.0.0.1', port: 0 },
      log: () => {},
      watchDebounceMs: 30,
      pushDebounceMs: 5,
      health: { schedule: false },
    });
    proxy = await connect(plane2.address);
    proxy.send({ type: 'hello', proxy: sidecar('frontend-0', 'frontend') });
    const first = await proxy.snapshot();
    proxy.send({ type: 'ack', version: first.version });
    assert.deepEqual(routeBackends(first), []);
    await dir.write('routes/split.yaml', routesYaml('backend-v2'));
    const pushed = await proxy.snapshot(5000);
    assert.deepEqual(routeBackends(pushed), [['backend-v2']]);
  } finally {
    proxy?.socket.destroy();
    await plane2?.close();
    await dir.remove();
  }
});
