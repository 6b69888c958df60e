// An error the proxy answers to a HEAD request has no body (RFC 9110 9.3.2): a client
// reads none after a HEAD response, so body bytes would be taken for the start of the
// next response on the connection (Node's client: "Data after `Connection: close`").
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, test } from 'node:test';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { rawExchange, startOutbound } from '../helpers/proxy-pair.js';

let out: Sidecar | undefined;
after(async () => {
  await out?.close();
});

async function outbound(): Promise<number> {
  // A route for /api only: every other path is answered 404 no-route by the proxy itself.
  out ??= await startOutbound('web', {
    empty: {
      service: 'empty',
      protocol: 'http',
      backends: { empty: { name: 'empty', endpoints: [] } },
      routes: [{ name: 'default/api/rule/0', match: { path: { type: 'PathPrefix', value: '/api' } }, backends: [{ backend: 'empty', weight: 1 }] }],
    },
  });
  return out.addresses.upstreams.empty!.port;
}

test('HTTP/1.1: a HEAD answered with an error has the head only, and the connection stays in step', async () => {
  const port = await outbound();
  const text = await rawExchange(port, 'HEAD /x HTTP/1.1\r\nhost: empty\r\n\r\nGET /y HTTP/1.1\r\nhost: empty\r\nconnection: close\r\n\r\n', 3000);
  const responses = text.split(/(?=HTTP\/1\.1 )/);
  assert.equal(responses.length, 2, text);
  assert.match(responses[0]!, /^HTTP\/1\.1 404 [^\r]*\r\n[\s\S]*trellis-error: no-route\r\n(?:[^\r]+\r\n)*\r\n$/, 'the HEAD answer ends with its head');
  assert.match(responses[1]!, /^HTTP\/1\.1 404 [\s\S]*\r\n\r\n\{"code":"TRELLIS_E_NO_ROUTE"/, 'the GET answer that follows is read whole');
});

test('HTTP/2: a HEAD answered with an error has no DATA', async () => {
  const port = await outbound();
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    const { status, bytes } = await new Promise<{ status: number; bytes: number }>((resolve, reject) => {
      const s = session.request({ ':method': 'HEAD', ':path': '/x' });
      let status = 0;
      let bytes = 0;
      s.on('response', (h) => {
        status = Number(h[':status']);
      });
      s.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      s.on('end', () => resolve({ status, bytes }));
      s.on('error', reject);
    });
    assert.equal(status, 404);
    assert.equal(bytes, 0);
  } finally {
    session.destroy();
  }
});
