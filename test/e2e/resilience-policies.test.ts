// `trellis up` with resilience config in YAML: a FaultInjection on one named rule of an
// HTTPRoute, with a request timeout on another, goes from the files through the
// control plane's snapshot to the client's sidecar; removing the policy from the file
// stops the fault without a restart.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getJson, meshUp, stopMesh, REPO, request, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';

let dir: string;
let mesh: RunningMesh;
let port: number;

const ECHO = join(REPO, 'test', 'fixtures', 'apps', 'echo-server.js');

const ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
spec:
  parentRefs: [{ name: echo }]
  rules:
    - name: chaos
      matches: [{ path: { type: PathPrefix, value: /chaos } }]
      backendRefs: [{ name: echo }]
    - name: rest
      backendRefs: [{ name: echo }]
      timeouts: { request: 5s, backendRequest: 2s }
      retry: { codes: [503], attempts: 1 }
`;

const FAULT = `apiVersion: trellis.dev/v1alpha1
kind: FaultInjection
metadata:
  name: chaos
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: echo, sectionName: chaos }]
  abort: { httpStatus: 502, percent: 100 }
`;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-e2e-resilience-'));
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: resilience
spec:
  include: [route.yaml, fault.yaml]
  services:
    - name: client
      command: node ${ECHO}
      upstreams: [echo]
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
    - name: echo
      command: node ${ECHO}
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
`,
  );
  await writeFile(join(dir, 'route.yaml'), ROUTE);
  await writeFile(join(dir, 'fault.yaml'), FAULT);
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'));
  const client = mesh.state.instances.find((i) => i.service === 'client')!;
  port = client.upstreams.find((u) => u.service === 'echo')!.port;
});

after(() => stopMesh(mesh, dir));

/** Requests `path` until `ok` holds for the answer (bounded); that answer. */
async function until(path: string, ok: (r: { status: number; headers: Record<string, unknown> }) => boolean) {
  return eventually(async () => {
    const r = await request(port, path);
    assert.ok(ok(r), `${path} answered ${r.status} ${String(r.headers['trellis-error'] ?? '')}`);
    return r;
  });
}

test('the fault on the named rule aborts its requests; the other rule is untouched', async () => {
  // The echo instance may still be turning healthy: wait for the other rule to answer.
  const rest = await until('/hello', (r) => r.status === 200);
  assert.equal(rest.status, 200);
  const chaos = await request(port, '/chaos/x');
  assert.equal(chaos.status, 502);
  assert.equal(chaos.headers['trellis-error'], 'fault-abort');
  assert.match(chaos.body, /FaultInjection policy default\/chaos/);
  const config = await getJson<{ policies: string[] }>(`${mesh.state.control}/v1/config`);
  assert.deepEqual(config.policies, ['FaultInjection default/chaos']);
});

test('removing the policy from its file stops the fault without a restart', async () => {
  await writeFile(join(dir, 'fault.yaml'), '# no faults\n');
  const r = await until('/chaos/y', (x) => x.status === 200);
  assert.equal(r.status, 200);
  assert.match(r.body, /"service":"echo"/);
});
