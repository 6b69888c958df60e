// A Mesh's `spec.accessLog.fields` (a proxy's --access-log-fields): each line carries
// those fields and `ts`, nothing else; a field that does not exist is refused in config.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAccessLog } from '../../src/telemetry/access-log.js';
import { accessLogFlags } from '../../src/runner/local-mesh.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('an access log with a field set writes ts and those fields only', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-fields-'));
  dirs.push(dir);
  const file = join(dir, 'a.log');
  const log = openAccessLog(file, { fields: ['status', 'path', 'error'] });
  log.write({ ts: 't', method: 'GET', path: '/x', status: 200, upstream: '127.0.0.1:1', error: undefined });
  await log.close();
  assert.equal(await readFile(file, 'utf8'), '{"ts":"t","status":200,"path":"/x"}\n');
  assert.deepEqual(accessLogFlags({ fields: ['ts', 'status'] }), ['--access-log-fields', 'ts,status']);
});
