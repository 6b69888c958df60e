// A proxy's admin server changes nothing and shows the map of the mesh to loopback only
// (src/proxy/admin-access.ts): every method but GET and HEAD is 405 (a POST was once
// answered as a GET), /config, /balancing and /identity are refused to another
// address, and /metrics and /ready stay open to the scraper wherever it is.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { adminRefusal } from '../../src/proxy/admin-access.js';
import { isLoopbackAddress } from '../../src/security/loopback.js';
import { startHttpProxySidecar } from '../helpers/proxy-pair.js';

let sidecar: Sidecar;

before(async () => {
  sidecar = await startHttpProxySidecar('web');
});

after(async () => {
  await sidecar.close();
});

async function call(method: string, path: string): Promise<{ status: number; allow: string | null; error: string | null; body: string }> {
  const { host, port } = sidecar.addresses.admin!;
  const res = await fetch(`http://${host}:${port}${path}`, { method });
  return { status: res.status, allow: res.headers.get('allow'), error: res.headers.get('trellis-error'), body: await res.text() };
}

test("a proxy's admin server answers GET and HEAD only", async () => {
  for (const path of ['/metrics', '/ready', '/config', '/balancing', '/identity', '/nothing']) {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await call(method, path);
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.allow, 'GET, HEAD');
      assert.equal(r.error, 'method-not-allowed');
      assert.equal(JSON.parse(r.body).code, 'TRELLIS_E_METHOD_NOT_ALLOWED');
    }
  }
  assert.equal((await call('GET', '/metrics')).status, 200);
  assert.equal((await call('HEAD', '/config')).status, 200);
  const config = JSON.parse((await call('GET', '/config')).body) as Record<string, unknown>;
  assert.ok(!JSON.stringify(config).includes('tbc1.'), 'the bootstrap credential is never shown');
});

test('the map of the mesh is for loopback peers; /metrics and /ready for any', () => {
  const req = (method: string, remoteAddress: string): IncomingMessage => ({ method, socket: { remoteAddress } }) as unknown as IncomingMessage;
  for (const local of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) {
    assert.ok(isLoopbackAddress(local), local);
    for (const path of ['/config', '/balancing', '/identity', '/metrics']) assert.equal(adminRefusal(req('GET', local), path), undefined, `${local} ${path}`);
  }
  for (const remote of ['10.0.0.5', '192.168.1.2', '::ffff:10.1.2.3', 'fe80::1', '2001:db8::1', '128.0.0.1']) {
    assert.ok(!isLoopbackAddress(remote), remote);
    for (const path of ['/config', '/balancing', '/identity', '/anything']) {
      const refused = adminRefusal(req('GET', remote), path);
      assert.equal(refused?.code, 'TRELLIS_E_ADMIN_LOOPBACK_ONLY', `${remote} ${path}`);
      assert.equal(refused?.status, 403);
    }
    assert.equal(adminRefusal(req('GET', remote), '/metrics'), undefined, 'Prometheus scrapes from anywhere');
    assert.equal(adminRefusal(req('GET', remote), '/ready'), undefined);
  }
  assert.ok(!isLoopbackAddress(undefined));
});
