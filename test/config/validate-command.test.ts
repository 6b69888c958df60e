// `trellis validate` end to end: the real CLI in a child process against temp files;
// its output lines and exit codes are the contract scripts and CI rely on.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FIXTURES, mesh, ROOT, route, tempDir } from './helpers.js';

function trellis(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/trellis.js'), 'validate', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('trellis validate', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir();
  });
  after(() => tmp.cleanup());

  it('prints a summary and exits 0 for valid config', () => {
    const r = trellis(join(FIXTURES, 'mesh.yaml'));
    assert.equal(r.stdout, 'ok: 2 files, 3 services, 2 routes\n');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
  });

  it('accepts directories', () => {
    const r = trellis(FIXTURES);
    assert.equal(r.stdout, 'ok: 2 files, 3 services, 2 routes\n');
    assert.equal(r.code, 0);
  });

  it('prints every problem, one per line as file:line:col: path: message, and exits 1', async () => {
    const meshFile = await tmp.write('mesh.yaml', mesh('    - name: web\n      upstreams: [api]\n      protocol: udp\n'));
    const routeFile = await tmp.write('route.yaml', route('r', '  parentRefs: [{ name: web }]\n  rules: [{ backendRefs: [{ name: web-v9 }] }]\n'));
    const r = trellis(meshFile, routeFile);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [`${meshFile}:9:17: spec.services[0].protocol: must be one of http, http1, http2, grpc, tcp (got "udp")`]);
    // Once the mesh is valid the cross-resource problems show up too.
    await tmp.write('mesh.yaml', mesh('    - name: web\n      upstreams: [api]\n'));
    const again = trellis(meshFile, routeFile);
    assert.equal(again.code, 1);
    assert.deepEqual(again.stderr.trimEnd().split('\n'), [
      `${meshFile}:8:19: spec.services[0].upstreams[0]: names service "api", which is not in the mesh (services: web)`,
      `warning: ${routeFile}:7:35: spec.rules[0].backendRefs[0].name: names "web-v9", which is neither a mesh service nor <service>-<version> of one (backends: web); the backendRef is invalid, and the requests its weight would take are answered 500`,
    ]);
  });

  it('prints a backendRef to a missing service as a warning and exits 0: the route works, that share gets 500', async () => {
    const meshFile = await tmp.write('warn/mesh.yaml', mesh('    - name: web\n'));
    const routeFile = await tmp.write(
      'warn/route.yaml',
      route('r', '  parentRefs: [{ name: web }]\n  rules: [{ backendRefs: [{ name: web, weight: 9 }, { name: gone, weight: 1 }] }]\n'),
    );
    const r = trellis(meshFile, routeFile);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok: 2 files, 1 services, 1 routes, 1 warning\n');
    assert.match(r.stderr, /^warning: .*route\.yaml:7:\d+: spec\.rules\[0\]\.backendRefs\[1\]\.name: names "gone", which is neither a mesh service/);
  });

  it('reports a YAML syntax error with its line and exits 1', async () => {
    const file = await tmp.write('broken.yaml', 'kind: Mesh\nspec:\n  services: [\n');
    const r = trellis(file);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: YAML syntax error: `));
  });

  it('exits 2 with a usage error when given no files', () => {
    const r = trellis();
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^trellis validate: name at least one config file or directory/);
  });

  it('exits 2 on an unknown flag', () => {
    const r = trellis('--strict', 'x.yaml');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /see `trellis validate --help`/);
  });

  it('shows help with an example', () => {
    const r = trellis('--help');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: trellis validate FILE\|DIR\.\.\./);
    assert.match(r.stdout, /Example:/);
  });
});
