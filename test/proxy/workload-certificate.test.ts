// The proxy's side of identity. The renewer on a fake clock: first certificate, renewal
// at about two thirds of its life (before expiry), retries with backoff when the control
// plane refuses or is away, a trust-bundle change reaching WorkloadIdentity. And a real
// sidecar against a real control plane: with its credential it gets a certificate that
// /identity shows (never the key); without one it is refused and gets nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CertificateAuthority } from '../../src/control/ca/certificate-authority.js';
import { CertificateRenewer, type RenewalClock } from '../../src/proxy/tls/certificate-renewer.js';
import { WorkloadIdentity } from '../../src/proxy/tls/workload-identity.js';
import type { IssuedCertificate } from '../../src/api/protocol.js';
import { startControlPlane } from '../../src/control/control-plane.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { eventually } from '../helpers/eventually.js';
import { tempDir } from '../control/helpers.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2027-03-01T00:00:00Z');

/** A clock whose timers fire only when the test advances it. */
class FakeClock implements RenewalClock {
  t = T0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 0;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#next;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }
  /** Moves to `to`, firing due timers in order. */
  advanceTo(to: number): void {
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, v]) => v.at <= to).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = to;
  }
  get pending(): number[] {
    return [...this.#timers.values()].map((v) => v.at);
  }
}

async function setup(fail: () => boolean) {
  const clock = new FakeClock();
  const ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now: () => clock.now(), propagationMs: HOUR });
  const identity = new WorkloadIdentity();
  let requests = 0;
  const renewer = new CertificateRenewer({
    identity,
    clock,
    random: () => 0.5, // no jitter: renewal exactly at 2/3
    request: async (csr) => {
      requests++;
      if (fail()) throw new Error('control plane away');
      const r = await ca.issue(csr, { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'backend' });
      if (typeof r === 'string') throw new Error(r);
      return r as IssuedCertificate;
    },
  });
  return { clock, ca, identity, renewer, requests: () => requests };
}

test('the renewer gets a certificate, renews it at two thirds of its life, always before expiry, with a new key', async () => {
  const { clock, identity, renewer, requests } = await setup(() => false);
  const changes: string[] = [];
  identity.on('change', () => changes.push(identity.view()?.serial ?? ''));
  await renewer.renewNow();
  assert.ok(identity.ready);
  const first = identity.tlsMaterial();
  assert.ok(first);
  const notBefore = identity.notBefore as number;
  const renewAt = notBefore + ((identity.notAfter as number) - notBefore) * (2 / 3);
  assert.deepEqual(clock.pending, [renewAt]);
  assert.ok(renewAt < (identity.notAfter as number));
  // Three days of renewals: never a moment without a valid certificate.
  for (let day = 0; day < 3; day++) {
    const before = identity.notAfter as number;
    clock.advanceTo(clock.pending[0] as number);
    await eventually(() => assert.ok((identity.notAfter as number) > before));
    assert.ok(clock.now() < before, 'renewed before the old one expired');
  }
  assert.equal(requests(), 4);
  assert.equal(new Set(changes).size, 4);
  assert.notEqual(identity.tlsMaterial()?.key, first.key, 'a new key with each certificate');
  assert.doesNotMatch(JSON.stringify(identity), /PRIVATE KEY/);
  assert.doesNotMatch(JSON.stringify(identity.view()), /PRIVATE KEY/);
  renewer.stop();
});

test('a failed request is retried with growing backoff, and the next success schedules the renewal', async () => {
  let failing = true;
  const { clock, identity, renewer, requests } = await setup(() => failing);
  await renewer.renewNow();
  assert.equal(identity.ready, false);
  const delays: number[] = [];
  for (let i = 0; i < 4; i++) {
    const at = clock.pending[0] as number;
    delays.push(at - clock.now());
    clock.advanceTo(at);
    await eventually(() => assert.equal(requests(), i + 2));
  }
  assert.ok(
    delays.every((d, i) => i === 0 || d >= (delays[i - 1] as number) * 0.9),
    `backoff grows: ${delays}`,
  );
  failing = false;
  clock.advanceTo(clock.pending[0] as number);
  await eventually(() => assert.ok(identity.ready));
  assert.equal(clock.pending.length, 1);
  renewer.stop();
  assert.equal(clock.pending.length, 0);
});

test('across a root rotation the proxy renews onto the new root while its bundle holds both', async () => {
  const { clock, ca, identity, renewer } = await setup(() => false);
  ca.on('bundle', (b) => identity.setTrustBundle(b));
  await renewer.renewNow();
  const oldIssuer = identity.view()?.chain[1];
  await ca.rotateRoot();
  assert.equal(identity.trustBundle.length, 2);
  clock.advanceTo(clock.pending[0] as number); // renews after the propagation delay (16 h > 1 h)
  await eventually(() => assert.notEqual(identity.view()?.chain[1], oldIssuer));
  assert.equal(identity.trustBundle.length, 2, 'the old root stays while old certificates live');
  renewer.stop();
});

test('a sidecar with its credential gets a certificate from the control plane and shows it on /identity; one without is refused', async () => {
  const files = await tempDir();
  const logs: string[] = [];
  const mesh = await files.write(
    'mesh.yaml',
    'apiVersion: trellis.dev/v1alpha1\nkind: Mesh\nmetadata: { name: m }\nspec:\n  services:\n    - name: backend\n    - name: postgres\n      protocol: tcp\n',
  );
  const plane = await startControlPlane({ configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: (l) => logs.push(l), health: { schedule: false } });
  const make = (id: string, service: string, credential?: string): Sidecar =>
    new Sidecar({
      service,
      version: 'default',
      id,
      kind: 'gateway',
      control: plane.url,
      ...(credential !== undefined ? { credential } : {}),
      upstreams: [],
      admin: { host: '127.0.0.1', port: 0 },
      accessLog: 'off',
      log: (l) => logs.push(l),
    });
  const good = make('backend-0', 'backend', plane.credentialFor({ kind: 'gateway', service: 'backend', id: 'backend-0' }));
  const bad = make('postgres-0', 'postgres', plane.credentialFor({ kind: 'gateway', service: 'backend', id: 'backend-0' }));
  try {
    await good.start();
    await bad.start();
    await eventually(() => assert.ok(good.identity.ready));
    const admin = good.addresses.admin as { host: string; port: number };
    const res = await fetch(`http://${admin.host}:${admin.port}/identity`);
    const body = (await res.json()) as { spiffeId: string; serial: string; notAfter: string };
    assert.equal(body.spiffeId, 'spiffe://cluster.local/ns/default/sa/backend');
    assert.equal(body.serial, good.identity.view()?.serial);
    assert.doesNotMatch(JSON.stringify(body), /PRIVATE KEY/);
    const metrics = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
    const expiry = Number(/^trellis_proxy_certificate_expiry_seconds(?:\{[^}]*\})? (\S+)$/m.exec(metrics)?.[1]);
    assert.ok(expiry > 23 * 3600 && expiry <= 24 * 3600 + 60, String(expiry));
    await eventually(() => assert.ok(logs.some((l) => /postgres-0: the control plane refused this proxy: TRELLIS_E_CREDENTIAL_REFUSED/.test(l))));
    assert.equal(bad.identity.ready, false);
    assert.equal(bad.snapshot, null, 'a refused proxy receives nothing');
    const badAdmin = bad.addresses.admin as { host: string; port: number };
    assert.equal((await fetch(`http://${badAdmin.host}:${badAdmin.port}/identity`)).status, 503);
    for (const l of logs) assert.ok(!/PRIVATE KEY|tbc1\./.test(l), l);
  } finally {
    await good.close();
    await bad.close();
    await plane.close();
    await files.remove();
  }
});
