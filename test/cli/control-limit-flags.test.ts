// `trellis control`'s server limits as flags (--max-connections, --header-timeout,
// --request-timeout, --hello-timeout): they parse, bad values are usage errors naming the
// flag, and a started control plane holds clients to them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { limitsFromFlags, help } from '../../src/cli/control.js';
import { DEFAULT_CONTROL_SERVER_LIMITS } from '../../src/control/server-limits.js';
import { TRELLIS } from '../helpers/mesh-run.js';
import { connect, MESH_YAML, openStream, routesYaml, tempDir, type FakeProxy } from '../control/helpers.js';
import { TRELLIS_HOME_ENV } from '../../src/security/admin-token.js';
import { eventually } from '../helpers/eventually.js';

test('the flags parse into the limits, the others keep their defaults', () => {
  assert.deepEqual(limitsFromFlags({}), DEFAULT_CONTROL_SERVER_LIMITS);
  assert.deepEqual(limitsFromFlags({ 'max-connections': '500', 'header-timeout': '5s', 'request-timeout': '2m', 'hello-timeout': '2500ms' }), {
    maxConnections: 500,
    headersTimeoutMs: 5000,
    requestTimeoutMs: 120_000,
    helloTimeoutMs: 2500,
  });
  assert.deepEqual(limitsFromFlags({ 'hello-timeout': '3000' }), { ...DEFAULT_CONTROL_SERVER_LIMITS, helloTimeoutMs: 3000 });
  for (const flag of ['--max-connections', '--header-timeout', '--request-timeout', '--hello-timeout']) assert.ok(help.includes(flag), `help lists ${flag}`);
});

test('bad values are usage errors naming the flag', () => {
  const cases: [Parameters<typeof limitsFromFlags>[0], RegExp][] = [
    [{ 'max-connections': '0' }, /--max-connections expects a whole number of at least 1, got "0"/],
    [{ 'max-connections': 'lots' }, /--max-connections expects a whole number/],
    [{ 'max-connections': '-5' }, /--max-connections expects a whole number/],
    [{ 'header-timeout': 'soon' }, /--header-timeout expects a duration such as 500ms, 30s or 2m, got "soon"/],
    [{ 'hello-timeout': '0s' }, /--hello-timeout expects a duration of at least 1ms/],
    [{ 'request-timeout': '1.5ms' }, /--request-timeout expects a duration of at least 1ms in whole milliseconds/],
    [{ 'header-timeout': '2m' }, /--header-timeout \(120000 ms\) must not be longer than --request-timeout \(60000 ms\)/],
  ];
  for (const [flags, message] of cases) {
    assert.throws(
      () => limitsFromFlags(flags),
      (err: Error & { code?: string }) => err.code === 'TRELLIS_E_USAGE' && message.test(err.message),
      JSON.stringify(flags),
    );
  }
});

test('trellis control refuses a bad limit with exit 2 before it starts', async () => {
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [TRELLIS, 'control', '--hello-timeout', 'never', '--admin', '127.0.0.1:0', '/nonexistent/mesh.yaml'],
      { timeout: 30_000 },
      (err, _o, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--hello-timeout expects a duration/);
});

test('trellis control --max-connections holds its server to the cap', async () => {
  const files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', routesYaml('backend-v1'));
  const env: NodeJS.ProcessEnv = { ...process.env, [TRELLIS_HOME_ENV]: files.dir, TRELLIS_ADMIN_TOKEN: 'tat1.limits-test' };
  const child = spawn(process.execPath, [TRELLIS, 'control', '--config', mesh, '--admin', '127.0.0.1:0', '--max-connections', '2'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const streams: FakeProxy[] = [];
  try {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.resume();
    const url = await eventually(() => /listening on http:\/\/([\d.]+):(\d+)/.exec(out) ?? false, { timeoutMs: 30_000, what: 'the control plane listening' });
    const address = { host: url[1]!, port: Number(url[2]) };
    for (let i = 0; i < 2; i++) streams.push(await connect(address));
    await assert.rejects(openStream(address), 'the third connection is closed on arrival');
    await streams.shift()!.close();
    streams.push(await eventually(() => connect(address), { what: 'a stream once one closed' }));
  } finally {
    for (const s of streams) s.socket.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await files.remove();
  }
});
