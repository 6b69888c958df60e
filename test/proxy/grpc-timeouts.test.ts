// A rule's timeouts on gRPC calls: a call with no response head within
// timeouts.backendRequest gets DEADLINE_EXCEEDED the gRPC way (trailers-only, HTTP 200).
// (Timeouts of plain requests, over HTTP/1.1 and HTTP/2 alike, are in behaviour/cases.ts.)
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import type { RouteEntry } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { h2Request, type H2Result } from '../helpers/h2.js';
import { startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: http2.Http2Server;
let inbound: Sidecar;
let outbound: Sidecar;
let port: number;

before(async () => {
  app = http2.createServer();
  app.on('stream', (stream, headers) => {
    if (String(headers[':path']).startsWith('/hang')) return; // never answers
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  inbound = await startInbound('api', 'v1', (app.address() as net.AddressInfo).port);
  const routes: RouteEntry[] = [{ name: 'default/api/rule/0', match: {}, backends: [{ backend: 'api', weight: 1 }], timeouts: { backendRequestMs: 150 } }];
  outbound = await startOutbound('web', {
    api: {
      service: 'api',
      protocol: 'http',
      routes,
      backends: { api: { name: 'api', endpoints: [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
  port = outbound.addresses.upstreams.api!.port;
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await new Promise<void>((r) => app.close(() => r()));
});

/** One request on a fresh session (closed after). */
async function h2get(path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<H2Result> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await h2Request(session, { ':path': path, ...headers });
  } finally {
    session.close();
  }
}

test('a gRPC call that times out gets DEADLINE_EXCEEDED, trailers-only', async () => {
  const r = await h2get('/hang/pkg.Svc/Method', { ':method': 'POST', 'content-type': 'application/grpc' });
  assert.equal(r.headers[':status'], 200);
  assert.equal(r.headers['grpc-status'], '4');
  assert.equal(r.headers['trellis-error'], 'timeout');
});
