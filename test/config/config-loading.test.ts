// Loading: files, directories, multi-document files, includes, YAML syntax errors,
// the one-Mesh rule, and the normalized services the rest of Trellis consumes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import type { HTTPRouteResource } from '../../src/config/schema.js';
import { FIXTURES, mesh, problemAt, route, tempDir } from './helpers.js';

describe('loading the example config', () => {
  it('loads the mesh file and its include with no problems', async () => {
    const result = await loadConfig([join(FIXTURES, 'mesh.yaml')]);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.files, [join(FIXTURES, 'mesh.yaml'), join(FIXTURES, 'header-route.yaml')]);
    const config = result.config!;
    assert.equal(config.meshFile, join(FIXTURES, 'mesh.yaml'));
    assert.equal(config.meshDir, FIXTURES);
    assert.deepEqual(
      config.services.map((s) => s.name),
      ['frontend', 'backend', 'redis'],
    );
    assert.deepEqual(
      config.routes.map((r) => [r.resource.metadata.name, r.file]),
      [
        ['backend-split', join(FIXTURES, 'mesh.yaml')],
        ['backend-mycorp', join(FIXTURES, 'header-route.yaml')],
      ],
    );
  });

  it('normalizes services: defaults, versions, upstreams, health in milliseconds', async () => {
    const { config } = await loadConfig([join(FIXTURES, 'mesh.yaml')]);
    const [frontend, backend, redis] = config!.services;
    assert.deepEqual(frontend, {
      name: 'frontend',
      protocol: 'detect', // not declared: detected per connection
      command: 'node frontend.js',
      cwd: FIXTURES,
      env: {},
      replicas: 1,
      public: { port: 8080 },
      requires: [],
      optional: false,
      upstreams: [{ service: 'backend' }],
      health: { type: 'http', path: '/healthz', intervalMs: 2000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 2 },
      versions: [{ name: 'default', labels: {}, replicas: 1, command: 'node frontend.js', env: {} }],
    });
    assert.deepEqual(backend!.upstreams, [{ service: 'redis', port: 7002 }]);
    assert.deepEqual(backend!.health, {
      type: 'http',
      path: '/healthz',
      status: 200,
      intervalMs: 500,
      timeoutMs: 250,
      healthyThreshold: 1,
      unhealthyThreshold: 2,
    });
    assert.deepEqual(backend!.versions, [
      { name: 'v1', labels: { track: 'stable' }, replicas: 2, command: 'node backend.js', env: { LOG_LEVEL: 'info', SHOP_VERSION: 'v1' } },
      { name: 'v2', labels: { track: 'canary' }, replicas: 1, command: 'node backend.js', env: { LOG_LEVEL: 'info', SHOP_VERSION: 'v2' } },
    ]);
    assert.equal(redis!.protocol, 'tcp');
    assert.equal(redis!.optional, true);
    assert.deepEqual(redis!.requires, ['redis-server']);
    assert.deepEqual(redis!.health, { type: 'tcp', intervalMs: 2000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 2 });
  });

  it('fills the Gateway API defaults of routes', async () => {
    const { config } = await loadConfig([join(FIXTURES, 'mesh.yaml')]);
    const split = config!.routes[0]!.resource as HTTPRouteResource;
    assert.deepEqual(split.spec.rules[0]!.matches, [{ path: { type: 'PathPrefix', value: '/' } }]);
    assert.deepEqual(
      split.spec.rules[0]!.backendRefs!.map((b) => [b.name, b.weight, b.kind, b.group]),
      [
        ['backend-v1', 90, 'Service', ''],
        ['backend-v2', 10, 'Service', ''],
      ],
    );
    const mycorp = config!.routes[1]!.resource as HTTPRouteResource;
    assert.deepEqual(mycorp.spec.parentRefs, [{ kind: 'Service', name: 'backend', group: '' }]);
    assert.deepEqual(mycorp.spec.rules[0]!.matches![0]!.headers, [{ type: 'RegularExpression', name: 'x-user', value: '.*@mycorp.com' }]);
    assert.equal(mycorp.spec.rules[0]!.backendRefs![0]!.weight, 1);
  });

  it('loads a directory of YAML files', async () => {
    const result = await loadConfig([FIXTURES]);
    assert.deepEqual(result.problems, []);
    // Each file once, although mesh.yaml includes header-route.yaml again.
    assert.deepEqual(result.files, [join(FIXTURES, 'header-route.yaml'), join(FIXTURES, 'mesh.yaml')]);
    assert.equal(result.config!.routes.length, 2);
  });
});

describe('loading files', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir();
  });
  after(() => tmp.cleanup());

  const svc = '    - name: web\n    - name: api\n';

  it('reads every document of a multi-document file', async () => {
    const file = await tmp.write(
      'multi/all.yaml',
      `${mesh(svc)}---\n${route('r1', '  parentRefs: [{ name: web }]\n  rules: [{ backendRefs: [{ name: api }] }]\n')}\n---\n# only a comment\n---\n${route('r2', '  parentRefs: [{ name: api }]\n  rules: [{ backendRefs: [{ name: web }] }]\n')}`,
    );
    const result = await loadConfig([file]);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(
      result.config!.routes.map((r) => r.resource.metadata.name),
      ['r1', 'r2'],
    );
  });

  it('follows include entries relative to the mesh file, files and directories alike', async () => {
    const meshFile = await tmp.write('inc/conf/mesh.yaml', mesh(svc, '  include: [../routes, extra.yml]\n'));
    await tmp.write('inc/routes/b.yaml', route('b', '  parentRefs: [{ name: web }]\n  rules: [{ backendRefs: [{ name: api }] }]\n'));
    await tmp.write('inc/routes/a.yml', route('a', '  parentRefs: [{ name: web }]\n  rules: [{ backendRefs: [{ name: api }] }]\n'));
    await tmp.write('inc/routes/notes.txt', 'not config');
    await tmp.write('inc/conf/extra.yml', route('c', '  parentRefs: [{ name: api }]\n  rules: [{ backendRefs: [{ name: web }] }]\n'));
    const result = await loadConfig([meshFile]);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.files, [meshFile, join(tmp.dir, 'inc/routes/a.yml'), join(tmp.dir, 'inc/routes/b.yaml'), join(tmp.dir, 'inc/conf/extra.yml')]);
    assert.deepEqual(
      result.config!.routes.map((r) => r.resource.metadata.name),
      ['a', 'b', 'c'],
    );
  });

  it('reports an include that does not exist at its entry in the mesh file', async () => {
    const meshFile = await tmp.write('badinc/mesh.yaml', mesh(svc, '  include: [routes.yaml, missing.yaml]\n'));
    await tmp.write('badinc/routes.yaml', '# nothing yet\n');
    const result = await loadConfig([meshFile]);
    const p = problemAt(result, 'spec.include[1]', meshFile);
    assert.match(p.message, /"missing\.yaml" cannot be read: no such file or directory/);
    assert.equal(p.line, 6);
    assert.equal(result.config, undefined);
    assert.deepEqual(result.files, [meshFile, join(tmp.dir, 'badinc/routes.yaml')]);
  });

  it('reports YAML syntax errors with line and column, and keeps checking other files', async () => {
    const bad = await tmp.write('syntax/bad.yaml', 'apiVersion: trellis.dev/v1alpha1\nkind: Mesh\nmetadata:\n  name: [unclosed\n');
    const good = await tmp.write('syntax/route.yaml', `${route('r', '  parentRefs: []\n  rules: []\n')}`);
    const result = await loadConfig([bad, good]);
    const syntax = result.problems.filter((p) => p.file === bad);
    assert.ok(syntax.length > 0);
    assert.match(syntax[0]!.message, /^YAML syntax error: /);
    assert.ok(syntax[0]!.line! >= 4, `line ${syntax[0]!.line}`);
    assert.ok(syntax[0]!.column! >= 1);
    assert.equal(problemAt(result, 'spec.parentRefs', good).message, 'must have at least 1 item');
    // No "no Mesh" noise on top of the syntax error that hid it.
    assert.ok(!result.problems.some((p) => /no Mesh/.test(p.message)));
  });

  it('reports a duplicate YAML key as a syntax error', async () => {
    const file = await tmp.write('dupkey.yaml', 'apiVersion: trellis.dev/v1alpha1\nkind: Mesh\nkind: Mesh\n');
    const result = await loadConfig([file]);
    assert.equal(result.problems[0]!.line, 3);
  });

  it('requires exactly one Mesh: none', async () => {
    const file = await tmp.write('nomesh.yaml', route('r', '  parentRefs: [{ name: web }]\n  rules: [{ backendRefs: [{ name: web }] }]\n'));
    const result = await loadConfig([file]);
    assert.equal(result.problems.length, 1);
    assert.match(result.problems[0]!.message, /no Mesh resource found/);
    assert.equal(result.problems[0]!.file, file);
  });

  it('requires exactly one Mesh: two', async () => {
    const first = await tmp.write('two/a.yaml', mesh(svc));
    const second = await tmp.write('two/b.yaml', `# second\n${mesh(svc)}`);
    const result = await loadConfig([join(tmp.dir, 'two')]);
    const p = problemAt(result, 'kind', second);
    assert.match(p.message, new RegExp(`a second Mesh resource; .* first is in ${first.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2`));
    assert.equal(p.line, 3);
  });

  it('names the document of an unknown kind or apiVersion', async () => {
    const file = await tmp.write(
      'kinds.yaml',
      `${mesh(svc)}---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: settings }\n---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: { name: old }\nspec: {}\n---\n[1, 2]\n`,
    );
    const result = await loadConfig([file]);
    const kind = problemAt(result, 'kind', file);
    assert.match(
      kind.message,
      /^document 2 \("settings"\): unknown kind "ConfigMap" \(apiVersion "v1"\); Trellis reads Mesh \(trellis\.dev\/v1alpha1\), HTTPRoute/,
    );
    assert.equal(kind.line, 11);
    const api = problemAt(result, 'apiVersion', file);
    assert.match(
      api.message,
      /^document 3 \("old"\): kind HTTPRoute needs apiVersion gateway\.networking\.k8s\.io\/v1 \(got "gateway\.networking\.k8s\.io\/v1beta1"\)/,
    );
    assert.equal(api.line, 14);
    const notResource = problemAt(result, '', file);
    assert.match(notResource.message, /^document 4 is not a resource/);
  });

  it('reports paths that cannot be read; an empty directory is no problem of its own', async () => {
    const missing = join(tmp.dir, 'nope.yaml');
    const empty = join(tmp.dir, 'empty');
    await tmp.write('empty/readme.txt', 'no yaml here');
    const result = await loadConfig([missing, empty]);
    assert.deepEqual(
      result.problems.map((p) => [p.file, p.message]),
      [[missing, 'cannot be read: no such file or directory']],
    );
    assert.deepEqual(result.files, []);
    assert.deepEqual(result.folders, [empty]);
  });

  it('an include folder with no YAML files holds no routes, and is no config error', async () => {
    const meshFile = await tmp.write('emptyinc/mesh.yaml', mesh(svc, '  include: [routes, extra.yaml]\n'));
    await tmp.write('emptyinc/routes/README.md', 'routes go here');
    await tmp.write('emptyinc/extra.yaml', route('c', '  parentRefs: [{ name: api }]\n  rules: [{ backendRefs: [{ name: web }] }]\n'));
    const result = await loadConfig([meshFile]);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(
      result.config?.routes.map((r) => r.resource.metadata.name),
      ['c'],
    );
    assert.deepEqual(result.files, [meshFile, join(tmp.dir, 'emptyinc/extra.yaml')]);
    // Read as a folder, so the control plane watches it for the first route file.
    assert.deepEqual(result.folders, [join(tmp.dir, 'emptyinc/routes')]);
  });

  it('resolves cwd against the mesh folder and merges version env over service env', async () => {
    const file = await tmp.write(
      'cwd/mesh.yaml',
      mesh(`    - name: api
      cwd: app
      command: node a.js
      env: { A: 1, B: "x", DEBUG: true }
      versions:
        - name: v1
          command: node b.js
          env: { B: y }
        - name: v2
          replicas: 0
      replicas: 3
`),
    );
    const result = await loadConfig([file]);
    assert.deepEqual(result.problems, []);
    const api = result.config!.services[0]!;
    assert.equal(api.cwd, join(tmp.dir, 'cwd/app'));
    assert.deepEqual(api.env, { A: '1', B: 'x', DEBUG: 'true' });
    assert.deepEqual(
      api.versions.map((v) => [v.name, v.replicas, v.command, v.env]),
      [
        ['v1', 3, 'node b.js', { A: '1', B: 'y', DEBUG: 'true' }],
        ['v2', 0, 'node a.js', { A: '1', B: 'x', DEBUG: 'true' }],
      ],
    );
  });
});

describe('the protocol of a service that declares none', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir();
  });
  after(() => tmp.cleanup());

  it("is tcp on Linkerd's opaque ports (server-first or detection-hostile: 3306, 5432, 6379, ...), detection elsewhere, and a declared one always wins", async () => {
    const file = await tmp.write(
      'opaque.yaml',
      mesh(`
    - name: mysql
      port: 3306
    - name: pg
      port: 5432
    - name: web
      port: 8080
    - name: declared
      port: 6379
      protocol: http
    - name: multi
      ports:
        - { name: cache, port: 11211 }
        - { name: api, port: 9000 }`),
    );
    const { config, problems } = await loadConfig([file]);
    assert.deepEqual(problems, []);
    const by = new Map(config!.services.map((s) => [s.name, s]));
    assert.equal(by.get('mysql')?.protocol, 'tcp', 'a client that waits for the greeting is not held by detection');
    assert.equal(by.get('pg')?.protocol, 'tcp');
    assert.equal(by.get('web')?.protocol, 'detect');
    assert.equal(by.get('declared')?.protocol, 'http');
    assert.deepEqual(
      by.get('multi')?.ports?.map((p) => p.protocol),
      ['tcp', 'detect'],
    );
  });
});
