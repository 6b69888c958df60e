// The access log as a file: created readable by its owner only, query values redacted
// unless kept on purpose, request fields length-bounded, and rotated by size with
// every line whole and none lost.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAccessLog, redactQuery, type AccessLog } from '../../src/telemetry/access-log.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-access-log-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const modeOf = async (file: string): Promise<number> => (await stat(file)).mode & 0o777;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Writes lines `from` to `to - 1` (each carrying its number), `perTurn` per event-loop turn. */
async function writeLines(log: AccessLog, from: number, to: number, perTurn: number): Promise<void> {
  for (let i = from; i < to; i++) {
    log.write({ n: i, path: `/item/${i}`, pad: 'x'.repeat(i % 37) });
    if ((i + 1) % perTurn === 0) await turn();
  }
}

/** The lines of `file` and its rotated copies, oldest first, each parsed. */
async function allLines(file: string): Promise<{ files: string[]; lines: { n: number }[] }> {
  const base = file.slice(file.lastIndexOf('/') + 1);
  const rotated = (await readdir(dir))
    .filter((f) => f.startsWith(`${base}.`))
    .sort((a, b) => Number(b.slice(base.length + 1)) - Number(a.slice(base.length + 1)));
  const files = [...rotated.map((f) => join(dir, f)), file];
  const lines: { n: number }[] = [];
  for (const f of files) {
    const text = await readFile(f, 'utf8');
    assert.ok(text === '' || text.endsWith('\n'), `${f} ends with a whole line`);
    for (const l of text.split('\n').filter(Boolean)) lines.push(JSON.parse(l) as { n: number });
  }
  return { files, lines };
}

describe('access log files', () => {
  it('are created readable and writable by their owner only, and an existing file is tightened', async () => {
    const fresh = join(dir, 'fresh.log');
    const log = openAccessLog(fresh);
    log.write({ hello: 1 });
    await log.close();
    assert.equal(await modeOf(fresh), 0o600);

    const old = join(dir, 'old.log');
    await writeFile(old, '{"before":1}\n');
    await chmod(old, 0o644);
    const again = openAccessLog(old);
    again.write({ after: 1 });
    await again.close();
    assert.equal(await modeOf(old), 0o600);
    assert.equal(await readFile(old, 'utf8'), '{"before":1}\n{"after":1}\n', 'appended, not truncated');
  });

  it('redact query values by default, keeping the parameter names', () => {
    assert.equal(redactQuery('/login?password=hunter2&page=2'), '/login?password=REDACTED&page=REDACTED');
    assert.equal(redactQuery('/search?q'), '/search?q');
    assert.equal(redactQuery('/search?=v&&a=1=2'), '/search?=REDACTED&&a=REDACTED');
    assert.equal(redactQuery('/plain'), '/plain');
    const log = openAccessLog('off');
    assert.equal(openAccessLog(join(dir, 'r.log')).target('/a?token=abc'), '/a?token=REDACTED');
    assert.equal(openAccessLog(join(dir, 'k.log'), { keepQuery: true }).target('/a?token=abc'), '/a?token=abc');
    void log.close();
  });

  it('bound the length of a logged request target', () => {
    const log = openAccessLog(join(dir, 'long.log'), { keepQuery: true });
    const logged = log.target(`/${'a'.repeat(20_000)}`);
    assert.ok(logged.length <= 1100, `${logged.length} characters`);
    assert.match(logged, /…\(20001 characters\)$/);
    void log.close();
  });

  it('rotate by size, keeping every line whole and in order', async () => {
    const file = join(dir, 'rotating.log');
    const log = openAccessLog(file, { maxFileBytes: 2000, maxFiles: 100 });
    await writeLines(log, 0, 600, 7);
    await log.close();
    const { files, lines } = await allLines(file);
    assert.ok(files.length >= 3, `${files.length} files`);
    assert.deepEqual(
      lines.map((l) => l.n),
      Array.from({ length: 600 }, (_, i) => i),
      'no line lost, split or reordered',
    );
    for (const f of files) assert.equal(await modeOf(f), 0o600, f);
    // A file is rotated once a write takes it to the limit (lines that come during a
    // rotation wait and go to the next file), so every rotated file reached it.
    for (const f of files.slice(0, -1)) assert.ok((await stat(f)).size >= 2000, `${f}: ${(await stat(f)).size} bytes`);
  });

  it('keep only maxFiles rotated files: the newest lines', async () => {
    const file = join(dir, 'few.log');
    const log = openAccessLog(file, { maxFileBytes: 1000, maxFiles: 2 });
    await writeLines(log, 0, 500, 5);
    await log.close();
    const { files, lines } = await allLines(file);
    assert.deepEqual(
      files.map((f) => f.slice(dir.length + 1)),
      ['few.log.2', 'few.log.1', 'few.log'],
    );
    const ns = lines.map((l) => l.n);
    assert.equal(ns.at(-1), 499);
    assert.deepEqual(
      ns,
      Array.from({ length: ns.length }, (_, i) => 500 - ns.length + i),
      'a contiguous run of the newest lines',
    );
  });

  it('that cannot be written cost lines (counted, told once), never the proxy', async () => {
    const reasons: string[] = [];
    const log = openAccessLog(join(dir, 'no-such-folder', 'x.log'), { onError: (r) => reasons.push(r) });
    log.write({ n: 1 });
    await eventually(() => reasons.length > 0, { what: 'the open to fail' });
    await writeLines(log, 0, 10, 5);
    await turn();
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /ENOENT.*dropped/);
    assert.ok(log.dropped >= 10, `${log.dropped} dropped`);
    await log.close();
  });

  it('pick the rotation up where a restarted proxy left its file', async () => {
    const file = join(dir, 'restart.log');
    await writeFile(file, `${'{"old":true}\n'.repeat(200)}`); // 2,600 bytes: already over the limit
    const log = openAccessLog(file, { maxFileBytes: 2000, maxFiles: 3 });
    log.write({ n: 0 });
    await log.close();
    assert.equal(await readFile(file, 'utf8'), '', 'the next write rotated the old file away');
    assert.match(await readFile(`${file}.1`, 'utf8'), /\{"old":true\}\n\{"n":0\}\n$/);
  });
});

describe('access log lines of a sidecar', () => {
  let app: { server: http.Server; port: number };
  let inbound: Sidecar;
  let outbound: Sidecar;
  const file = (): string => join(dir, 'sidecar.access.log');

  before(async () => {
    app = await listenHttp((_req, res) => res.end('ok'));
    inbound = await startInbound('api', 'v1', app.port);
    outbound = await startOutbound(
      'web',
      {
        api: {
          service: 'api',
          protocol: 'http',
          routes: [],
          backends: { api: { name: 'api', endpoints: [{ id: 'api-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
        },
      },
      { accessLog: file() },
    );
  });
  after(async () => {
    await outbound.close();
    await inbound.close();
    await closeServer(app.server);
  });

  it('carry no query values and no unbounded path', async () => {
    const port = outbound.addresses.upstreams.api!.port;
    assert.equal((await get(port, '/login?user=ann&password=hunter2')).status, 200);
    assert.equal((await get(port, `/${'p'.repeat(8000)}?x=1`)).status, 200);
    await outbound.close(); // flushes the log
    const text = await readFile(file(), 'utf8');
    assert.ok(!text.includes('hunter2') && !text.includes('ann'), text.slice(0, 500));
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { path: string });
    assert.equal(lines[0]!.path, '/login?user=REDACTED&password=REDACTED');
    assert.ok(lines[1]!.path.length <= 1100, `${lines[1]!.path.length} characters logged`);
    assert.equal(await modeOf(file()), 0o600);
  });
});
