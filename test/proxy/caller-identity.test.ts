// Who a request is from, and what it can put in the metrics: a client can't name the
// calling service (the outbound side replaces any trellis-source it sends), an inbound
// listener accepts only mesh services as callers, and neither forged sources, Host
// headers, nor an app's odd statuses add series to /metrics.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { h2Request } from '../helpers/h2.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let h2app: http2.Http2Server;
let inbound: Sidecar;
let h2inbound: Sidecar;
let outbound: Sidecar;
/** Each request's trellis-source header lines, as the app received them. */
const seen: string[][] = [];

function api(service: string, port: number): UpstreamSnapshot {
  const eps = [{ id: `${service}-0`, host: '127.0.0.1', port, version: 'v1' }];
  return { service, protocol: 'http', routes: [], backends: { [service]: { name: service, endpoints: eps } } };
}

before(async () => {
  app = await listenHttp((req, res) => {
    seen.push(req.headersDistinct['trellis-source'] ?? []);
    const m = /^\/status\/(\d+)$/.exec(req.url ?? '');
    res.statusCode = m ? Number(m[1]) : 200;
    res.end(String(req.headersDistinct['trellis-source'] ?? ''));
  });
  h2app = http2.createServer();
  h2app.on('stream', (stream, headers) => {
    stream.respond({ ':status': 200 });
    stream.end(JSON.stringify(headers['trellis-source'] ?? null));
  });
  await new Promise<void>((r) => h2app.listen(0, '127.0.0.1', r));
  inbound = await startInbound('api', 'v1', app.port, 'http', { meshServices: ['api', 'web'] });
  h2inbound = await startInbound('grpcish', 'v1', (h2app.address() as net.AddressInfo).port, 'http', { meshServices: ['grpcish', 'web'] });
  outbound = await startOutbound(
    'web',
    {
      api: api('api', inbound.addresses.inbound!.port),
      grpcish: api('grpcish', h2inbound.addresses.inbound!.port),
    },
    { httpProxy: true },
  );
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await h2inbound.close();
  await closeServer(app.server);
  h2app.close();
});

/** The lines of one metric family in a proxy's exposition: one per series. */
async function series(s: Sidecar, family = 'trellis_http_requests_total'): Promise<string[]> {
  return (await s.metrics.text()).split('\n').filter((l) => l.startsWith(`${family}{`));
}

/** Sends `n` requests on one kept-alive connection, `make(i)` giving each one's path and headers. */
async function many(port: number, n: number, make: (i: number) => { path: string; headers: Record<string, string> }): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < n; i += 50) {
      const batch = Array.from({ length: Math.min(50, n - i) }, (_, k) => make(i + k));
      statuses.push(...(await Promise.all(batch.map((b) => get(port, b.path, b.headers, agent)))).map((r) => r.status));
    }
    return statuses;
  } finally {
    agent.destroy();
  }
}

test('a trellis-source sent by a client is replaced by the calling service on the outbound side', async () => {
  seen.length = 0;
  const r = await get(outbound.addresses.upstreams.api!.port, '/', { 'trellis-source': 'evil' });
  assert.equal(r.status, 200);
  assert.deepEqual(seen, [['web']], "the app sees one trellis-source, the calling sidecar's");
  // Through the HTTP proxy listener too, and in any letter case.
  seen.length = 0;
  const p = await get(outbound.addresses.httpProxy!.port, '/', { host: 'api', 'Trellis-Source': 'api' });
  assert.equal(p.status, 200);
  assert.deepEqual(seen, [['web']]);
  const out = await series(inbound);
  assert.ok(
    out.every((l) => !/source="(evil|api)"/.test(l)),
    out.join('\n'),
  );
});

test('a trellis-source sent over HTTP/2 is replaced too', async () => {
  const session = http2.connect(`http://127.0.0.1:${outbound.addresses.upstreams.grpcish!.port}`);
  try {
    const r = await h2Request(session, { ':method': 'GET', ':path': '/', 'trellis-source': 'evil' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '"web"');
  } finally {
    session.close();
  }
});

test('a forged trellis-source sent over HTTP/2 straight to an inbound listener never reaches an HTTP/1.1 app', async () => {
  // The HTTP/2 → HTTP/1.1 leg (h2/to-http1.ts) used to build the app's head from the
  // request as received, dropping the edits of the layers above: the strip of a claim
  // the inbound side did not accept, among them.
  const session = http2.connect(`http://127.0.0.1:${inbound.addresses.inbound!.port}`);
  session.on('error', () => {});
  try {
    const before = seen.length;
    const r = await h2Request(session, { ':path': '/', 'trellis-source': 'postgres' });
    assert.equal(r.status, 200);
    assert.deepEqual(seen.slice(before), [[]], 'the app got no trellis-source');
  } finally {
    session.destroy();
  }
});

test('1,000 forged sources through the outbound side are all recorded as the calling service', async () => {
  const before = (await series(inbound)).length;
  const statuses = await many(outbound.addresses.upstreams.api!.port, 1000, (i) => ({ path: '/', headers: { 'trellis-source': `evil-${i}` } }));
  assert.deepEqual([...new Set(statuses)], [200]);
  assert.ok((await series(inbound)).length <= Math.max(before, 1), 'no series per forged source on the inbound side');
  assert.equal((await series(outbound)).filter((l) => l.includes('destination="api"')).length, 1);
});

test('1,000 distinct trellis-source values sent straight to an inbound listener add no series', async () => {
  const port = inbound.addresses.inbound!.port;
  await get(port, '/', { 'trellis-source': 'first-unknown' });
  const before = (await series(inbound)).length;
  seen.length = 0;
  const statuses = await many(port, 1000, (i) => ({ path: '/', headers: { 'trellis-source': `caller-${i}` } }));
  assert.deepEqual([...new Set(statuses)], [200]);
  const after = await series(inbound);
  assert.equal(after.length, before, after.slice(0, 5).join('\n'));
  assert.ok(after.some((l) => l.includes('source="unknown"')));
  // A source it does not accept never reaches the app either.
  assert.ok(
    seen.every((s) => s.length === 0),
    'unaccepted identity headers are stripped before the app',
  );
  // Not even a mesh service's name: the caller comes from its certificate, never from a header.
  seen.length = 0;
  const before2 = (await series(inbound)).filter((l) => l.includes('source="web"')).join('\n');
  await get(port, '/', { 'trellis-source': 'web' });
  assert.deepEqual(seen, [[]]);
  assert.equal((await series(inbound)).filter((l) => l.includes('source="web"')).join('\n'), before2, 'a plaintext claim to be web counts as unknown');
});

test('1,000 distinct Host values at the HTTP proxy listener add no series', async () => {
  const port = outbound.addresses.httpProxy!.port;
  await get(port, '/', { host: 'first-nowhere' });
  const before = (await series(outbound)).length;
  const statuses = await many(port, 1000, (i) => ({ path: '/', headers: { host: `nowhere-${i}.example:80` } }));
  assert.deepEqual([...new Set(statuses)], [503]);
  const after = await series(outbound);
  assert.equal(after.length, before, after.slice(0, 5).join('\n'));
  assert.ok(after.some((l) => l.includes('destination="unknown"') && l.includes('status="503"')));
});

test('response statuses outside 100-599 are refused (502) and make no series of their own', async () => {
  const port = outbound.addresses.upstreams.api!.port;
  // RFC 9110 §15: a status is 100-599; the response parser refuses the rest (upstream-protocol).
  for (const s of [600, 799, 999]) assert.equal((await get(port, `/status/${s}`)).status, 502);
  const out = await series(outbound);
  assert.ok(!out.some((l) => /status="[6-9]\d\d"/.test(l)), out.join('\n'));
});
