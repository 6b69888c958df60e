// Setting a service's weights edits the route files as a person would: the rule that
// carries the split gets the new weights, everything else (comments, layout, pinned
// rules, other documents) stays as written; with no split rule a new route file is
// made and included from the mesh file. Text in, text out: no files, no processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { TrellisError } from '../../src/errors.js';
import { currentWeights, planWeights, splitRules, type SourceFile } from '../../src/control/sources/route-weights.js';

const MESH = `# the mesh
apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: shop
spec:
  include: [routes.yaml]   # the split
  services:
    - name: backend
      versions: [{ name: v1 }, { name: v2 }]
`;

const ROUTES = `# A canary release of the backend: 90% to v1, 10% to v2.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-canary
spec:
  parentRefs:
    - kind: Service
      group: ""
      name: backend
  rules:
    # people at mycorp.com try v2 first
    - matches:
        - headers: [{ type: RegularExpression, name: x-user, value: ".*@mycorp.com" }]
      backendRefs:
        - name: backend-v2
    # everyone else: the split
    - backendRefs:
        - name: backend-v1   # stable
          weight: 90
        - name: backend-v2   # canary
          weight: 10
`;

const versions = ['v1', 'v2'];

function plan(files: SourceFile[], weights: Record<string, number>, service = 'backend', vs = versions) {
  return planWeights({ files, service, versions: vs, weights });
}

function refused(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_E_WEIGHTS_REFUSED' && message.test(e.message));
}

test('the split rule gets the new weights; comments, layout and the pinned header rule stay as written', () => {
  const edit = plan(
    [
      { file: 'mesh.yaml', text: MESH },
      { file: 'routes.yaml', text: ROUTES },
    ],
    { v1: 50, v2: 50 },
  );
  assert.equal(edit.created, undefined);
  assert.deepEqual(edit.rules, [{ file: 'routes.yaml', route: 'default/backend-canary', rule: 1, weights: { v1: 90, v2: 10 }, unversioned: 0 }]);
  assert.equal(edit.writes.length, 1);
  assert.equal(edit.writes[0]!.file, 'routes.yaml');
  // Exactly the two weight lines differ.
  assert.equal(edit.writes[0]!.text, ROUTES.replace('weight: 90', 'weight: 50').replace('weight: 10', 'weight: 50'));
});

test('the rules in force read back as the split: the first split rule, every version listed', () => {
  const resource = parse(ROUTES) as unknown;
  const rules = splitRules([{ file: 'routes.yaml', resource }], 'backend', ['v1', 'v2', 'v3']);
  assert.deepEqual(
    rules.map((r) => r.rule),
    [1],
  );
  assert.deepEqual(currentWeights(rules, ['v1', 'v2', 'v3']), { v1: 90, v2: 10, v3: 0 });
  assert.equal(currentWeights([], versions), undefined);
});

test('a version the rule does not name yet is added; a weight of 0 stays written as 0', () => {
  const edit = plan(
    [
      { file: 'routes.yaml', text: ROUTES },
      { file: 'mesh.yaml', text: MESH },
    ],
    { v1: 0, v2: 80, v3: 20 },
    'backend',
    ['v1', 'v2', 'v3'],
  );
  const route = parse(edit.writes[0]!.text) as { spec: { rules: { backendRefs: { name: string; weight?: number }[] }[] } };
  assert.deepEqual(route.spec.rules[1]!.backendRefs, [
    { name: 'backend-v1', weight: 0 },
    { name: 'backend-v2', weight: 80 },
    { name: 'backend-v3', weight: 20 },
  ]);
  assert.deepEqual(route.spec.rules[0]!.backendRefs, [{ name: 'backend-v2' }], 'the pinned rule is untouched');
  assert.equal(
    edit.writes[0]!.text,
    ROUTES.replace('weight: 90', 'weight: 0')
      .replace('weight: 10', 'weight: 80')
      .replace('# canary\n          weight: 80\n', '# canary\n          weight: 80\n        - name: backend-v3\n          weight: 20\n'),
  );
});

test('a backendRef without a weight (1) gets one, on its own line in block style, inline in flow style', () => {
  const text = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-split
spec:
  parentRefs: [{ name: backend }]
  rules:
    - backendRefs:
        - name: backend-v1   # stable
        - { name: backend-v2 }
`;
  const edit = plan(
    [
      { file: 'mesh.yaml', text: MESH },
      { file: 'r.yaml', text },
    ],
    { v1: 3, v2: 1 },
  );
  assert.equal(edit.writes[0]!.text, text.replace('# stable\n', '# stable\n          weight: 3\n'), 'v2 keeps its default weight 1');
  const again = plan(
    [
      { file: 'mesh.yaml', text: MESH },
      { file: 'r.yaml', text },
    ],
    { v1: 1, v2: 4 },
  );
  assert.equal(again.writes[0]!.text, text.replace('{ name: backend-v2 }', '{ name: backend-v2, weight: 4 }'));
});

test('weights that are already in the files write nothing', () => {
  const edit = plan(
    [
      { file: 'mesh.yaml', text: MESH },
      { file: 'routes.yaml', text: ROUTES },
    ],
    { v1: 90, v2: 10 },
  );
  assert.deepEqual(edit.writes, []);
  assert.equal(edit.rules.length, 1);
});

test('a route in the mesh file itself: only its document changes, flow style kept, the Mesh document as written', () => {
  const text = `${MESH}---
# the split, in flow style
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-split
spec:
  parentRefs: [{ group: "", kind: Service, name: backend }]
  rules:
    - backendRefs:
        - { name: backend-v1, weight: 90 }
        - { name: backend-v2, weight: 10 }
`;
  const edit = plan([{ file: 'mesh.yaml', text }], { v1: 25, v2: 75 });
  assert.equal(edit.writes.length, 1);
  assert.equal(edit.writes[0]!.text, text.replace('weight: 90', 'weight: 25').replace('weight: 10', 'weight: 75'));
});

test('a catch-all rule to the whole service becomes a split between its versions', () => {
  const text = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-all
spec:
  parentRefs: [{ name: backend }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs:
        - name: backend
`;
  const edit = plan(
    [
      { file: 'mesh.yaml', text: MESH },
      { file: 'r.yaml', text: `# every request\n${text}` },
    ],
    { v1: 90, v2: 10 },
  );
  assert.deepEqual(
    edit.rules.map((r) => [r.rule, r.unversioned]),
    [[0, 1]],
  );
  assert.match(edit.writes[0]!.text, /^# every request\n/, 'the file is re-rendered from the Document, comments included');
  const route = parse(edit.writes[0]!.text) as { spec: { rules: { backendRefs: unknown[] }[] } };
  assert.deepEqual(route.spec.rules[0]!.backendRefs, [
    { name: 'backend-v1', weight: 90 },
    { name: 'backend-v2', weight: 10 },
  ]);
});

test('with no split rule, a new route file beside the mesh file is written and included', () => {
  const pinned = ROUTES.replace(/ {4}# everyone else[\s\S]*$/, '');
  const edit = plan(
    [
      { file: 'conf/mesh.yaml', text: MESH },
      { file: 'conf/routes.yaml', text: pinned },
    ],
    { v1: 70, v2: 30 },
  );
  assert.equal(edit.created, 'conf/backend-weights.yaml');
  assert.deepEqual(edit.rules, []);
  const mesh = edit.writes.find((w) => w.file === 'conf/mesh.yaml')!;
  assert.equal(mesh.text, MESH.replace('include: [routes.yaml]', 'include: [routes.yaml, backend-weights.yaml]'));
  const created = edit.writes.find((w) => w.file === 'conf/backend-weights.yaml')!;
  assert.match(created.text, /^# The traffic split between the versions of backend/);
  const route = parse(created.text) as { metadata: { name: string }; spec: { parentRefs: unknown[]; rules: { backendRefs: unknown[] }[] } };
  assert.equal(route.metadata.name, 'backend-weights');
  assert.deepEqual(route.spec.parentRefs, [{ group: '', kind: 'Service', name: 'backend' }]);
  assert.deepEqual(route.spec.rules[0]!.backendRefs, [
    { name: 'backend-v1', weight: 70 },
    { name: 'backend-v2', weight: 30 },
  ]);
});

test('a mesh file without include gets one, first in its spec', () => {
  const mesh = MESH.replace('  include: [routes.yaml]   # the split\n', '');
  const edit = plan([{ file: 'mesh.yaml', text: mesh }], { v1: 1, v2: 0 });
  const written = edit.writes.find((w) => w.file === 'mesh.yaml')!.text;
  assert.equal(written, mesh.replace('spec:\n', 'spec:\n  include: [backend-weights.yaml]\n'));
  const created = parse(edit.writes.find((w) => w.file === 'backend-weights.yaml')!.text) as { spec: { rules: { backendRefs: unknown[] }[] } };
  assert.deepEqual(created.spec.rules[0]!.backendRefs, [{ name: 'backend-v1', weight: 1 }], 'versions at 0 are left out of a new rule');
});

test('refused: a catch-all rule that sends the service elsewhere would shadow any new split', () => {
  const text = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: to-legacy
spec:
  parentRefs: [{ name: backend }]
  rules:
    - backendRefs: [{ name: legacy }]
`;
  refused(
    () =>
      plan(
        [
          { file: 'mesh.yaml', text: MESH },
          { file: 'r.yaml', text },
        ],
        { v1: 1, v2: 1 },
      ),
    /r\.yaml: HTTPRoute default\/to-legacy rule 0 takes every request to backend elsewhere/,
  );
});

test('refused: a file with a YAML syntax error is not rewritten', () => {
  refused(
    () =>
      plan(
        [
          { file: 'mesh.yaml', text: MESH },
          { file: 'routes.yaml', text: 'a: [1, 2\n' },
        ],
        { v1: 1, v2: 1 },
      ),
    /routes\.yaml has a YAML syntax error/,
  );
});

test('routes of other services are never touched', () => {
  const other = ROUTES.replaceAll('backend', 'shop');
  const edit = plan(
    [
      { file: 'mesh.yaml', text: MESH },
      { file: 'routes.yaml', text: ROUTES },
      { file: 'other.yaml', text: other },
    ],
    { v1: 1, v2: 1 },
  );
  assert.deepEqual(
    edit.writes.map((w) => w.file),
    ['routes.yaml'],
  );
});
