// The local runner's process supervisor at stop: what a process (or one it started that
// left its group) writes around and after the stop never ends the runner. Before the
// fix, output read after the log file was ended was an unhandled ERR_STREAM_WRITE_AFTER_END
// and `trellis up` exited 1 on Ctrl-C (seen in isolated-shop-topologies under load).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervised } from '../../src/runner/supervisor.js';
import { eventually } from '../helpers/eventually.js';

test('output after a stop is read while the pipes drain, or dropped once the log ended, never a crash', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-supervisor-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'proc.log');
  const marker = join(dir, 'late-written');
  // Two writers outside the process group (setsid), so the stop's SIGKILL of the group
  // misses them and they hold the output pipes: one writes within the stop's drain wait,
  // one after it (the log is ended by then).
  const script = [
    `setsid sh -c 'sleep 0.3; echo drained-line' &`,
    `setsid sh -c 'sleep 1.6; echo dropped-line; echo dropped-err >&2; sleep 0.2; touch ${marker}' &`,
    'echo early-line',
    'exec sleep 30',
  ].join('\n');
  const s = new Supervised({ name: 'proc', command: ['/bin/sh', '-c', script], cwd: dir, env: process.env, logFile, restart: false });
  s.start();
  await eventually(() => readFileSync(logFile, 'utf8').includes('early-line'), { what: 'the first line in the log' });
  await s.stop();
  // The late writer wrote (and its bytes reached this process's pipe) before the marker.
  await eventually(() => existsSync(marker), { timeoutMs: 10_000, what: 'the late writer done' });
  const log = readFileSync(logFile, 'utf8');
  assert.match(log, / stdout F early-line\n/);
  assert.match(log, / stdout F drained-line\n/, 'what was written during the drain wait is kept');
  assert.doesNotMatch(log, /dropped-/, 'nothing is written after the log ended');
});

test('a log file that cannot be written costs lines, not the runner', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-supervisor-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A folder where the log file should be: opening it fails (EISDIR).
  const s = new Supervised({ name: 'proc', command: ['/bin/sh', '-c', 'echo hello; exec sleep 30'], cwd: dir, env: process.env, logFile: dir, restart: false });
  s.start();
  await eventually(() => s.running, { what: 'the process started' });
  // Its line is read and dropped (the log failed); the stop still ends it, and this process lives on.
  await s.stop();
  assert.equal(s.running, false);
});
