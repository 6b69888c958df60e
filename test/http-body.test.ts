// Small request bodies on the admin servers (src/http-body.ts): kept up to the limit; a
// longer one is read to its end without being kept and refused, so the answer goes out
// on a connection still in step (the next request on it works).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { TrellisError } from '../src/errors.js';
import { readBody } from '../src/http-body.js';

const server = http.createServer((req, res) => {
  readBody(req, 16).then(
    (text) => res.end(`got ${text}`),
    (err: unknown) => {
      res.statusCode = err instanceof TrellisError ? err.status : 500;
      res.end(err instanceof TrellisError ? err.code : 'other');
    },
  );
});
after(() => new Promise((r) => server.close(r)));

test('a body within the limit is read; a longer one is refused 413 and the connection goes on', async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const post = (body: string): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        const req = http.request(url, { method: 'POST', agent }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    assert.deepEqual(await post('small'), { status: 200, text: 'got small' });
    assert.deepEqual(await post('x'.repeat(100_000)), { status: 413, text: 'TRELLIS_E_BODY_TOO_LARGE' });
    assert.deepEqual(await post('again'), { status: 200, text: 'got again' });
  } finally {
    agent.destroy();
  }
});
