// An HTTP/2 CONNECT (a client asking for a tunnel, which the mesh does not carry) on any
// HTTP listener is answered 400 on its stream; the proxy stays up and serves the next
// request. It used to end the process: node:http2 refuses to send a CONNECT with a
// :path to the next hop, and the forwarder took that for a closed session and sent the
// request again, forever (a stack overflow).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { h2Request } from '../helpers/h2.js';
import { closeServer, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import type http from 'node:http';

let app: http.Server;
let inbound: Sidecar;
let outbound: Sidecar;

before(async () => {
  const a = await listenHttp((req, res) => res.end(`app ${req.url}`));
  app = a.server;
  inbound = await startInbound('shop', 'v1', a.port);
  outbound = await startOutbound('web', {
    shop: {
      service: 'shop',
      protocol: 'http',
      routes: [],
      backends: { shop: { name: 'shop', endpoints: [{ id: 's-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
});

after(async () => {
  await outbound?.close();
  await inbound?.close();
  await closeServer(app);
});

for (const listener of ['outbound', 'inbound'] as const) {
  test(`an HTTP/2 CONNECT to the ${listener} listener is refused with 400, and the next request is served`, async () => {
    const port = listener === 'outbound' ? outbound.addresses.upstreams.shop!.port : inbound.addresses.inbound!.port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const res = await h2Request(session, { ':method': 'CONNECT', ':authority': 'example.com:443' });
      assert.equal(res.status, 400);
      assert.equal(res.headers['trellis-error'], 'bad-request');
      const next = await h2Request(session, { ':method': 'GET', ':path': '/after' });
      assert.deepEqual({ status: next.status, body: next.body }, { status: 200, body: 'app /after' });
    } finally {
      session.close();
    }
  });
}
