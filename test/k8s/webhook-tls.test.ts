// The injection webhook's TLS from the mesh CA (issue 18), against the API stand-in: the
// leader creates Secret trellis-webhook-tls (a serving certificate for the webhook's
// Service that a TLS client trusting only the mesh bundle accepts) and sets the
// MutatingWebhookConfiguration's caBundle; a pass with nothing to change writes nothing;
// a follower writes nothing; a certificate with a third of its life left is renewed; a
// new mesh CA means a new certificate and caBundle.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { KubeApiStandIn } from '../helpers/kube-api-stand-in.js';
import { kubeCall } from '../../src/k8s/source/reflector.js';
import { WebhookTlsWriter } from '../../src/k8s/source/webhook-tls.js';
import { CertificateAuthority } from '../../src/control/ca/certificate-authority.js';

const DAY = 24 * 3_600_000;
const SECRET = '/api/v1/namespaces/trellis-system/secrets/trellis-webhook-tls';
const CONFIG = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/trellis-sidecar-injector';

interface SecretObject {
  type: string;
  data: Record<string, string>;
  metadata: { resourceVersion: string };
}
interface ConfigObject {
  webhooks: { name: string; clientConfig: { caBundle?: string; service: unknown } }[];
}

const text = (b64: string | undefined): string => Buffer.from(b64 ?? '', 'base64').toString('utf8');

/** Whether a TLS client that trusts only `bundle` completes a handshake with the pair, by the webhook's Service name. */
async function handshake(cert: string, key: string, bundle: string, servername: string): Promise<void> {
  const server = https.createServer({ cert, key }, (_req, res) => res.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, servername, ca: bundle, agent: false, headers: { host: servername } }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
    });
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

describe('the webhook TLS Secret and caBundle from the mesh CA', () => {
  let api: KubeApiStandIn;
  // From the real time: the handshakes check validity by the real clock.
  let clock = Math.floor(Date.now() / 1000) * 1000;
  const now = (): number => clock;
  let ca: CertificateAuthority;
  let leading = true;
  const logs: string[] = [];
  let writer: WebhookTlsWriter;
  const call = (): ReturnType<typeof kubeCall> => kubeCall(api.kubeConfig());
  const get = async <T>(path: string): Promise<T> => (await call()('GET', path)) as T;
  const writes = (): string[] => api.requests.filter((r) => !r.startsWith('GET '));

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.apply({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'trellis-sidecar-injector' },
      webhooks: [
        {
          name: 'sidecar-injector.trellis.dev',
          clientConfig: { service: { name: 'trellis-webhook', namespace: 'trellis-system', path: '/inject', port: 443 } },
        },
      ],
    });
    ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now });
    const mk = (): WebhookTlsWriter =>
      new WebhookTlsWriter({ call: call(), namespace: 'trellis-system', leading: () => leading, ca, now, log: (l) => void logs.push(l) });
    writer = mk();
  });
  after(() => api?.close());

  it('a follower writes nothing', async () => {
    leading = false;
    await writer.reconcile();
    assert.deepEqual(writes(), []);
    await assert.rejects(get(SECRET), /not found/);
    leading = true;
  });

  it('the leader creates the Secret, signed by the mesh CA for the Service name, and sets the caBundle', async () => {
    await writer.reconcile();
    const secret = await get<SecretObject>(SECRET);
    assert.equal(secret.type, 'kubernetes.io/tls');
    const bundle = ca.trustBundle().join('');
    assert.equal(text(secret.data['ca.crt']), bundle);
    for (const name of ['trellis-webhook.trellis-system.svc', 'trellis-webhook.trellis-system.svc.cluster.local'])
      await handshake(text(secret.data['tls.crt']), text(secret.data['tls.key']), bundle, name);
    await assert.rejects(handshake(text(secret.data['tls.crt']), text(secret.data['tls.key']), bundle, 'elsewhere.example'), /altnames|Hostname/);
    const config = await get<ConfigObject>(CONFIG);
    assert.equal(text(config.webhooks[0]?.clientConfig.caBundle), bundle);
    assert.deepEqual(config.webhooks[0]?.clientConfig.service, { name: 'trellis-webhook', namespace: 'trellis-system', path: '/inject', port: 443 });
    assert.deepEqual(writes(), ['POST /api/v1/namespaces/trellis-system/secrets', `PUT ${CONFIG}`]);
  });

  it('a pass with nothing to change writes nothing (no write loop)', async () => {
    const before = writes().length;
    clock += 10 * DAY;
    await writer.reconcile();
    await writer.reconcile();
    assert.equal(writes().length, before);
  });

  it('renews the certificate once a third of its life is left, and leaves the caBundle alone', async () => {
    const old = await get<SecretObject>(SECRET);
    const before = writes().length;
    clock += 51 * DAY; // 61 days into 90
    await writer.reconcile();
    const renewed = await get<SecretObject>(SECRET);
    assert.notEqual(renewed.data['tls.crt'], old.data['tls.crt']);
    assert.notEqual(renewed.data['tls.key'], old.data['tls.key']);
    assert.deepEqual(writes().slice(before), [`PUT ${SECRET}`]);
    const leaf = new (await import('node:crypto')).X509Certificate(text(renewed.data['tls.crt']));
    assert.equal(Date.parse(leaf.validTo), Math.floor((clock + 90 * DAY) / 1000) * 1000);
    assert.ok(
      logs.some((l) => l.includes('expires at')),
      logs.join('\n'),
    );
  });

  it('a new mesh CA gets a new certificate and caBundle', async () => {
    const before = writes().length;
    clock = Math.floor(Date.now() / 1000) * 1000; // the handshake below checks by the real clock
    ca = await CertificateAuthority.open({ trustDomain: 'cluster.local', now });
    writer = new WebhookTlsWriter({ call: call(), namespace: 'trellis-system', leading: () => leading, ca, now, log: (l) => void logs.push(l) });
    await writer.reconcile();
    const bundle = ca.trustBundle().join('');
    const secret = await get<SecretObject>(SECRET);
    await handshake(text(secret.data['tls.crt']), text(secret.data['tls.key']), bundle, 'trellis-webhook.trellis-system.svc');
    assert.equal(text((await get<ConfigObject>(CONFIG)).webhooks[0]?.clientConfig.caBundle), bundle);
    assert.deepEqual(writes().slice(before), [`PUT ${SECRET}`, `PUT ${CONFIG}`]);
  });
});
