// Validation and compilation of the RateLimitPolicy kind: bad targets and limits are
// refused with file and field path; good ones reach the own service's snapshot with
// durations in ms, defaults filled, and the rule names a route target covers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { loadConfig } from '../../src/config/load.js';
import { mesh, problemAt, route, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let meshFile: string;
let routesFile: string;
before(async () => {
  tmp = await tempDir();
  meshFile = await tmp.write(
    'mesh.yaml',
    mesh(`    - name: web
      upstreams: [api]
    - name: api
`),
  );
  routesFile = await tmp.write(
    'routes.yaml',
    route(
      'orders',
      `  parentRefs: [{ group: "", kind: Service, name: api }]
  rules:
    - name: writes
      matches: [{ method: POST }]
      backendRefs: [{ name: api }]
    - backendRefs: [{ name: api }]
`,
    ),
  );
});
after(() => tmp.cleanup());

let n = 0;
async function load(spec: string) {
  const file = await tmp.write(`policy-${++n}.yaml`, `apiVersion: trellis.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata:\n  name: p${n}\nspec:\n${spec}`);
  return { file, result: await loadConfig([meshFile, routesFile, file]) };
}

describe('RateLimitPolicy validation', () => {
  it('refuses a target that does not exist, with its field path', async () => {
    const { file, result } = await load('  targetRefs: [{ group: "", kind: Service, name: apj }]\n  limits: [{ name: a, requests: 1, interval: 1s }]\n');
    assert.match(problemAt(result, 'spec.targetRefs[0].name', file).message, /apj.*did you mean "api"/s);
    const rule = await load(
      '  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: orders, sectionName: reads }]\n  limits: [{ name: a, requests: 1, interval: 1s }]\n',
    );
    assert.match(problemAt(rule.result, 'spec.targetRefs[0].sectionName', rule.file).message, /named rules: writes/);
  });

  it('refuses a key with two kinds, maxKeys without a key, a keyed global limit, twin names and a zero interval', async () => {
    const { file, result } = await load(`  limits:
    - { name: a, requests: 1, interval: 1s, key: { source: {}, header: x-k } }
    - { name: b, requests: 1, interval: 1s, maxKeys: 5 }
    - { name: c, requests: 1, interval: 1s, key: { source: {} }, global: true }
    - { name: c, requests: 1, interval: 0s }
`);
    assert.match(problemAt(result, 'spec.limits[0].key', file).message, /exactly one of source or header/);
    assert.match(problemAt(result, 'spec.limits[1].maxKeys', file).message, /no key/);
    assert.match(problemAt(result, 'spec.limits[2].global', file).message, /takes no key/);
    assert.match(problemAt(result, 'spec.limits[3].name', file).message, /unique/);
    assert.match(problemAt(result, 'spec.limits[3].interval', file).message, /1ms to 24h/);
  });

  it('refuses unknown fields and a header name with spaces (schema)', async () => {
    const { file, result } = await load('  limits: [{ name: a, requests: 1, interval: 1s, perSecond: 3, key: { header: "x k" } }]\n');
    problemAt(result, 'spec.limits[0].perSecond', file);
    problemAt(result, 'spec.limits[0].key.header', file);
  });

  it("compiles into the service's own snapshot: ms, defaults, rule coverage and its route table; callers get none", async () => {
    const { result } = await load(`  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: orders, sectionName: writes }]
  responseHeaders: true
  limits:
    - { name: writes, requests: 5, interval: 1m, key: { header: X-Api-Key } }
    - { name: global, requests: 100, interval: 1s, burst: 20, global: true }
`);
    assert.deepEqual(result.problems, []);
    const config = result.config!;
    const info = (service: string) => ({
      id: `${service}-0`,
      service,
      version: 'default',
      kind: 'sidecar' as const,
      admin: { host: '127.0.0.1', port: 1 },
      upstreams: [],
      pid: 1,
    });
    const snap = compileSnapshot({ config, instances: [], proxy: info('api') });
    const [writes, global] = snap.rateLimits!.limits;
    assert.deepEqual(writes, {
      id: `default/p${n}/writes`,
      policy: `default/p${n}`,
      name: 'writes',
      requests: 5,
      intervalMs: 60_000,
      burst: 5,
      routes: ['default/orders/rule/0'],
      key: { header: 'x-api-key' },
      maxKeys: 10_000,
      responseHeaders: true,
    });
    assert.equal(global!.global, true);
    assert.equal(global!.burst, 20);
    assert.deepEqual(
      snap.rateLimits!.routes!.map((r) => r.name),
      ['default/orders/rule/0', 'default/orders/rule/1'],
    );
    assert.equal(compileSnapshot({ config, instances: [], proxy: info('web') }).rateLimits, undefined);
  });

  it('without targetRefs covers every service of its namespace', async () => {
    const { result } = await load('  limits: [{ name: all, requests: 10, interval: 1s }]\n');
    assert.deepEqual(result.problems, []);
    const snap = compileSnapshot({
      config: result.config!,
      instances: [],
      proxy: { id: 'web-0', service: 'web', version: 'default', kind: 'sidecar', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
    });
    assert.equal(snap.rateLimits?.limits[0]?.name, 'all');
  });
});
