// `trellis up --isolate` run by a user who is not root: it refuses before making anything,
// naming what is missing, and says the mesh runs without --isolate. Run for real as the
// `nobody` uid (setpriv), so the preflight the runner calls is the one tested; skipped
// where this test is not root itself (it then is the non-root case, covered by the unit
// test of isolationMissing).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, chmodSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO, TRELLIS } from '../helpers/mesh-run.js';
import { findOnPath } from '../../src/runner/on-path.js';
import { NETNS_PREFIX, run } from '../../src/runner/isolation/network.js';

const NOBODY = 65534;
const skip = process.getuid?.() !== 0 || findOnPath('setpriv') === undefined ? 'needs root (to run the command as nobody) and setpriv' : false;

test('trellis up --isolate without root refuses, naming root, and makes nothing', { skip, timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-isolate-nobody-'));
  chmodSync(dir, 0o777);
  const netnsBefore = (await run('ip', ['netns', 'list']).catch(() => '')).split('\n').filter((l) => l.startsWith(NETNS_PREFIX));
  try {
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      execFile(
        'setpriv',
        [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          '--clear-groups',
          '--',
          process.execPath,
          TRELLIS,
          'up',
          join(REPO, 'test/fixtures/config/isolated/mesh.yaml'),
          '--isolate',
          '--state-dir',
          join(dir, 'state'),
          '--prometheus',
          'off',
        ],
        { cwd: dir, timeout: 30_000, killSignal: 'SIGKILL', env: { ...process.env, HOME: dir, TRELLIS_HOME: dir } },
        (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, text: `${stdout}${stderr}` }),
      );
    });
    assert.equal(out.code, 1, out.text);
    assert.match(out.text, /--isolate` needs root \(run it with sudo/);
    assert.match(out.text, /without --isolate the mesh runs on loopback and needs none of it/);
    const netnsAfter = (await run('ip', ['netns', 'list']).catch(() => '')).split('\n').filter((l) => l.startsWith(NETNS_PREFIX));
    assert.deepEqual(netnsAfter, netnsBefore, 'no namespace was made');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
