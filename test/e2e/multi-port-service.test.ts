// `trellis up` runs a two-port service: the runner picks an app port per service port and
// gives the app PORT (the first) and PORT_<NAME> for each, starts an inbound listener per
// port, and a caller reaches each port through the mesh: by a per-upstream listener that
// names the port (servicePort), and by Host svc:PORT on the HTTP proxy listener.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, stopMesh, REPO, request, type RunningMesh } from '../helpers/mesh-run.js';

let dir: string;
let mesh: RunningMesh;
const APP = join(REPO, 'test', 'fixtures', 'apps', 'two-port-server.js');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-e2e-ports-'));
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: ports
spec:
  services:
    - name: client
      upstreams: [echo, { service: echo, servicePort: 8080 }]
    - name: echo
      command: node ${APP}
      ports:
        - { name: http, port: 80, protocol: http }
        - { name: admin, port: 8080, protocol: http1 }
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
`,
  );
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'));
});

after(() => stopMesh(mesh, dir));

type Answer = { port: string; PORT: string; PORT_HTTP: string; PORT_ADMIN: string };

test('the runner gives a two-port app both ports, PORT being the first', () => {
  const echo = mesh.state.instances.find((i) => i.service === 'echo')!;
  assert.deepEqual(
    echo.ports?.map((p) => [p.name, p.port]),
    [
      ['http', 80],
      ['admin', 8080],
    ],
  );
  assert.equal(echo.env.PORT, String(echo.ports![0]!.app.port));
  assert.equal(echo.env.PORT_HTTP, echo.env.PORT);
  assert.equal(echo.env.PORT_ADMIN, String(echo.ports![1]!.app.port));
  assert.notEqual(echo.env.PORT_ADMIN, echo.env.PORT_HTTP);
  assert.notEqual(echo.ports![0]!.inbound.port, echo.ports![1]!.inbound.port, 'an inbound listener per port');
});

test('a caller reaches each port through the mesh', async () => {
  const client = mesh.state.instances.find((i) => i.service === 'client')!;
  const first = client.upstreams.find((u) => u.service === 'echo' && u.servicePort === undefined)!;
  const admin = client.upstreams.find((u) => u.service === 'echo' && u.servicePort === 8080)!;
  assert.equal(client.env.TRELLIS_UPSTREAM_ECHO_8080, `127.0.0.1:${admin.port}`);

  const viaFirst = await request(first.port, '/', { host: 'echo' });
  assert.equal(viaFirst.status, 200, viaFirst.body);
  assert.equal((JSON.parse(viaFirst.body) as Answer).port, 'HTTP');
  const viaAdmin = await request(admin.port, '/', { host: 'echo' });
  assert.equal(viaAdmin.status, 200, viaAdmin.body);
  assert.equal((JSON.parse(viaAdmin.body) as Answer).port, 'ADMIN');

  for (const [host, port] of [
    ['echo', 'HTTP'],
    ['echo:80', 'HTTP'],
    ['echo:8080', 'ADMIN'],
  ] as const) {
    const r = await request(client.httpProxy.port, '/', { host });
    assert.equal(r.status, 200, `${host}: ${r.body}`);
    assert.equal((JSON.parse(r.body) as Answer).port, port, host);
  }
  const missing = await request(client.httpProxy.port, '/', { host: 'echo:9090' });
  assert.equal(missing.status, 503);
  assert.equal(missing.headers['trellis-error'], 'unknown-port');
});
