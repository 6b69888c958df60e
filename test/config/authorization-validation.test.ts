// AuthorizationPolicy: bad values are refused with their file and field path (principals
// that are not workload names, * in the middle, lower-case methods, paths without /,
// unknown `when` keys, targets that are not Services of the namespace), and good ones
// reach exactly the snapshots of the services they apply to, in one form.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { loadConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { mesh, problemAt, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let meshFile: string;
before(async () => {
  tmp = await tempDir();
  meshFile = await tmp.write(
    'mesh.yaml',
    mesh(`    - name: web
      upstreams: [api, db]
    - name: api
    - name: db
      protocol: tcp
    - name: tools
      namespace: ops
`),
  );
});
after(() => tmp.cleanup());

let n = 0;
async function load(spec: string, metadata = '') {
  const file = await tmp.write(
    `authz-${++n}.yaml`,
    `apiVersion: trellis.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p${n}\n${metadata}spec:\n${spec}`,
  );
  return { file, result: await loadConfig([meshFile, file]) };
}

describe('AuthorizationPolicy validation', () => {
  it('accepts a policy with every kind of field, and `spec: {}`', async () => {
    const { result } = await load(`  targetRefs: [{ group: "", kind: Service, name: api }]
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/default/sa/web", "spiffe://cluster.local/ns/ops/sa/*"]
            notNamespaces: ["dev-*"]
            requestPrincipals: ["https://issuer.example/*"]
      to:
        - operation: { methods: [GET, HEAD], paths: ["/api/*", "*.png", "/exact"], hosts: ["api", "*.example.com"], ports: ["8080", 9090] }
      when:
        - { key: "request.headers[x-tenant]", values: ["a", "b*"] }
        - { key: "request.auth.claims[groups]", values: ["admin"] }
        - { key: "request.auth.claims[realm][role]", notValues: ["guest"] }
        - { key: source.namespace, values: [default] }
        - { key: destination.port, values: ["8080"] }
`);
    assert.deepEqual(result.problems, []);
    assert.equal(result.config?.authorizationPolicies.length, 1);
    const empty = await load('  {}\n');
    assert.deepEqual(empty.result.problems, []);
  });

  it('refuses a principal that is not a workload name, with the fix', async () => {
    const { result, file } = await load(`  rules:
    - from: [{ source: { principals: [backend] } }]
`);
    const p = problemAt(result, 'spec.rules[0].from[0].source.principals[0]', file);
    assert.match(p.message, /cluster\.local\/ns\/default\/sa\/backend/);
    assert.ok(p.line !== undefined, formatProblem(p));
  });

  it('refuses a * in the middle of a value', async () => {
    const { result } = await load(`  rules:
    - to: [{ operation: { paths: ["/api/*/x"] } }]
`);
    assert.match(problemAt(result, 'spec.rules[0].to[0].operation.paths[0]').message, /not at its start or its end/);
  });

  it('refuses lower-case and malformed methods, and paths without a leading /', async () => {
    const { result } = await load(`  rules:
    - to: [{ operation: { methods: [get, "G ET"], notPaths: ["api/x"] } }]
`);
    assert.match(problemAt(result, 'spec.rules[0].to[0].operation.methods[0]').message, /write GET/);
    problemAt(result, 'spec.rules[0].to[0].operation.methods[1]');
    assert.match(problemAt(result, 'spec.rules[0].to[0].operation.notPaths[0]').message, /does not start with \//);
  });

  it('refuses unknown when keys, Istio keys it does not evaluate, and conditions without values', async () => {
    const { result } = await load(`  rules:
    - when:
        - { key: "request.header[x]", values: [a] }
        - { key: source.ip, values: [10.0.0.1] }
        - { key: source.principal }
        - { key: destination.port, values: [http] }
`);
    assert.match(problemAt(result, 'spec.rules[0].when[0].key').message, /unknown key "request.header\[x\]"/);
    assert.match(problemAt(result, 'spec.rules[0].when[1].key').message, /does not evaluate/);
    assert.match(problemAt(result, 'spec.rules[0].when[2]').message, /values or notValues/);
    assert.match(problemAt(result, 'spec.rules[0].when[3].values[0]').message, /not a port/);
  });

  it('refuses unknown fields, an unknown action and CUSTOM', async () => {
    const { result } = await load(`  action: CUSTOM
  rules:
    - from: [{ source: { principal: [x] } }]
`);
    assert.ok(
      result.problems.some((p) => p.path === 'spec.action'),
      JSON.stringify(result.problems),
    );
    assert.ok(
      result.problems.some((p) => p.path.startsWith('spec.rules[0].from[0].source')),
      JSON.stringify(result.problems),
    );
  });

  it('refuses targets that are not Services of its namespace', async () => {
    const { result } = await load(`  targetRefs:
    - { group: "", kind: Service, name: tools }
    - { group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }
`);
    assert.match(problemAt(result, 'spec.targetRefs[0].name').message, /not in the mesh/);
    problemAt(result, 'spec.targetRefs[1].group');
    const other = await load('  {}\n', '  namespace: nowhere\n');
    assert.match(problemAt(other.result, 'metadata.namespace').message, /no service of the mesh is in/);
  });

  it('warns when an ALLOW rule with HTTP-only fields targets a TCP service', async () => {
    const { result } = await load(`  targetRefs: [{ group: "", kind: Service, name: db }]
  rules:
    - to: [{ operation: { methods: [GET] } }]
`);
    assert.deepEqual(result.problems, []);
    assert.ok(result.warnings.some((w) => w.path === 'spec.rules[0]' && /never matches a connection/.test(w.message)));
  });
});

describe('AuthorizationPolicy in the snapshot', () => {
  it('reaches the services it applies to (namespace-wide or targeted), in one form', async () => {
    const file = await tmp.write(
      'applied.yaml',
      `apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: db-from-api }
spec:
  targetRefs: [{ group: "", kind: Service, name: db }]
  rules:
    - from: [{ source: { principals: ["spiffe://cluster.local/ns/default/sa/api"] } }]
      to: [{ operation: { ports: ["5432"] } }]
      when: [{ key: source.principal, values: ["spiffe://cluster.local/ns/default/sa/api"] }]
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: audit-all }
spec:
  action: AUDIT
  dryRun: true
  rules: [{}]
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: ops-nothing, namespace: ops }
spec: {}
`,
    );
    const { config, problems } = await loadConfig([meshFile, file]);
    assert.deepEqual(problems, []);
    assert.ok(config);
    const snap = (service: string) =>
      compileSnapshot({
        config,
        instances: [],
        proxy: { id: `${service}-0`, service, version: 'default', kind: 'sidecar', upstreams: [], admin: { host: '127.0.0.1', port: 1 }, pid: 1 },
      }).authorization;
    assert.deepEqual(snap('db'), {
      trustDomain: 'cluster.local',
      policies: [
        { name: 'default/audit-all', action: 'AUDIT', dryRun: true, rules: [{}] },
        {
          name: 'default/db-from-api',
          action: 'ALLOW',
          rules: [
            {
              from: [{ principals: ['cluster.local/ns/default/sa/api'] }],
              to: [{ ports: [5432] }],
              when: [{ key: 'source.principal', values: ['cluster.local/ns/default/sa/api'] }],
            },
          ],
        },
      ],
    });
    assert.deepEqual(
      snap('api')?.policies.map((p) => p.name),
      ['default/audit-all'],
    );
    assert.deepEqual(snap('tools.ops'), { trustDomain: 'cluster.local', policies: [{ name: 'ops/ops-nothing', action: 'ALLOW', rules: [] }] });
    // A gateway is no service: no policy of a service applies to it.
    const gw = compileSnapshot({
      config,
      instances: [],
      proxy: { id: 'gw', service: 'trellis-ingress', version: 'default', kind: 'gateway', upstreams: [], admin: { host: '127.0.0.1', port: 1 }, pid: 1 },
    });
    assert.equal(gw.authorization, undefined);
  });
});
