// What `trellis logs` reads: the runner's stamped lines (runner/log-lines.ts), files that
// grow and rotate while followed, and sources interleaved by time.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { mkdtemp, rename, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { LineStamper, parseStampedLine } from '../../src/runner/log-lines.js';
import { FileFollower, interleave, renderLogLine, sinceFlag } from '../../src/cli/logs.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('the runner stamps each line of a stream, holds a partial line until its end, and cuts a runaway line', () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  const s = new LineStamper('stderr', out);
  s.write('one\r\ntw');
  s.write('o\nthree');
  s.flush();
  s.write('x'.repeat(40_000));
  const lines = text.trim().split('\n');
  assert.deepEqual(
    lines.slice(0, 3).map((l) => parseStampedLine(l)?.text),
    ['one', 'two', 'three'],
  );
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z stderr F one$/);
  assert.match(lines[2]!, / stderr P three$/, 'an unfinished last line is a part');
  assert.equal(lines.length, 5, 'a 40,000-character line without a newline is written in 16 KiB parts as it comes');
  assert.equal(parseStampedLine('no stamp'), undefined);
});

test('a followed file is read from where it was left, read again from its start after a rotation, and sources interleave by time', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-logs-'));
  dirs.push(dir);
  const app = join(dir, 'a-0.log');
  const access = join(dir, 'a-0.access.log');
  await writeFile(app, '2026-01-01T00:00:00.100Z stdout F first\n2026-01-01T00:00:00.300Z stderr F third\n');
  await writeFile(access, '{"ts":"2026-01-01T00:00:00.200Z","path":"/second"}\n{"ts":"2026-01-01T00:00:00.400Z","pa');
  const fa = new FileFollower({ instance: 'a-0', source: 'app', path: app });
  const fx = new FileFollower({ instance: 'a-0', source: 'access', path: access });
  const first = interleave([await fa.read(), await fx.read()]);
  assert.deepEqual(
    first.map((l) => l.text),
    ['first', '{"ts":"2026-01-01T00:00:00.200Z","path":"/second"}', '[stderr] third'],
  );
  assert.equal(renderLogLine(first[0]!), '2026-01-01T00:00:00.100Z a-0 app    first');
  await appendFile(access, 'th":"/fourth"}\n');
  assert.deepEqual(
    (await fx.read()).map((l) => l.text),
    ['{"ts":"2026-01-01T00:00:00.400Z","path":"/fourth"}'],
    'the line written in two parts is read whole',
  );
  await rename(access, `${access}.1`);
  await writeFile(access, '{"ts":"2026-01-01T00:00:01.000Z","path":"/new"}\n');
  assert.deepEqual(
    (await fx.read()).map((l) => l.text),
    ['{"ts":"2026-01-01T00:00:01.000Z","path":"/new"}'],
    'a rotated file is read from its start',
  );
  assert.deepEqual(await fa.read(), []);
});

test('--since takes a duration or an RFC 3339 time', () => {
  assert.equal(sinceFlag('5m', 1_000_000), 1_000_000 - 300_000);
  assert.equal(sinceFlag('2026-01-01T00:00:00Z'), Date.parse('2026-01-01T00:00:00Z'));
  assert.throws(() => sinceFlag('yesterday'), /--since/);
});
