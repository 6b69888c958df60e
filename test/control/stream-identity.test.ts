// The control stream's door and its CA: a hello must carry the bootstrap credential of
// the instance it names (so the shared join token, or another instance's credential, no
// longer registers a `postgres`, and a wrong credential for a live id leaves that
// instance alone); a registered proxy's CSR is answered with its certificate, a bad one
// with a reason on a stream that stays up; the secret never reaches a log line.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { ControlMessage, IssuedCertificate } from '../../src/api/protocol.js';
import { mintCredential } from '../../src/security/bootstrap-credential.js';
import { generateKeyPair, makeCsr } from '../../src/security/x509.js';
import { adminAuth, connect, type FakeProxy, getJson, sidecar, TEST_BOOTSTRAP_SECRET, tempDir } from './helpers.js';
import { eventually } from '../helpers/eventually.js';
import { ControlClient } from '../../src/proxy/control-client.js';

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: shop }
spec:
  identity: { trustDomain: shop.test, certificateLifetime: 1h }
  services:
    - name: backend
      upstreams: [postgres]
    - name: postgres
      protocol: tcp
`;

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
const logs: string[] = [];
const open: FakeProxy[] = [];

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH);
  plane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    stateDir: files.dir,
    log: (l) => logs.push(l),
    pushDebounceMs: 5,
    health: { schedule: false },
  });
});

after(async () => {
  for (const p of open) p.socket.destroy();
  await plane.close();
  await files.remove();
});

async function proxy(): Promise<FakeProxy> {
  const p = await connect(plane.address);
  open.push(p);
  return p;
}

async function metric(name: string): Promise<string> {
  const res = await fetch(`http://${plane.address.host}:${plane.address.port}/metrics`, { headers: adminAuth(plane) });
  const text = await res.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');
}

function refusal(m: ControlMessage): { code: string; message: string } {
  assert.equal(m.type, 'error');
  return m as { code: string; message: string };
}

test('a hello without a credential is refused: an error, the stream closed, a metric, a log line; nothing registered', async () => {
  const p = await proxy();
  p.sendAsIs({ type: 'hello', proxy: sidecar('postgres-evil', 'postgres') });
  const err = refusal(await p.next());
  assert.equal(err.code, 'TRELLIS_E_CREDENTIAL_REFUSED');
  assert.match(err.message, /no bootstrap credential/);
  await p.closed;
  assert.equal(plane.model.instance('postgres-evil'), undefined);
  assert.match(await metric('trellis_control_hello_refused_total{reason="missing"}'), / 1$/);
  assert.ok(logs.some((l) => /refused sidecar postgres-evil \(service postgres\).*no bootstrap credential/.test(l)));
});

test("another instance's credential (or a gateway's) does not register a postgres", async () => {
  const backendCredential = mintCredential(TEST_BOOTSTRAP_SECRET, { kind: 'sidecar', service: 'backend', id: 'backend-0' });
  for (const credential of [
    backendCredential,
    mintCredential(TEST_BOOTSTRAP_SECRET, { kind: 'gateway', service: 'postgres', id: 'postgres-0' }),
    'tbc1.AAAA',
    'x'.repeat(100),
  ]) {
    const p = await proxy();
    p.sendAsIs({ type: 'hello', proxy: sidecar('postgres-0', 'postgres'), credential });
    const err = refusal(await p.next());
    assert.equal(err.code, 'TRELLIS_E_CREDENTIAL_REFUSED');
    assert.match(err.message, /not the one of this instance/);
    await p.closed;
  }
  assert.equal(plane.model.instance('postgres-0'), undefined);
  assert.match(await metric('trellis_control_hello_refused_total{reason="wrong"}'), / 4$/);
});

test("a wrong credential for a live instance's id leaves that instance's stream and registration alone", async () => {
  const real = await proxy();
  real.send({ type: 'hello', proxy: sidecar('postgres-1', 'postgres') });
  await real.snapshot();
  const impostor = await proxy();
  impostor.sendAsIs({
    type: 'hello',
    proxy: sidecar('postgres-1', 'postgres', 'default', { inbound: { host: '127.0.0.1', port: 1 } }),
    credential: 'tbc1.forged',
  });
  assert.equal(refusal(await impostor.next()).code, 'TRELLIS_E_CREDENTIAL_REFUSED');
  await impostor.closed;
  assert.equal(real.socket.destroyed, false);
  assert.notEqual(plane.model.instance('postgres-1')?.inbound?.port, 1);
  real.send({ type: 'ping' });
  assert.equal((await real.next((m) => m.type === 'pong')).type, 'pong', 'the real stream still answers');
});

test('a registered proxy sends a CSR and gets a certificate naming its service (not what the CSR asks), with the trust bundle', async () => {
  const p = await proxy();
  p.send({ type: 'hello', proxy: sidecar('backend-0', 'backend') });
  await p.snapshot();
  p.send({ type: 'csr', id: 7, csr: await makeCsr(await generateKeyPair()) });
  const answer = await p.next((m) => m.type === 'certificate' || m.type === 'csr-refused');
  assert.equal(answer.type, 'certificate');
  const cert = (answer as { id: number; certificate: IssuedCertificate }).certificate;
  assert.equal((answer as { id: number }).id, 7);
  assert.equal(cert.spiffeId, 'spiffe://shop.test/ns/default/sa/backend');
  assert.equal(Date.parse(cert.notAfter) - Date.parse(cert.notBefore), 3_600_000 + 60_000, '1 h, backdated a minute');
  assert.equal(cert.trustBundle.length, 1);
  assert.match(await metric('trellis_control_certificates_issued_total'), / 1$/);
  const view = await getJson<{ spiffeId: string; serial: string }>(plane, '/v1/identity/backend-0');
  assert.equal(view.body.serial, cert.serial);
  assert.doesNotMatch(JSON.stringify((await getJson(plane, '/v1/identity')).body), /PRIVATE KEY/);

  // Bad CSRs: answered with the reason, the stream stays up.
  for (const csr of ['garbage', 'A'.repeat(100_000)]) {
    p.send({ type: 'csr', id: 8, csr });
    const refused = await p.next((m) => m.type === 'csr-refused');
    assert.equal((refused as { code: string }).code, 'TRELLIS_E_CSR_INVALID');
  }
  p.send({ type: 'ping' });
  await p.next((m) => m.type === 'pong');
  assert.equal(p.socket.destroyed, false);
  // A malformed csr message (no string) is a protocol error like any other.
  const q = await proxy();
  q.send({ type: 'csr', id: 1, csr: 'x' });
  assert.match(refusal(await q.next()).message, /before hello/);
});

test('the CA is kept in the state folder with its key file 0600', async () => {
  const { stat } = await import('node:fs/promises');
  assert.equal((await stat(`${files.dir}/ca/ca.json`)).mode & 0o777, 0o600);
});

test('a flood of refused hellos is counted in full but logged at most 20 lines a minute', async () => {
  // The cap is per clock minute: start well inside one, so the flood cannot straddle two.
  await eventually(() => Date.now() % 60_000 < 45_000, { timeoutMs: 20_000, intervalMs: 250, what: 'the start of a minute' });
  const before = logs.filter((l) => l.includes('refused sidecar flood-')).length;
  for (let i = 0; i < 30; i++) {
    const p = await proxy();
    p.sendAsIs({ type: 'hello', proxy: sidecar(`flood-${i}`, 'postgres') });
    refusal(await p.next());
    await p.closed;
  }
  const lines = logs.filter((l) => l.includes('refused sidecar flood-')).length - before;
  // The other tests' refusals share the minute's 20 lines.
  assert.ok(lines <= 20, `${lines} refusal lines logged`);
  assert.match(await metric('trellis_control_hello_refused_total{reason="missing"}'), / 3\d$/);
});

test('a proxy the control plane refuses at hello retries ever more slowly, not every 100 ms', async () => {
  // Before, the backoff started over at every stream made, so a refused proxy came back
  // every 100-ms-or-so without end (and each time, a log line of the control plane's).
  const delays: number[] = [];
  const client = new ControlClient({
    url: `http://${plane.address.host}:${plane.address.port}`,
    credential: 'trellis-bootstrap-v1.wrong',
    info: sidecar('retrier-0', 'backend'),
    apply: () => {},
    onState: (_connected, detail) => {
      const m = /retrying in (\d+) ms/.exec(detail);
      if (m) delays.push(Number(m[1]));
    },
  });
  client.start();
  try {
    await eventually(() => assert.ok(delays.length >= 4, `retries so far: ${delays.join(', ')}`), { timeoutMs: 10_000 });
  } finally {
    client.stop();
  }
  // Jittered exponential backoff (100 ms * 2^n, times 0.5-1): the fourth wait is at least 400 ms.
  assert.ok(delays[3]! >= 400, `waits: ${delays.join(', ')} ms`);
});

test('no log line carries the bootstrap secret, a credential or a key', async () => {
  await eventually(() => assert.ok(logs.length > 5));
  const credentials = ['backend-0', 'postgres-0', 'postgres-1'].map((id) =>
    mintCredential(TEST_BOOTSTRAP_SECRET, { kind: 'sidecar', service: id.split('-')[0] as string, id }),
  );
  for (const line of logs) {
    assert.ok(!line.includes(TEST_BOOTSTRAP_SECRET), line);
    assert.ok(!line.includes('tbc1.'), line);
    assert.ok(!/PRIVATE KEY/.test(line), line);
    for (const c of credentials) assert.ok(!line.includes(c), line);
  }
});
