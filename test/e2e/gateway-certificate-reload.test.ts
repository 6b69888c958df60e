// A Gateway's certificate file replaced on disk under steady load: `trellis up` (control
// plane, a sidecar, the gateway proxy; mTLS STRICT, the admin lock on) serves a declared
// Gateway whose Secret names certificate files. Clients keep calling, some over one
// kept-alive connection each, some with a new TLS connection per request, while the files
// are replaced (written beside and renamed over, as cert-manager's and certbot's renewals
// do): new handshakes get the new certificate, and not one request fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueServerCertificate, makeLocalCa } from '../../src/security/local-tls.js';
import { meshUp, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { loadAcrossCertificateSwap } from '../helpers/certificate-swap-load.js';

const APP = `import http from 'node:http';
http.createServer((req, res) => res.end('ok ' + process.env.TRELLIS_INSTANCE)).listen(Number(process.env.PORT), process.env.HOST);
`;

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: reload }
spec:
  services:
    - name: web
      protocol: http
      command: node app.mjs
      health: { http: { path: /, status: 200 }, interval: 1s }
---
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: site
  annotations: { trellis.dev/certificate-file: site.pem, trellis.dev/key-file: site.key }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  listeners:
    - { name: https, port: 9443, protocol: HTTPS, hostname: site.example.test, tls: { certificateRefs: [{ name: site }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: site }
spec:
  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]
  hostnames: [site.example.test]
  rules: [{ backendRefs: [{ name: web }] }]
`;

/** Requests made by each kind of client, at most; the load also stops this long after the new certificate is seen. */
const MAX_REQUESTS = 4000;
const AFTER_SWAP_MS = 1500;

function get(port: number, ca: string, agent: https.Agent | false): Promise<{ status: number; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, servername: 'site.example.test', path: '/', ca, agent, headers: { host: 'site.example.test' } }, (res) => {
      const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, serial: cert.serialNumber ?? '' }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

test('a certificate file replaced on disk is served to new connections, and no request fails under load', { timeout: 180_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-gw-reload-'));
  let mesh: RunningMesh | undefined;
  try {
    await chmod(dir, 0o755);
    const ca = await makeLocalCa('reload test CA');
    const first = await issueServerCertificate(ca, { dnsNames: ['site.example.test'] });
    const second = await issueServerCertificate(ca, { dnsNames: ['site.example.test'] });
    const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toUpperCase();
    await writeFile(join(dir, 'site.pem'), first.cert);
    await writeFile(join(dir, 'site.key'), first.key, { mode: 0o600 });
    await writeFile(join(dir, 'app.mjs'), APP);
    await writeFile(join(dir, 'mesh.yaml'), MESH);
    mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, 'state'), ['--free-ports']);
    const port = mesh.state.gateways?.find((g) => g.name === 'edge')?.ports['9443']?.port;
    assert.ok(port !== undefined, 'the gateway proxy serving Gateway edge opened its port');
    await eventually(async () => assert.equal((await get(port, ca.cert, false)).status, 200), { timeoutMs: 30_000 });
    assert.equal((await get(port, ca.cert, false)).serial.toUpperCase(), serialOf(first.cert));

    const { count, failures, served, swappedSeenAt } = await loadAcrossCertificateSwap({
      get: async (agent) => {
        const r = await get(port, ca.cert, agent);
        return { status: r.status, serial: r.serial.toUpperCase() };
      },
      newSerial: serialOf(second.cert),
      // Replace both files the way renewals do: a new file beside, renamed over the old one.
      swap: async () => {
        await writeFile(join(dir, 'site.key.new'), second.key, { mode: 0o600 });
        await writeFile(join(dir, 'site.pem.new'), second.cert);
        await rename(join(dir, 'site.key.new'), join(dir, 'site.key'));
        await rename(join(dir, 'site.pem.new'), join(dir, 'site.pem'));
      },
      maxRequests: MAX_REQUESTS,
      afterSwapMs: AFTER_SWAP_MS,
      agentOptions: { ca: ca.cert },
    });
    t.diagnostic(`${count} requests, ${failures.length} failed; the new certificate seen ${swappedSeenAt === undefined ? 'never' : 'in time'}`);
    assert.deepEqual(failures, [], `${failures.length} of ${count} requests failed`);
    assert.ok(swappedSeenAt !== undefined, `the new certificate was served (seen: ${[...served].join(', ')}; ${count} requests)`);
    assert.ok(served.has(serialOf(first.cert)), 'the old certificate was served before the swap');
    assert.equal((await get(port, ca.cert, false)).serial.toUpperCase(), serialOf(second.cert), 'a new connection gets the new certificate');
  } finally {
    await stopMesh(mesh);
    await rm(dir, { recursive: true, force: true });
  }
});
