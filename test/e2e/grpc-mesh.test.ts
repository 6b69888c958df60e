// gRPC through a real `trellis up`: a service with no declared protocol (detected per
// connection) runs a grpc-js server; a grpc-js client calls it through the calling
// service's sidecar, a GRPCRoute sends one method to v2, and a gRPC error status shows
// in the sidecars' metrics as a gRPC failure.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { allGone, meshUp, REPO, type RunningMesh } from '../helpers/mesh-run.js';

const GRPC_SERVER = join(REPO, 'test', 'fixtures', 'apps', 'grpc-server.js');
const ECHO = join(REPO, 'test', 'fixtures', 'apps', 'echo-server.js');

const serialize = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const deserialize = (b: Buffer): unknown => JSON.parse(b.toString());
const method = (name: string): grpc.MethodDefinition<unknown, unknown> => ({
  path: `/shop.Cart/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: serialize,
  requestDeserialize: deserialize,
  responseSerialize: serialize,
  responseDeserialize: deserialize,
});
const Cart = grpc.makeGenericClientConstructor({ Get: method('Get'), Fail: method('Fail') }, 'Cart');

let dir: string;
let mesh: RunningMesh;
let client: InstanceType<typeof Cart>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-grpc-e2e-'));
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: grpc-e2e
spec:
  include: [routes.yaml]
  services:
    - name: web
      command: node ${ECHO}
      upstreams: [cart]
    - name: cart
      command: node ${GRPC_SERVER}
      versions: [{ name: v1 }, { name: v2 }]
`,
  );
  await writeFile(
    join(dir, 'routes.yaml'),
    `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: cart }
spec:
  parentRefs: [{ name: cart }]
  rules:
    - matches: [{ method: { service: shop.Cart, method: Fail } }]
      backendRefs: [{ name: cart-v2 }]
    - backendRefs: [{ name: cart-v1 }]
`,
  );
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'));
  const web = mesh.state.instances.find((i) => i.service === 'web')!;
  const port = web.upstreams.find((u) => u.service === 'cart')!.port;
  client = new Cart(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

after(async () => {
  client?.close();
  const pids = [mesh?.state.controlPid, ...(mesh?.state.instances ?? []).flatMap((i) => [i.appPid, i.sidecarPid])];
  const code = await mesh?.stop();
  assert.equal(code, 0, 'trellis up exits 0 on SIGINT');
  await allGone(pids);
  await rm(dir, { recursive: true, force: true });
});

function call(name: 'Get' | 'Fail', req: unknown): Promise<{ error: grpc.ServiceError | null; value: unknown }> {
  return new Promise((resolve) => {
    (client as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!.call(
      client,
      req,
      { deadline: Date.now() + 10_000 },
      (error: grpc.ServiceError | null, value: unknown) => resolve({ error, value }),
    );
  });
}

test('a unary gRPC call reaches the undeclared (detected) service, routed by the GRPCRoute', async () => {
  const r = await call('Get', { id: 'a' });
  assert.equal(r.error, null);
  assert.deepEqual(r.value, { id: 'a', service: 'cart', version: 'v1' });
});

test("a gRPC error passes through and counts as grpc_status 5 in the caller sidecar's metrics", async () => {
  const r = await call('Fail', {});
  assert.equal(r.error?.code, grpc.status.NOT_FOUND);
  assert.equal(r.error?.details, 'no such item');
  const web = mesh.state.instances.find((i) => i.service === 'web')!;
  const text = await (await fetch(`http://${web.admin.host}:${web.admin.port}/metrics`)).text();
  assert.match(
    text,
    /trellis_http_requests_total\{direction="outbound",source="web",destination="cart",destination_version="v2",route="[^"]*",status="200",grpc_status="5",/,
  );
});
