// The injection webhook without its Secret yet (issue 18): it listens, refuses TLS until
// the kubelet writes the key pair, then serves it; a renewed pair is picked up without a
// restart; a half-swapped pair (certificate and key not matching) keeps the one in use.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { eventually } from '../helpers/eventually.js';
import { createInjectionWebhook, KeyPairFiles } from '../../src/k8s/webhook.js';
import { CertificateAuthority } from '../../src/control/ca/certificate-authority.js';

const NAME = 'trellis-webhook.trellis-system.svc';

describe('the webhook loads its key pair when the files appear or change', () => {
  let dir: string;
  let server: ReturnType<typeof createInjectionWebhook>;
  let files: KeyPairFiles;
  let port: number;
  let ca: CertificateAuthority;
  const logs: string[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'trellis-webhook-pair-'));
    ca = await CertificateAuthority.open({ trustDomain: 'cluster.local' });
    server = createInjectionWebhook({});
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
    files = new KeyPairFiles({
      server,
      certFile: path.join(dir, 'tls.crt'),
      keyFile: path.join(dir, 'tls.key'),
      pollMs: 20,
      log: (l) => void logs.push(l),
    });
  });
  after(async () => {
    files?.stop();
    server?.closeAllConnections();
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The serial number of the certificate a client trusting only the mesh bundle is served. */
  const served = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: NAME, ca: ca.trustBundle() }, () => {
        const serial = socket.getPeerCertificate().serialNumber;
        socket.destroy();
        resolve(serial);
      });
      socket.on('error', reject);
    });
  const serialOf = (chain: string): string => new X509Certificate(chain).serialNumber;

  it('refuses TLS while there is no key pair', async () => {
    assert.equal(await files.load(), false);
    assert.equal(files.loaded, false);
    await assert.rejects(served());
    assert.ok(logs.some((l) => l.includes('waiting for')));
  });

  it('serves the pair once the files appear, and a renewed pair once they change', async () => {
    files.start();
    const first = await ca.issueServing([NAME], 86_400_000);
    await writeFile(path.join(dir, 'tls.key'), first.key);
    await writeFile(path.join(dir, 'tls.crt'), first.chain);
    await eventually(async () => assert.equal(await served(), serialOf(first.chain)), { what: 'the first pair to be served' });
    const second = await ca.issueServing([NAME], 86_400_000);
    await writeFile(path.join(dir, 'tls.crt'), second.chain);
    await writeFile(path.join(dir, 'tls.key'), second.key);
    await eventually(async () => assert.equal(await served(), serialOf(second.chain)), { what: 'the renewed pair to be served' });
  });

  it('keeps the pair in use when the files do not match (the kubelet half way through a swap)', async () => {
    files.stop();
    const inUse = await served();
    const third = await ca.issueServing([NAME], 86_400_000);
    await writeFile(path.join(dir, 'tls.crt'), third.chain);
    assert.equal(await files.load(), false);
    assert.ok(
      logs.some((l) => l.includes('keeping the one in use')),
      logs.join('\n'),
    );
    assert.equal(await served(), inUse);
    await writeFile(path.join(dir, 'tls.key'), third.key);
    assert.equal(await files.load(), true);
    assert.equal(await served(), serialOf(third.chain));
  });
});
