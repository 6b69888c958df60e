// `--baseline DIR`: a built checkout is taken with its git commit (and whether it has
// uncommitted changes); a folder that is not built is refused before anything starts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkBuilt, existingBaseline } from '../../bench/baseline.js';

function git(dir: string, ...args: string[]): string {
  const r = spawnSync('git', ['-C', dir, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

/** A folder shaped like a built checkout: the files startTrellisPair needs. */
function built(dir: string): void {
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  mkdirSync(path.join(dir, 'dist', 'src', 'cli'), { recursive: true });
  writeFileSync(path.join(dir, 'bin', 'trellis.js'), '// cli\n');
  writeFileSync(path.join(dir, 'dist', 'src', 'cli', 'main.js'), '// main\n');
}

describe('bench baseline checkout', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'trellis-baseline-test-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('refuses a folder that is not a built checkout', () => {
    const dir = path.join(tmp, 'empty');
    mkdirSync(dir);
    assert.throws(() => checkBuilt(dir), /bin\/trellis\.js is missing/);
    mkdirSync(path.join(dir, 'bin'));
    writeFileSync(path.join(dir, 'bin', 'trellis.js'), '');
    assert.throws(() => existingBaseline(dir, dir), /dist\/src\/cli\/main\.js is missing/);
  });

  it('takes a built git checkout with its commit, and says when its tracked files changed', () => {
    const base = path.join(tmp, 'base');
    const self = path.join(tmp, 'self');
    for (const d of [base, self]) {
      mkdirSync(d);
      git(d, 'init', '-q');
      built(d);
      git(d, 'add', 'bin');
      git(d, 'commit', '-q', '-m', 'one');
    }
    const info = existingBaseline(path.relative(process.cwd(), base), self).info;
    assert.deepEqual(info, { dir: base, commit: git(base, 'rev-parse', 'HEAD'), trellisCommit: git(self, 'rev-parse', 'HEAD') });
    writeFileSync(path.join(self, 'bin', 'trellis.js'), '// changed\n');
    writeFileSync(path.join(base, 'untracked.txt'), 'untracked files are not changes to the build\n');
    const changed = existingBaseline(base, self).info;
    assert.equal(changed.trellisDirty, true);
    assert.equal(changed.dirty, undefined);
  });

  it('takes a built folder that is not a git checkout, without a commit', () => {
    const dir = path.join(tmp, 'plain');
    built(dir);
    assert.deepEqual(existingBaseline(dir, dir).info, { dir });
  });
});
