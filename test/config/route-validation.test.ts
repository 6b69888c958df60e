// Validation of HTTPRoutes: their schema (Gateway API subset) and their fit with the
// mesh: parents and backends that exist, weights that can send traffic, regular
// expressions that compile, parents that speak HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import type { HTTPRouteResource } from '../../src/config/schema.js';
import { mesh, problemAt, route, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let meshFile: string;
before(async () => {
  tmp = await tempDir();
  meshFile = await tmp.write(
    'mesh.yaml',
    mesh(`    - name: frontend
      upstreams: [backend]
    - name: backend
      versions: [{ name: v1 }, { name: v2 }]
    - name: db
      protocol: tcp
`),
  );
});
after(() => tmp.cleanup());

let n = 0;
/** Loads the mesh plus one route file with this spec body. */
async function load(spec: string) {
  const file = await tmp.write(`route-${++n}.yaml`, route(`r${n}`, spec));
  return { file, result: await loadConfig([meshFile, file]) };
}

describe('HTTPRoute schema', () => {
  it('accepts a route with group "" and every default left out', async () => {
    const { result } = await load(
      '  parentRefs: [{ group: "", kind: Service, name: backend }]\n  hostnames: [backend.shop]\n  rules:\n    - matches: [{ path: { value: /api }, method: GET }]\n      backendRefs: [{ name: backend-v1 }, { name: backend, weight: 0 }]\n',
    );
    assert.deepEqual(result.problems, []);
    const rule = (result.config!.routes[0]!.resource as HTTPRouteResource).spec.rules[0]!;
    assert.deepEqual(rule.matches, [{ path: { type: 'PathPrefix', value: '/api' }, method: 'GET' }]);
  });

  it('refuses unknown match types, methods and fields', async () => {
    const { file, result } = await load(
      '  parentRefs: [{ name: backend }]\n  rules:\n    - matches: [{ path: { type: Regex, value: api }, method: FETCH, query: 1 }]\n      backendRefs: [{ name: backend }]\n      filterz: []\n',
    );
    assert.equal(problemAt(result, 'spec.rules[0].matches[0].path.type', file).message, 'must be one of Exact, PathPrefix, RegularExpression (got "Regex")');
    assert.match(
      problemAt(result, 'spec.rules[0].matches[0].method', file).message,
      /^must be one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH \(got "FETCH"\)$/,
    );
    assert.match(
      problemAt(result, 'spec.rules[0].matches[0].query', file).message,
      /^unknown field "query"; allowed here: path, method, headers, queryParams$/,
    );
    assert.match(problemAt(result, 'spec.rules[0].filterz', file).message, /^unknown field "filterz"/);
  });

  it('checks header match types and weights', async () => {
    const { file, result } = await load(
      '  parentRefs: [{ name: backend }]\n  rules:\n    - matches: [{ headers: [{ type: Prefix, name: x-user, value: a }] }]\n      backendRefs: [{ name: backend, weight: 1000001 }]\n',
    );
    assert.equal(problemAt(result, 'spec.rules[0].matches[0].headers[0].type', file).message, 'must be one of Exact, RegularExpression (got "Prefix")');
    assert.equal(problemAt(result, 'spec.rules[0].backendRefs[0].weight', file).message, 'must be between 0 and 1000000 (got 1000001)');
  });

  it('requires parents, rules and backends', async () => {
    const { file, result } = await load('  parentRefs: []\n  rules:\n    - matches: []\n');
    assert.equal(problemAt(result, 'spec.parentRefs', file).message, 'must have at least 1 item');
  });

  it('requires backends of a rule that does not redirect, and a path value starting with /', async () => {
    const { file, result } = await load('  parentRefs: [{ name: backend }]\n  rules:\n    - matches: [{ path: { value: api } }]\n');
    assert.match(problemAt(result, 'spec.rules[0].backendRefs', file).message, /^is required: give the rule at least one backendRef/);
    assert.equal(problemAt(result, 'spec.rules[0].matches[0].path.value', file).message, 'must be a path starting with / (got "api")');
  });
});

describe('HTTPRoute against the mesh', () => {
  it('refuses a parent that is not a mesh service', async () => {
    const { file, result } = await load('  parentRefs: [{ name: bakend }]\n  rules: [{ backendRefs: [{ name: backend }] }]\n');
    const p = problemAt(result, 'spec.parentRefs[0].name', file);
    assert.equal(p.message, 'names service "bakend", which is not in the mesh (services: frontend, backend, db); did you mean "backend"?');
    assert.equal(p.line, 6);
  });

  it('refuses a parent of another kind or group, and a Gateway the config does not have', async () => {
    const { file, result } = await load(
      '  parentRefs: [{ kind: Gateway, name: edge }, { group: apps, name: backend }, { kind: Ingress, name: x }]\n  rules: [{ backendRefs: [{ name: backend }] }]\n',
    );
    assert.match(problemAt(result, 'spec.parentRefs[0].name', file).message, /^names Gateway "default\/edge", which is not in the config/);
    assert.match(problemAt(result, 'spec.parentRefs[2].kind', file).message, /^kind "Ingress" is not supported/);
    assert.match(problemAt(result, 'spec.parentRefs[1].group', file).message, /^must be "" \(the core group\) for kind Service/);
  });

  it('refuses a tcp parent', async () => {
    const { file, result } = await load('  parentRefs: [{ name: db }]\n  rules: [{ backendRefs: [{ name: db }] }]\n');
    assert.match(
      problemAt(result, 'spec.parentRefs[0].name', file).message,
      /^names service "db", whose protocol is tcp; an HTTPRoute only applies to http services$/,
    );
  });

  it('accepts backends S and S-<version>; any other name is an invalid backendRef, warned about, not a config error', async () => {
    const { file, result } = await load(
      '  parentRefs: [{ name: backend }]\n  rules:\n    - backendRefs: [{ name: backend }, { name: backend-v2 }, { name: backend-v3 }, { name: frontend-default }, { name: frontend-v1 }]\n',
    );
    // The Gateway API: an invalid backendRef fails only its share of the requests (500), not the route.
    assert.deepEqual(result.problems, []);
    assert.ok(result.config, 'the config loads');
    assert.deepEqual(
      result.warnings.map((w) => [w.file, w.path, w.line]),
      [
        [file, 'spec.rules[0].backendRefs[2].name', 8],
        [file, 'spec.rules[0].backendRefs[4].name', 8],
      ],
    );
    assert.equal(
      result.warnings[0]?.message,
      'names "backend-v3", which is neither a mesh service nor <service>-<version> of one (backends: backend, backend-v1, backend-v2, db, frontend); did you mean "backend-v1"?; the backendRef is invalid, and the requests its weight would take are answered 500',
    );
  });

  it('refuses a rule whose weights are all zero', async () => {
    const { file, result } = await load(
      '  parentRefs: [{ name: backend }]\n  rules:\n    - backendRefs: [{ name: backend-v1 }]\n    - backendRefs: [{ name: backend-v1, weight: 0 }, { name: backend-v2, weight: 0 }]\n',
    );
    assert.match(problemAt(result, 'spec.rules[1].backendRefs', file).message, /^every backendRef has weight 0/);
    assert.equal(result.problems.length, 1);
  });

  it('refuses an invalid regular expression in a header match', async () => {
    const { file, result } = await load(
      '  parentRefs: [{ name: backend }]\n  rules:\n    - matches: [{ headers: [{ name: x-user, type: RegularExpression, value: "(" }, { name: x-b, value: "(" }] }]\n      backendRefs: [{ name: backend }]\n',
    );
    const p = problemAt(result, 'spec.rules[0].matches[0].headers[0].value', file);
    assert.match(p.message, /^is not a valid regular expression: /);
    assert.equal(p.line, 8);
    assert.equal(result.problems.length, 1, 'an Exact match may hold any text');
  });

  it('refuses the same route name twice', async () => {
    const body = '  parentRefs: [{ name: backend }]\n  rules: [{ backendRefs: [{ name: backend }] }]\n';
    const a = await tmp.write('dup-a.yaml', route('same', body));
    const b = await tmp.write('dup-b.yaml', route('same', body));
    const result = await loadConfig([meshFile, a, b]);
    assert.match(problemAt(result, 'metadata.name', b).message, /^HTTPRoute "default\/same" is defined twice \(also .*dup-a\.yaml:4\)/);
  });
});
