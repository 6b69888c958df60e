// `trellis check` on a running control plane whose CA is the user's, with a root that
// expires in 10 days: the root and the issuer are warned about (exit 0), proxies that are
// connected, current and certified pass; a proxy stuck on a rejected snapshot fails
// (exit 1). The verdicts themselves are checked on views, one case each.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { ECDSA_SHA256, generateKeyPair, makeCsr, privateKeyPem, x509 } from '../../src/security/x509.js';
import { checkMesh } from '../../src/cli/check.js';
import { checkCa, checkCertificates, checkConnected, checkSnapshots, renderChecks } from '../../src/cli/mesh-checks.js';
import type { ProxyView, ServiceView } from '../../src/api/admin.js';
import type { CaView } from '../../src/control/ca/certificate-authority.js';
import type { IssuedView } from '../../src/control/ca/identity-service.js';
import { connect, sidecar, tempDir, TEST_BOOTSTRAP_SECRET, type FakeProxy } from '../control/helpers.js';
import { REPO, TRELLIS } from '../helpers/mesh-run.js';

const DAY = 86_400_000;
const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: shop }
spec:
  identity:
    trustDomain: shop.test
    certificateLifetime: 1h
    ca: { certificate: ca/issuer.pem, key: ca/issuer.key, trustBundle: ca/roots.pem }
  services:
    - name: frontend
      upstreams: [backend]
    - name: backend
`;

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
let tokenFile: string;
const open: FakeProxy[] = [];

/** A root that expires in 10 days and an issuer under it (9 days), as a user would bring them. */
async function writeShortLivedCa(): Promise<void> {
  const now = Date.now();
  const rootKeys = await generateKeyPair();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=Shop Root',
    keys: rootKeys,
    signingAlgorithm: ECDSA_SHA256,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 10 * DAY),
    extensions: [new x509.BasicConstraintsExtension(true, 1, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const issuerKeys = await generateKeyPair();
  const issuer = await x509.X509CertificateGenerator.create({
    subject: 'CN=Shop Issuer',
    issuer: root.subject,
    publicKey: issuerKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: ECDSA_SHA256,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 9 * DAY),
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  await mkdir(join(files.dir, 'ca'));
  await files.write('ca/issuer.pem', issuer.toString('pem'));
  await files.write('ca/issuer.key', await privateKeyPem(issuerKeys.privateKey));
  await files.write('ca/roots.pem', root.toString('pem'));
}

/** A proxy that registers, acknowledges its snapshot and gets its certificate. */
async function certifiedProxy(id: string, service: string): Promise<FakeProxy> {
  const p = await connect(plane.address);
  open.push(p);
  p.send({ type: 'hello', proxy: sidecar(id, service) });
  const s = await p.snapshot();
  p.send({ type: 'ack', version: s.version });
  p.send({ type: 'csr', id: 1, csr: await makeCsr(await generateKeyPair()) });
  assert.equal((await p.next((m) => m.type === 'certificate' || m.type === 'csr-refused')).type, 'certificate');
  return p;
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TRELLIS, ...args], { cwd: REPO, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

before(async () => {
  files = await tempDir();
  await writeShortLivedCa();
  const mesh = await files.write('mesh.yaml', MESH);
  plane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    log: () => {},
    pushDebounceMs: 5,
    health: { schedule: false },
  });
  tokenFile = await files.write('admin-token', `${plane.adminToken}\n`);
});

after(async () => {
  for (const p of open) p.socket.destroy();
  await plane?.close();
  await files?.remove();
});

test('a root and an issuer that expire within 30 days are warnings; connected, current, certified proxies pass; exit 0', async () => {
  await certifiedProxy('frontend-0', 'frontend');
  await certifiedProxy('backend-0', 'backend');
  const results = await checkMesh({ url: plane.url, token: plane.adminToken });
  const text = renderChecks(plane.url, results);
  assert.deepEqual(
    results.map((r) => r.level),
    ['ok', 'ok', 'ok', 'ok', 'ok', 'warn', 'warn'],
    text,
  );
  assert.match(text, /^ {2}WARN {2}CA root "CN=Shop Root" \(serial [0-9a-f]+\) expires in 9d 23h \(.*\), within 30d 0h$/m);
  assert.match(text, /^ {2}WARN {2}CA issuer "CN=Shop Issuer" \(serial [0-9a-f]+\) expires in 8d 23h/m);
  assert.match(text, /add a new root to the trust bundle file/);
  assert.match(text, /^ {2}ok {4}2 proxies connected$/m);
  assert.match(text, /^0 failures, 2 warnings$/m);

  const child = await cli(['check', '--control', plane.url, '--admin-token-file', tokenFile]);
  assert.equal(child.code, 0, child.stdout + child.stderr);
  assert.match(child.stdout, /WARN {2}CA root "CN=Shop Root"/);
});

test('a proxy stuck on a rejected snapshot, or a wrong token, fails the check: exit 1 with the reason', async () => {
  const p = await connect(plane.address);
  open.push(p);
  p.send({ type: 'hello', proxy: sidecar('backend-1', 'backend') });
  const s = await p.snapshot();
  p.send({ type: 'nack', version: s.version, error: 'no such filter' });
  const child = await cli(['check', '--control', plane.url, '--admin-token-file', tokenFile]);
  assert.equal(child.code, 1, child.stdout + child.stderr);
  assert.match(child.stdout, /FAIL {2}1 proxy is not on their latest snapshot\n {10}backend-1: rejected v\d+ \(no such filter\); it runs on v-/);

  const wrong = await files.write('wrong-token', 'tat1.nope\n');
  const refused = await cli(['check', '--control', plane.url, '--admin-token-file', wrong]);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /FAIL {2}the admin credential is not accepted\n {10}the control plane refused the admin credential/);
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise((r) => free.close(r));
  const nobody = await cli(['check', '--control', `http://127.0.0.1:${port}`, '--admin-token-file', wrong]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stdout, new RegExp(`FAIL {2}the control plane does not answer at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
});

const NOW = Date.parse('2027-01-10T00:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString();

function proxyView(id: string, o: Partial<ProxyView> = {}): ProxyView {
  return {
    id,
    service: id.replace(/-\d+$/, ''),
    version: 'default',
    kind: 'sidecar',
    admin: { host: '127.0.0.1', port: 1 },
    connected: true,
    connectedAt: iso(NOW - DAY),
    disconnectedAt: null,
    sentVersion: 3,
    ackedVersion: 3,
    lastNack: null,
    ...o,
  };
}

test('the verdicts: disconnected, short of replicas, behind, expired and overdue certificates, an expired or expiring CA', () => {
  assert.equal(checkConnected([], [])[0]?.level, 'fail');
  const down = checkConnected([proxyView('a-0'), proxyView('b-0', { connected: false, disconnectedAt: iso(NOW) })], []);
  assert.equal(down[0]?.level, 'fail');
  assert.match(down[0]!.details[0]!, /^b-0 \(service b\) disconnected at/);
  const services = [{ name: 'a', versions: [{ name: 'v1', labels: {}, replicas: 2 }], instances: [{ version: 'v1' }] }] as unknown as ServiceView[];
  assert.deepEqual(checkConnected([proxyView('a-0')], services)[1]?.details, ['a v1: 1 of 2 instances registered']);

  assert.equal(checkSnapshots([proxyView('a-0')]).level, 'ok');
  assert.deepEqual(checkSnapshots([proxyView('a-0', { ackedVersion: 2 })]).details, ['a-0: acknowledged v2 of v3']);
  assert.equal(checkSnapshots([proxyView('a-0', { connected: false, ackedVersion: 1 })]).level, 'ok', 'a disconnected proxy is the other check');

  const cert = (proxy: string, notBefore: number, notAfter: number): IssuedView =>
    ({ proxy, service: 'a', spiffeId: `spiffe://t/ns/default/sa/${proxy}`, notBefore: iso(notBefore), notAfter: iso(notAfter) }) as IssuedView;
  const h = 3_600_000;
  assert.equal(checkCertificates([proxyView('a-0')], [cert('a-0', NOW - h, NOW + 23 * h)], NOW).level, 'ok');
  assert.equal(checkCertificates([proxyView('a-0')], [cert('a-0', NOW - 20 * h, NOW + 4 * h)], NOW).level, 'warn', 'renewal overdue');
  assert.equal(checkCertificates([proxyView('a-0')], [], NOW).level, 'warn', 'none issued');
  const expired = checkCertificates([proxyView('a-0')], [cert('a-0', NOW - 25 * h, NOW - h)], NOW);
  assert.equal(expired.level, 'fail');
  assert.match(expired.details[0]!, /expired 1h 0m ago/);

  const ca = (rootAfter: number, issuerAfter: number): CaView => ({
    trustDomain: 't',
    source: 'generated',
    certificateLifetimeMs: DAY,
    roots: [{ subject: 'CN=r', serial: '01', notBefore: iso(NOW - DAY), notAfter: iso(rootAfter), active: true }],
    issuer: { subject: 'CN=i', serial: '02', notAfter: iso(issuerAfter) },
  });
  assert.deepEqual(
    checkCa(ca(NOW + 400 * DAY, NOW + 300 * DAY), NOW).map((r) => r.level),
    ['ok', 'ok'],
  );
  assert.deepEqual(
    checkCa(ca(NOW + 29 * DAY, NOW + 31 * DAY), NOW).map((r) => r.level),
    ['ok', 'warn'],
  );
  assert.deepEqual(
    checkCa(ca(NOW - 1, NOW + 31 * DAY), NOW).map((r) => r.level),
    ['ok', 'fail'],
  );
});
