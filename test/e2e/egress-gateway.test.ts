// `trellis up` on a mesh that names an egress gateway: the runner starts it, the control
// plane registers its mutual-TLS listener, and a caller's plain-HTTP request for an
// ExternalService (Host api.example.test) goes sidecar → egress gateway → a loopback HTTPS
// server behind STATIC resolution, with TLS the gateway originates (SNI checked by the
// server). Undeclared hosts are refused (REGISTRY_ONLY); the gateway's metrics show the call.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, stopMesh, request, alive, type RunningMesh } from '../helpers/mesh-run.js';
import { issueServerCertificate, makeLocalCa } from '../../src/security/local-tls.js';
import { eventually } from '../helpers/eventually.js';

let dir: string;
let mesh: RunningMesh | undefined;
let server: https.Server | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-e2e-egress-'));
  const ca = await makeLocalCa('e2e external ca');
  const leaf = await issueServerCertificate(ca, { dnsNames: ['api.example.test'] });
  server = https.createServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
    const sni = (req.socket as TLSSocket & { servername?: string }).servername;
    res.end(`external via ${String(sni)} ${req.url}`);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await writeFile(join(dir, 'ca.pem'), ca.cert);
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: egress }
spec:
  services:
    - { name: client }
  outboundTrafficPolicy: { mode: REGISTRY_ONLY, egressGateway: { name: egress } }
---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: api }
spec:
  hosts: [api.example.test]
  ports: [{ number: 80, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: ${port} }]
  tls: { caFile: ca.pem }
`,
  );
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'));
});

after(async () => {
  const gatewayPid = mesh?.state.egressGateway?.pid;
  await stopMesh(mesh, dir);
  assert.equal(alive(gatewayPid), false, 'the egress gateway stops with the mesh');
  if (server) {
    server.closeAllConnections();
    await new Promise((r) => server!.close(r));
  }
});

test('a plain-HTTP call to an ExternalService leaves through the egress gateway, which originates TLS', async () => {
  const gw = mesh!.state.egressGateway;
  assert.ok(gw?.pid !== undefined, 'trellis up started the egress gateway');
  const client = mesh!.state.instances.find((i) => i.service === 'client')!;
  const proxyPort = Number(new URL(client.env.TRELLIS_HTTP_PROXY!).port);
  // The gateway registers with the control plane as it comes up; until then the call has no endpoint.
  const r = await eventually(
    async () => {
      const got = await request(proxyPort, '/v1/things', { host: 'api.example.test' }, false);
      return got.status === 200 ? got : false;
    },
    { what: 'the call through the egress gateway', timeoutMs: 20_000 },
  );
  assert.equal(r.body, 'external via api.example.test /v1/things');
  const metrics = await (await fetch(`http://${gw.admin.host}:${gw.admin.port}/metrics`)).text();
  assert.match(metrics, /trellis_http_requests_total\{[^}]*destination="api"[^}]*\} [1-9]/);

  const refused = await request(proxyPort, '/', { host: 'elsewhere.example.test' }, false);
  assert.equal(refused.status, 403);
  assert.equal(refused.headers['trellis-error'], 'egress-refused');
});
