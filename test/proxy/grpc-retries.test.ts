// A rule's retry policy on gRPC calls: a call answered UNAVAILABLE (trailers-only) is
// replayed, body and all, only when a RetryPolicy allows replaying POSTs, and the client
// sees only the good answer. (Retries of plain requests, over HTTP/1.1 and HTTP/2 alike,
// are in behaviour/cases.ts.)
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import type { RetryConfig, RouteEntry } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { h2Request, type H2Result } from '../helpers/h2.js';
import { startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: http2.Http2Server;
let inbound: Sidecar;
let outbound: Sidecar;
let port: number;
/** Every other call the app gets fails UNAVAILABLE; the bodies it got, in order. */
let arrivals = 0;
const bodies: string[] = [];

before(async () => {
  app = http2.createServer();
  app.on('stream', (stream) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString());
      if (arrivals++ % 2 === 0)
        return stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'try again' }, { endStream: true });
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  inbound = await startInbound('api', 'v1', (app.address() as net.AddressInfo).port);
  const retry = (p: Partial<RetryConfig> = {}): RetryConfig => ({ codes: [503], attempts: 2, backoffMs: 1, nonIdempotent: false, maxBodyBytes: 65536, ...p });
  const routes: RouteEntry[] = [
    {
      name: 'default/api/unsafe',
      match: { path: { type: 'PathPrefix', value: '/unsafe.Svc' } },
      backends: [{ backend: 'api', weight: 1 }],
      retry: retry({ nonIdempotent: true }),
    },
    { name: 'default/api/all', match: {}, backends: [{ backend: 'api', weight: 1 }], retry: retry() },
  ];
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
async function call(headers: http2.OutgoingHttpHeaders, body?: string): Promise<H2Result> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await h2Request(session, headers, body);
  } finally {
    session.close();
  }
}

test('a gRPC call answered UNAVAILABLE is replayed with its whole body when a RetryPolicy allows it', async () => {
  arrivals = 0;
  bodies.length = 0;
  for (let i = 0; i < 5; i++) {
    const payload = `message-${i}-${'x'.repeat(3000)}`;
    const r = await call({ ':method': 'POST', ':path': '/unsafe.Svc/Call', 'content-type': 'application/grpc' }, payload);
    assert.equal(r.headers[':status'], 200);
    assert.equal(r.trailers['grpc-status'], '0');
    assert.equal(r.body, payload);
  }
  assert.equal(arrivals, 10);
  for (let i = 0; i < 5; i++) {
    assert.equal(bodies[2 * i], bodies[2 * i + 1], `call ${i}: the replay carried the same body`);
  }
});

test('a gRPC call is not replayed without a RetryPolicy: the client gets the UNAVAILABLE', async () => {
  arrivals = 0;
  const statuses: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await call({ ':method': 'POST', ':path': '/safe.Svc/Call', 'content-type': 'application/grpc' }, `m${i}`);
    statuses.push(String(r.headers['grpc-status'] ?? r.trailers['grpc-status']));
  }
  assert.equal(arrivals, 6, 'each call reached the app exactly once');
  assert.deepEqual(statuses, ['14', '0', '14', '0', '14', '0']);
});
