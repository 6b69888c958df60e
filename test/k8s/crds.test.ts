// The CRDs under deploy/kubernetes/crds/ must be what the TypeBox source generates
// today (like schema/trellis.schema.json; run `npm run schema` when this fails), must be
// structural (what the API server demands of apiextensions.k8s.io/v1), and must be
// valid CustomResourceDefinitions by the Kubernetes OpenAPI schema.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { MeshSchema } from '../../src/config/schema.js';
import { buildCrd, CRD_DIR, crdFiles, structuralProblems, toStructural, trellisKinds } from '../../src/k8s/crds.js';
import { k8sProblems } from '../helpers/k8s-validate.js';
import { ROOT } from '../config/helpers.js';

describe('deploy/kubernetes/crds', () => {
  it('is up to date with src/config/schema (run `npm run schema` if not)', async () => {
    const expected = crdFiles();
    const committed = (await readdir(join(ROOT, CRD_DIR))).sort();
    assert.deepEqual(committed, [...expected.keys()].sort(), 'the same files');
    for (const [name, text] of expected) assert.equal(await readFile(join(ROOT, CRD_DIR, name), 'utf8'), text, name);
  });

  it('holds one CRD for every trellis.dev/v1alpha1 kind', () => {
    const kinds = trellisKinds().map((k) => k.kind);
    for (const kind of [
      'Mesh',
      'BackendPolicy',
      'AuthorizationPolicy',
      'RateLimitPolicy',
      'PeerAuthentication',
      'RequestAuthentication',
      'FaultInjection',
      'RetryPolicy',
      'ExternalService',
    ])
      assert.ok(kinds.includes(kind), kind);
    assert.deepEqual(
      trellisKinds().find((k) => k.kind === 'AuthorizationPolicy'),
      { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', file: 'authorizationpolicies.trellis.dev.yaml' },
    );
  });

  for (const kind of trellisKinds()) {
    it(`${kind.kind}: a structural schema and a valid CustomResourceDefinition`, async () => {
      const crd = buildCrd(kind) as { spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] } };
      assert.deepEqual(structuralProblems(crd.spec.versions[0]!.schema.openAPIV3Schema), []);
      assert.deepEqual(await k8sProblems(crd), []);
      const text = await readFile(join(ROOT, CRD_DIR, kind.file), 'utf8');
      assert.deepEqual(parse(text), crd);
    });
  }

  it('uses x-kubernetes-preserve-unknown-fields only where a union has no structural form', () => {
    const where: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (typeof node !== 'object' || node === null) return;
      if ((node as Record<string, unknown>)['x-kubernetes-preserve-unknown-fields'] === true) where.push(path);
      for (const [k, v] of Object.entries(node)) walk(v, `${path}.${k}`);
    };
    for (const kind of trellisKinds()) walk(buildCrd(kind), kind.kind);
    // Mesh: env values (string | number | boolean) and upstreams (a name or an object).
    assert.ok(
      where.every((p) => p.startsWith('Mesh.') || p.startsWith('ExternalService.')),
      where.join('\n'),
    );
  });
});

describe('toStructural', () => {
  it('turns const and unions of literals into enums', () => {
    assert.deepEqual(toStructural({ const: 'GET' }), { type: 'string', enum: ['GET'] });
    assert.deepEqual(toStructural({ anyOf: [{ const: 301 }, { const: 302 }], description: 'a code' }), {
      type: 'integer',
      enum: [301, 302],
      description: 'a code',
    });
  });
  it('turns maps, closed objects, ports and unique lists into their structural forms', () => {
    assert.deepEqual(toStructural({ type: 'object', patternProperties: { '^(.*)$': { type: 'string' } } }), {
      type: 'object',
      additionalProperties: { type: 'string' },
    });
    assert.deepEqual(toStructural({ type: 'object', additionalProperties: false, properties: { a: { type: 'string' } } }), {
      type: 'object',
      properties: { a: { type: 'string' } },
    });
    assert.deepEqual(toStructural({ anyOf: [{ type: 'integer' }, { type: 'string' }] }), { 'x-kubernetes-int-or-string': true });
    assert.deepEqual(toStructural({ type: 'array', uniqueItems: true, items: { type: 'string' } }), {
      type: 'array',
      'x-kubernetes-list-type': 'set',
      items: { type: 'string' },
    });
    assert.deepEqual(toStructural({ type: 'number', exclusiveMinimum: 0 }), { type: 'number', minimum: 0, exclusiveMinimum: true });
    assert.deepEqual(toStructural({ type: 'string', pattern: '^[^\\u0000]*$' }), { type: 'string', pattern: '^[^\\x{0000}]*$' });
  });
  it('is needed: the TypeBox schema itself is not structural', () => {
    const raw = JSON.parse(JSON.stringify(MeshSchema)) as Record<string, unknown>;
    const problems = structuralProblems(raw);
    assert.ok(problems.some((p) => p.includes('.const:')) && problems.some((p) => p.includes('additionalProperties: false')), problems.join('\n'));
  });
  it('is caught by structuralProblems when the input is not convertible', () => {
    assert.deepEqual(structuralProblems({ type: 'object', properties: { a: { const: 1 }, b: { anyOf: [{ type: 'string' }] }, c: {} } }), [
      'openAPIV3Schema.properties.a.const: not supported in CRD schemas (use enum)',
      'openAPIV3Schema.properties.a.type: must be set',
      'openAPIV3Schema.properties.b.type: must be set',
      'openAPIV3Schema.properties.b.anyOf[0].type: must not be set inside anyOf/allOf/oneOf/not',
      'openAPIV3Schema.properties.c.type: must be set',
    ]);
  });
});
