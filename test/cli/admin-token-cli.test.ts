// The admin token from the user's side: `trellis control` keeps it 0600 in its state
// folder and leaves a pointer for the CLI, so `trellis status` works with no flag; a
// wrong token is a clear refusal (exit 1), a missing --admin-token-file a usage error.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO, TRELLIS } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { MESH_YAML, routesYaml, tempDir } from '../control/helpers.js';
import { controlPointerFile, TRELLIS_HOME_ENV } from '../../src/security/admin-token.js';

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TRELLIS, ...args], { cwd: REPO, env, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

test('`trellis control` keeps the admin token 0600 and `trellis status` finds it with no flag; the pointer goes when it stops', async () => {
  const files = await tempDir();
  cleanup.push(() => files.remove());
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', routesYaml('backend-v1'));
  const home = join(files.dir, 'home');
  const env: NodeJS.ProcessEnv = { ...process.env, [TRELLIS_HOME_ENV]: home };
  delete env.TRELLIS_ADMIN_TOKEN;
  const child = spawn(process.execPath, [TRELLIS, 'control', '--config', mesh, '--admin', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanup.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  const url = await eventually(
    () => {
      const m = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      assert.ok(m, out);
      return m;
    },
    { timeoutMs: 20_000 },
  );
  const tokenFile = join(files.dir, '.trellis', 'control', 'admin-token');
  assert.equal((await stat(tokenFile)).mode & 0o777, 0o600, 'the token file is 0600');
  assert.equal((await stat(join(files.dir, '.trellis', 'control'))).mode & 0o777, 0o700);
  const token = (await readFile(tokenFile, 'utf8')).trim();
  assert.match(token, /^tat1\.[A-Za-z0-9_-]{43}$/);
  const pointer = controlPointerFile(url, env);
  assert.equal((await stat(pointer)).mode & 0o777, 0o600);
  assert.ok(!(await readFile(pointer, 'utf8')).includes(token), 'the pointer names the file, it holds no token');

  const status = await cli(['status', '--control', url], env);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /SERVICE\s+VERSION\s+INSTANCE/);
  const identity = await cli(['identity', '--control', url], env);
  assert.equal(identity.code, 0, identity.stderr);
  assert.match(identity.stdout, /trust domain cluster\.local/);

  const wrong = await cli(['status', '--control', url], { ...env, TRELLIS_ADMIN_TOKEN: 'tat1.wrong' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /^trellis status: the control plane refused the admin credential \(the bearer token is not the admin token\)/);
  const elsewhere = await cli(['route', 'weights', 'backend', '--control', url], { ...env, [TRELLIS_HOME_ENV]: join(files.dir, 'other-home') });
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.stderr, /needs its token \(the request has no Authorization header\)/);
  const byFile = await cli(['route', 'weights', 'backend', '--control', url, '--admin-token-file', tokenFile], {
    ...env,
    [TRELLIS_HOME_ENV]: join(files.dir, 'other-home'),
  });
  assert.equal(byFile.code, 0, byFile.stderr);
  const noFile = await cli(['status', '--control', url, '--admin-token-file', join(files.dir, 'nope')], env);
  assert.equal(noFile.code, 2);
  assert.match(noFile.stderr, /--admin-token-file: ENOENT/);
  assert.ok(!out.includes(token), 'the control plane never prints its token');

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(existsSync(pointer), false, 'the pointer is removed when the control plane stops');
  assert.equal(existsSync(tokenFile), true, 'the token stays for the next start');
});
