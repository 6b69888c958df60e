// The README's "Gateway API conformance" section says how many upstream mesh
// conformance tests pass and lists those that do not: it must say what the suite's case
// table says, so flipping a case from todo to pass (or back) without the README fails
// here. And the table must hold every upstream mesh test, no more and no fewer.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO } from '../helpers/mesh-run.js';
import { CASES, tally } from './cases.js';

/** Every ShortName in conformance/tests/mesh/*.go of kubernetes-sigs/gateway-api (commit 4564255a, 2026-08-21). */
const UPSTREAM_MESH_TESTS = [
  'MeshBasic',
  'MeshConsumerRoute',
  'MeshFrontend',
  'MeshFrontendHostname',
  'MeshPorts',
  'MeshTrafficSplit',
  'MeshHTTPRoute303Redirect',
  'MeshHTTPRoute307Redirect',
  'MeshHTTPRoute308Redirect',
  'MeshHTTPRouteMatching',
  'MeshHTTPRouteNamedRule',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteRedirectHostAndStatus',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteSchemeRedirect',
  'MeshHTTPRouteRequestHeaderModifier',
  'MeshHTTPRouteBackendRequestHeaderModifier',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSimpleSameNamespace',
  'MeshHTTPRouteWeight',
  'MeshGRPCRouteRequestHeaderModifier',
  'MeshGRPCRouteWeight',
];

async function section(): Promise<string> {
  const readme = await readFile(join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Gateway API conformance\n');
  assert.ok(start >= 0, 'README has a "Gateway API conformance" section');
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end).replace(/\s+/g, ' ');
}

test('the case table holds every upstream mesh conformance test once', () => {
  assert.deepEqual(CASES.map((c) => c.name).sort(), [...UPSTREAM_MESH_TESTS].sort());
  for (const c of CASES) assert.equal(c.kind, c.name.startsWith('MeshGRPCRoute') ? 'GRPC' : 'HTTP', c.name);
});

test("the README's pass counts are the case table's", async () => {
  const text = await section();
  for (const kind of ['HTTP', 'GRPC'] as const) {
    const m = new RegExp(`(\\d+) of (\\d+) Gateway API mesh conformance ${kind} tests pass`).exec(text);
    assert.ok(m, `README says "N of M Gateway API mesh conformance ${kind} tests pass"`);
    const { pass, total } = tally(kind);
    assert.deepEqual({ pass: Number(m[1]), total: Number(m[2]) }, { pass, total }, `${kind} counts in the README`);
  }
});

test('the README lists exactly the cases that do not pass', async () => {
  const text = await section();
  const listed = new Set([...text.matchAll(/`(Mesh[A-Za-z0-9]+)`/g)].map((m) => m[1]));
  const failing = CASES.filter((c) => c.outcome.status !== 'pass').map((c) => c.name);
  assert.deepEqual([...listed].sort(), failing.sort());
});
