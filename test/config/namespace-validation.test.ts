// Validation of namespaces: names unique within a namespace, references resolved in the
// namespace the Gateway API says (the route's, the policy's, the caller's), unknown
// namespaces named at their field, and ReferenceGrants checked against the mesh.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { mesh, problemAt, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  tmp = await tempDir();
});
after(() => tmp.cleanup());

let n = 0;
async function load(services: string, more = '') {
  const file = await tmp.write(`mesh-${++n}.yaml`, mesh(services, more ? `  include: [more-${n}.yaml]\n` : ''));
  const extra = more ? await tmp.write(`more-${n}.yaml`, more) : undefined;
  return { file, extra, result: await loadConfig([file]) };
}

const TWO = '    - name: echo\n    - name: echo\n      namespace: ns-a\n      versions: [{ name: v1 }]\n';

describe('namespaces in the mesh file', () => {
  it('accepts one name in two namespaces, and refuses it twice in one', async () => {
    assert.deepEqual((await load(TWO)).result.problems, []);
    const { file, result } = await load('    - name: echo\n      namespace: ns-a\n    - name: echo\n      namespace: ns-a\n');
    assert.equal(
      problemAt(result, 'spec.services[1].name', file).message,
      'duplicate service name "echo" in namespace ns-a (also spec.services[0]); service names must be unique',
    );
  });

  it('reads upstreams in the caller namespace, svc.ns and { service, namespace } in ns', async () => {
    const ok = await load(
      `${TWO}    - name: client\n      namespace: ns-a\n      upstreams: [echo, echo.default, { service: echo, namespace: ns-a, port: 7001 }]\n`,
    );
    // echo and { service: echo, namespace: ns-a } are one service from ns-a.
    assert.match(
      problemAt(ok.result, 'spec.services[2].upstreams[2]', ok.file).message,
      /^lists service "echo" in namespace ns-a again \(also upstreams\[0\]\)$/,
    );
    const { file, result } = await load(`${TWO}    - name: client\n      upstreams: [echo.ns-b, { service: client, namespace: ns-a }]\n`);
    assert.equal(
      problemAt(result, 'spec.services[2].upstreams[0]', file).message,
      'names service "echo" in namespace ns-b, which is not in the mesh (no service of the mesh is in namespace ns-b; namespaces: default, ns-a)',
    );
    assert.match(
      problemAt(result, 'spec.services[2].upstreams[1]', file).message,
      /^names service "client" in namespace ns-a, which is not in the mesh \(services in namespace ns-a: echo\)/,
    );
  });

  it("resolves a route's parentRefs and backendRefs in its own namespace unless they name one", async () => {
    const routes = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: ns-a }
spec:
  parentRefs: [{ name: echo }, { name: echo, namespace: nowhere }]
  rules:
    - backendRefs: [{ name: echo-v1 }, { name: echo-v1, namespace: default }, { name: echo, namespace: ghost }]
`;
    const { extra, result } = await load(TWO, routes);
    assert.equal(
      problemAt(result, 'spec.parentRefs[1].namespace', extra).message,
      'names namespace nowhere, which no service of the mesh is in (namespaces: default, ns-a)',
    );
    // A backendRef to no Service is only invalid (its share answered 500): a warning, not a problem.
    assert.deepEqual(
      result.warnings.filter((w) => w.path === 'spec.rules[0].backendRefs[1].name').map((w) => w.message),
      [
        'names "echo-v1", which is neither a mesh service nor <service>-<version> of one (backends: echo); the backendRef is invalid, and the requests its weight would take are answered 500',
      ],
    );
    assert.match(problemAt(result, 'spec.rules[0].backendRefs[2].namespace', extra).message, /^names namespace ghost, which no service/);
    assert.equal(result.problems.length, 2, 'echo and echo-v1 in ns-a resolve');
  });

  it('lets a policy target Services of its own namespace only', async () => {
    const policy = `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: { name: p, namespace: ns-b }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
`;
    const { extra, result } = await load(`${TWO}    - name: other\n      namespace: ns-b\n`, policy);
    assert.match(
      problemAt(result, 'spec.targetRefs[0].name', extra).message,
      /^names service "echo" in namespace ns-b, which is not in the mesh \(services in namespace ns-b: other; a policy targets services of its own namespace\)/,
    );
  });
});

describe('ReferenceGrant', () => {
  it('accepts a grant of routes into a namespace of the mesh', async () => {
    const grant = `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: g, namespace: ns-a }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }]
  to: [{ group: "", kind: Service, name: echo }]
`;
    assert.deepEqual((await load(TWO, grant)).result.problems, []);
  });

  it('refuses kinds a mesh grant has no use for, unknown services and namespaces, and unknown fields', async () => {
    const grant = `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: g, namespace: ns-a }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: Gateway, namespace: default }, { group: "", kind: HTTPRoute, namespace: default }]
  to: [{ group: "", kind: Service, name: echoo }, { group: "", kind: Secret }]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: h, namespace: nowhere }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }]
  to: [{ group: "", kind: Service, names: x }]
`;
    const { extra, result } = await load(TWO, grant);
    assert.equal(problemAt(result, 'spec.from[0].kind', extra).message, 'must be HTTPRoute, GRPCRoute or TCPRoute (got "Gateway")');
    assert.match(problemAt(result, 'spec.from[1].group', extra).message, /^must be gateway.networking.k8s.io/);
    assert.equal(
      problemAt(result, 'spec.to[0].name', extra).message,
      'names service "echoo" in namespace ns-a, which is not in the mesh (services in namespace ns-a: echo); did you mean "echo"?',
    );
    assert.match(problemAt(result, 'spec.to[1].kind', extra).message, /^a mesh grant opens Services/);
    assert.match(problemAt(result, 'spec.to[0].names', extra).message, /^unknown field "names"/);
  });

  it('refuses a grant in a namespace no service is in', async () => {
    const grant = `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: h, namespace: nowhere }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }]
  to: [{ group: "", kind: Service }]
`;
    const { extra, result } = await load(TWO, grant);
    assert.match(problemAt(result, 'metadata.namespace', extra).message, /^names namespace nowhere, which no service of the mesh is in/);
  });
});
