// A restarted control plane learns the mesh again as proxies reconnect one by one. A
// proxy that resumes (it serves on a snapshot from before) is sent nothing until the
// instances its snapshot routes to are registered again, so it never gets a snapshot
// that drops live endpoints only because their proxies reconnected later; an instance
// whose proxy resumed stays routable while its health is still unknown; and an
// instance that never comes back holds nobody past the resume window.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { after, test } from 'node:test';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { ConfigView } from '../../src/api/admin.js';
import type { CheckResult } from '../../src/control/sources/health-checker.js';
import { TrellisError } from '../../src/errors.js';
import { TRELLIS } from '../helpers/mesh-run.js';
import { adminAuth, brokenRoutesYaml, connect, getJson, MESH_YAML, routesYaml, sidecar, tempDir, type FakeProxy, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { eventually } from '../helpers/eventually.js';

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
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    log: (l) => logs.push(l),
    pushDebounceMs: 5,
    resumeWaitMs,
    health: { probe: () => new Promise<CheckResult>(() => {}) },
  });
  cleanup.push(
    () => files.remove(),
    () => p.close(),
  );
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
  assert.deepEqual(
    first.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints.map((e) => e.id),
    ['backend-v1-r'],
    'its first snapshot keeps the resumed instance, whose health is not known yet',
  );
});

test('an instance that never comes back holds the resumed proxies only until the window closes', async () => {
  const logs: string[] = [];
  const p = await plane(300, logs);
  const front = await proxy(p);
  front.send({ type: 'hello', proxy: { ...sidecar('frontend-r', 'frontend'), resumed: { endpoints: ['backend-v1-gone'] } } });
  const first = await front.snapshot(5000);
  assert.deepEqual(first.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints, []);
  assert.ok(
    logs.some((l) => /without every instance they knew/.test(l)),
    logs.join('\n'),
  );
});

// A control plane restarted (by the runner, after a crash or a kill) while the files on
// disk do not load used to exit 1, and the runner restarted it with a growing backoff,
// the admin API down, until the files were fixed. It now serves the last good config,
// kept in its state folder, and reports the files exactly as a refused live edit is.
test('a restart with files that do not load serves the last good config, reports the problems, and applies the files once fixed', async () => {
  const files = await tempDir();
  cleanup.push(() => files.remove());
  const stateDir = `${files.dir}/state`;
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  const routesFile = await files.write('routes.yaml', routesYaml('backend-v2'));
  const start = (logs: string[]): Promise<ControlPlane> =>
    startControlPlane({
      bootstrapSecret: TEST_BOOTSTRAP_SECRET,
      configPaths: [mesh],
      admin: { host: '127.0.0.1', port: 0 },
      stateDir,
      log: (l) => logs.push(l),
      watchDebounceMs: 20,
      pushDebounceMs: 5,
      health: { schedule: false },
    });
  const backendOf = (p: ControlPlane): string | undefined => p.model.config.routes[0]?.resource.spec.rules[0]?.backendRefs?.[0]?.name;

  const first = await start([]);
  assert.equal(backendOf(first), 'backend-v2');
  await first.close();

  await writeFile(routesFile, brokenRoutesYaml('backend-v9'));
  const logs: string[] = [];
  const second = await start(logs);
  cleanup.push(() => second.close());
  assert.equal(backendOf(second), 'backend-v2', 'the last good config is in force');
  const view = (await getJson<ConfigView>(second, '/v1/config')).body;
  assert.ok(view.reloadFailed, 'the problems are reported in /v1/config, as a refused live edit is');
  const problem = view.reloadFailed.problems[0]!;
  assert.match(problem.file, /routes\.yaml$/);
  assert.equal(problem.path, 'spec.parentRefs[0].name');
  assert.match(problem.text, /backend-v9/);
  assert.match(view.restoredFrom?.file ?? '', /last-good-config\.json$/);
  assert.deepEqual(view.routes, ['default/backend-split']);
  assert.ok(
    logs.some((l) => /serving the last good config/.test(l)),
    logs.join('\n'),
  );
  assert.ok(
    logs.some((l) => l.startsWith('control: config: ') && l.includes('routes.yaml') && l.includes('spec.parentRefs[0].name') && l.includes('backend-v9')),
    logs.join('\n'),
  );

  // A proxy gets the last good config.
  const front = await connect(second.address);
  cleanup.push(() => void front.socket.destroy());
  front.send({ type: 'hello', proxy: sidecar('frontend-0', 'frontend') });
  const snap = await front.snapshot();
  assert.deepEqual(
    snap.snapshot.upstreams.backend!.routes.map((r) => r.backends.map((b) => b.backend)),
    [['backend-v2']],
  );

  // Fixing the file applies it and clears the report.
  await writeFile(routesFile, routesYaml('backend-v1'));
  await eventually(() => backendOf(second) === 'backend-v1', { what: 'the fixed file applied' });
  const fixed = (await getJson<ConfigView>(second, '/v1/config')).body;
  assert.equal(fixed.reloadFailed, null);
  assert.equal(fixed.restoredFrom, null);
  const pushed = await front.snapshot(5000);
  assert.deepEqual(
    pushed.snapshot.upstreams.backend!.routes.map((r) => r.backends.map((b) => b.backend)),
    [['backend-v1']],
  );
});

test('the last good config is kept 0600, and a first start with files that do not load is still refused', async () => {
  const files = await tempDir();
  cleanup.push(() => files.remove());
  const stateDir = `${files.dir}/state`;
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', brokenRoutesYaml('nope'));
  await assert.rejects(
    startControlPlane({ bootstrapSecret: TEST_BOOTSTRAP_SECRET, configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, stateDir, log: () => {} }),
    (err: unknown) => err instanceof TrellisError && err.code === 'TRELLIS_E_CONFIG_INVALID',
  );
  await files.write('routes.yaml', routesYaml('backend-v1'));
  const p = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    stateDir,
    log: () => {},
    health: { schedule: false },
  });
  await p.close();
  const saved = await stat(`${stateDir}/control/last-good-config.json`);
  assert.equal(saved.mode & 0o777, 0o600);
  assert.equal((await stat(`${stateDir}/control`)).mode & 0o777, 0o700);
});

// The same through the command the runner supervises: `trellis control` keeps the last
// good config beside the mesh file by default and comes back up on it.
test('`trellis control` restarted with a broken file stays up on the last good config', async () => {
  const files = await tempDir();
  cleanup.push(() => files.remove());
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  const routesFile = await files.write('routes.yaml', routesYaml('backend-v2'));
  const runControl = async (): Promise<{ url: string; child: ChildProcess; output: () => string }> => {
    const child = spawn(process.execPath, [TRELLIS, 'control', '--config', mesh, '--admin', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TRELLIS_HOME: `${files.dir}/home` },
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    cleanup.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    });
    const url = await eventually(
      () => {
        if (child.exitCode !== null) throw new Error(`trellis control exited with ${child.exitCode}:\n${out}`);
        const listening = /listening on (http:\/\/\S+)/.exec(out)?.[1];
        assert.ok(listening, 'trellis control listening');
        return listening;
      },
      { timeoutMs: 20_000 },
    );
    return { url, child, output: () => out };
  };

  const first = await runControl();
  first.child.kill('SIGTERM');
  await new Promise((resolve) => first.child.once('exit', resolve));
  await writeFile(routesFile, brokenRoutesYaml('backend-v9'));

  const second = await runControl();
  // The admin token is kept in the state folder beside the mesh file, the same across restarts.
  const adminToken = (await readFile(`${files.dir}/.trellis/control/admin-token`, 'utf8')).trim();
  const view = (await (await fetch(`${second.url}/v1/config`, { headers: adminAuth({ adminToken }) })).json()) as ConfigView;
  assert.deepEqual(view.routes, ['default/backend-split']);
  assert.ok(
    view.reloadFailed?.problems.some((p) => /backend-v9/.test(p.text)),
    JSON.stringify(view),
  );
  assert.match(view.restoredFrom?.file ?? '', /\.trellis\/control\/last-good-config\.json$/);
  assert.match(second.output(), /spec\.parentRefs\[0\]\.name/);
});
