// Ctrl-C while `trellis up` waits for its instances to be healthy: it stops everything and
// exits (it used to print "not healthy after 60 s" and then hang, held by a health watch
// started after the stop).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { REPO, TRELLIS } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';

let child: ChildProcess | undefined;
let dir: string | undefined;
after(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

test('Ctrl-C while waiting for health stops the mesh and exits', { timeout: 120_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-up-interrupted-'));
  // An app that never listens: the mesh waits (up to 60 s) for it to be healthy.
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: interrupted }
spec:
  services:
    - name: sleeper
      command: node -e "setInterval(() => {}, 1000)"
`,
  );
  const state = join(dir, 'state');
  const proc = spawn(process.execPath, [TRELLIS, 'up', join(dir, 'mesh.yaml'), '--admin', '127.0.0.1:0', '--state-dir', state, '--prometheus', 'off'], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  let code: number | null | undefined;
  proc.on('exit', (c) => (code = c));
  // state.json is written once every process is started, just before the wait for health.
  await eventually(() => existsSync(join(state, 'state.json')), { what: 'the mesh started', timeoutMs: 60_000 });
  proc.kill('SIGINT');
  await eventually(() => code !== undefined, { what: 'trellis up exiting after SIGINT', timeoutMs: 30_000 }).catch((err: unknown) => {
    assert.fail(`${String(err)}; its output:\n${out}`);
  });
  assert.equal(code, 0, out);
  assert.match(out, /stopped\./);
  assert.doesNotMatch(out, /not healthy after/, 'a stop is not a health failure');
});
