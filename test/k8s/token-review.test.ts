// Proxies join with ServiceAccount tokens: the TokenReview against the API stand-in
// through the KubeConfig, and the credential file read again after a rotation.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { KubeApiStandIn } from '../helpers/kube-api-stand-in.js';
import { postTokenReviewWith, reviewToken } from '../../src/k8s/source/token-review.js';
import { CredentialFile } from '../../src/proxy/credential-file.js';

describe('token review', () => {
  let api: KubeApiStandIn;
  before(async () => {
    api = await new KubeApiStandIn().start();
    api.tokens.set('cart-token', { username: 'system:serviceaccount:shop:cart', audiences: ['trellis'] });
    api.tokens.set('api-token', { username: 'system:serviceaccount:shop:cart', audiences: ['https://kubernetes.default.svc'] });
    api.tokens.set('user-token', { username: 'alice', audiences: ['trellis'] });
  });
  after(() => api?.close());

  it('gives the namespace and ServiceAccount of a trellis token', async () => {
    assert.deepEqual(await reviewToken(postTokenReviewWith(api.kubeConfig()), 'cart-token'), { ok: true, namespace: 'shop', serviceAccount: 'cart' });
    assert.ok(api.requests.includes('POST /apis/authentication.k8s.io/v1/tokenreviews'));
  });

  it('refuses unknown tokens, other audiences, users that are not ServiceAccounts, and oversized tokens', async () => {
    const post = postTokenReviewWith(api.kubeConfig());
    for (const token of ['nope', 'api-token', 'user-token', 'x'.repeat(20_000), '']) {
      const r = await reviewToken(post, token);
      assert.equal(r.ok, false, token.slice(0, 20));
    }
  });

  it('refuses when the server ignores the audience (no status.audiences) or cannot be reached', async () => {
    const r = await reviewToken(async () => ({ status: { authenticated: true, user: { username: 'system:serviceaccount:shop:cart' } } }), 't');
    assert.equal(r.ok, false);
    const down = await reviewToken(async () => {
      throw new Error('ECONNREFUSED');
    }, 't');
    assert.deepEqual(down, { ok: false, reason: 'the TokenReview failed: ECONNREFUSED' });
  });
});

describe('credential file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'trellis-cred-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads the token again after the kubelet rotates it, and keeps the last good one while the file is briefly gone', async () => {
    const file = path.join(dir, 'token');
    await writeFile(file, 'first\n');
    const cred = new CredentialFile(file);
    assert.equal(await cred.read(), 'first');
    await writeFile(`${file}.new`, 'second');
    await rename(`${file}.new`, file);
    assert.equal(await cred.read(), 'second');
    await rm(file);
    assert.equal(await cred.read(), 'second');
    await writeFile(file, '');
    assert.equal(await cred.read(), 'second');
  });

  it('fails when there never was a credential', async () => {
    await assert.rejects(new CredentialFile(path.join(dir, 'missing')).read());
  });
});
