// The Mesh's `spec.accessLog`: how the sidecars the local runner starts keep their access
// logs (query values, rotation size and count); validated with the field path, and
// turned into the flags each `trellis proxy` gets.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { accessLogFlags } from '../../src/runner/local-mesh.js';
import { parseBytes, parseCount } from '../../src/cli/args.js';
import { TrellisError } from '../../src/errors.js';
import { mesh, problemAt, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  tmp = await tempDir();
});
after(() => tmp.cleanup());

const services = '    - name: web\n';

describe('Mesh spec.accessLog', () => {
  it('is optional, and each field in it too', async () => {
    const none = await loadConfig([await tmp.write('none.yaml', mesh(services))]);
    assert.ok(none.config, JSON.stringify(none.problems));
    assert.deepEqual(accessLogFlags(none.config.mesh.spec.accessLog), []);
    const some = await loadConfig([await tmp.write('some.yaml', mesh(services, '  accessLog: { keepQuery: true, maxFileBytes: 1048576, maxFiles: 3 }\n'))]);
    assert.ok(some.config, JSON.stringify(some.problems));
    assert.deepEqual(accessLogFlags(some.config.mesh.spec.accessLog), [
      '--access-log-keep-query',
      '--access-log-max-bytes',
      '1048576',
      '--access-log-max-files',
      '3',
    ]);
  });

  it('refuses sizes and counts that would turn rotation off or fill a disk, and unknown fields', async () => {
    const file = await tmp.write('bad.yaml', mesh(services, '  accessLog: { maxFileBytes: 100, maxFiles: 0, redact: false }\n'));
    const result = await loadConfig([file]);
    assert.equal(result.config, undefined);
    assert.match(problemAt(result, 'spec.accessLog.maxFileBytes', file).message, /\(64 KiB to 1 GiB\).*\(got 100\)$/);
    assert.match(problemAt(result, 'spec.accessLog.maxFiles', file).message, /\(1 to 100\).*\(got 0\)$/);
    assert.match(problemAt(result, 'spec.accessLog.redact', file).message, /unknown field "redact"; allowed here: keepQuery, maxFileBytes, maxFiles, fields/);
  });

  it('takes a field set from the known fields, and refuses a field that does not exist', async () => {
    const good = await loadConfig([await tmp.write('fields.yaml', mesh(services, '  accessLog: { fields: [ts, method, path, status] }\n'))]);
    assert.ok(good.config, JSON.stringify(good.problems));
    assert.deepEqual(accessLogFlags(good.config.mesh.spec.accessLog), ['--access-log-fields', 'ts,method,path,status']);
    const file = await tmp.write('bad-fields.yaml', mesh(services, '  accessLog: { fields: [method, password] }\n'));
    const bad = await loadConfig([file]);
    assert.equal(bad.config, undefined);
    assert.ok(
      bad.problems.some((p) => p.path.startsWith('spec.accessLog.fields')),
      JSON.stringify(bad.problems),
    );
  });

  it('becomes `trellis proxy` flags whose sizes take binary units', () => {
    assert.equal(parseBytes('1048576', '--x'), 1048576);
    assert.equal(parseBytes('512KiB', '--x'), 512 * 1024);
    assert.equal(parseBytes('10MiB', '--x'), 10 * 1024 * 1024);
    assert.equal(parseBytes('1g', '--x'), 1024 ** 3);
    assert.equal(parseCount('5', '--y'), 5);
    for (const bad of ['', '0', '10MB', '-1', '1.5MiB', 'lots']) {
      assert.throws(
        () => parseBytes(bad, '--x'),
        (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_E_USAGE',
        bad,
      );
    }
    assert.throws(
      () => parseCount('0', '--y'),
      (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_E_USAGE',
    );
  });
});
