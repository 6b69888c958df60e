// The egress gateway joins the control plane like any proxy; the mTLS listener it reports
// (`inbound`) becomes the endpoint of every HTTP ExternalService in the sidecars'
// snapshots (with the gateway's SPIFFE ID to expect), while the gateway's own snapshot has
// the real endpoints, the CA bundle and no routes. It leaves the endpoints when it disconnects.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { connect, sidecar, tempDir, TEST_BOOTSTRAP_SECRET, type FakeProxy } from './helpers.js';
import { eventually } from '../helpers/eventually.js';
import { makeLocalCa } from '../../src/security/local-tls.js';

const cleanups: (() => Promise<unknown> | undefined)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  services: [{ name: web }]
  outboundTrafficPolicy: { mode: REGISTRY_ONLY, egressGateway: { name: egress } }
---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: api }
spec:
  hosts: [api.example.test]
  ports: [{ number: 80, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: 9443 }]
  tls: { caFile: ca.pem }
`;

test('the egress gateway is the endpoint sidecars get for an ExternalService, and only it gets the real endpoints', async () => {
  const files = await tempDir();
  cleanups.push(() => files.remove());
  await files.write('ca.pem', (await makeLocalCa('egress test')).cert);
  const mesh = await files.write('mesh.yaml', MESH);
  const plane: ControlPlane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    log: () => {},
  });
  cleanups.push(() => plane.close());
  const gw: FakeProxy = await connect(plane.address);
  cleanups.push(() => gw.close());
  const gwListen = { host: '127.0.0.1', port: 40443 };
  gw.send({
    type: 'hello',
    proxy: {
      id: 'egress',
      service: 'egress',
      version: 'default',
      kind: 'gateway',
      admin: { host: '127.0.0.1', port: 1 },
      inbound: gwListen,
      upstreams: [],
      pid: process.pid,
    },
  });
  const gwSnap = (await gw.snapshot()).snapshot;
  assert.equal(gwSnap.outboundTrafficPolicy, 'REGISTRY_ONLY');
  const real = gwSnap.upstreams.api!;
  assert.deepEqual(real.routes, []);
  assert.deepEqual(real.externalHosts, ['api.example.test']);
  assert.deepEqual(
    real.backends.api!.endpoints.map((e) => `${e.host}:${e.port}`),
    ['127.0.0.1:9443'],
  );
  assert.equal(real.backends.api!.originateTls?.sni, 'api.example.test');
  await eventually(() => plane.model.health('egress')?.status === 'healthy', { what: 'the gateway healthy' });

  const web = await connect(plane.address);
  cleanups.push(() => web.close());
  web.send({ type: 'hello', proxy: sidecar('web-0', 'web') });
  const first = (await web.snapshot()).snapshot;
  const viaGateway = first.upstreams.api!.backends.api!;
  assert.deepEqual(
    viaGateway.endpoints.map((e) => `${e.host}:${e.port}`),
    ['127.0.0.1:40443'],
  );
  assert.deepEqual(viaGateway.mtls?.identities, ['spiffe://cluster.local/ns/default/sa/egress']);
  assert.equal(viaGateway.originateTls, undefined);

  await gw.close();
  const later = (await web.snapshot(5000)).snapshot;
  assert.deepEqual(later.upstreams.api!.backends.api!.endpoints, [], 'a gateway gone takes its endpoint with it');
});
