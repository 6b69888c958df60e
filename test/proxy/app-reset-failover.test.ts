// An app that dies under a request (reset before any response byte): for an idempotent
// request without a body its sidecar answers app-unavailable, and the caller's sidecar
// sends the request to another instance, so the client never sees it (HTTP/1.1 and
// HTTP/2 alike). A POST is not sent twice: its client gets 502 upstream-reset.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { h2Request } from '../helpers/h2.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const servers: http.Server[] = [];
const sidecars: Sidecar[] = [];
let port: number;
let crashes = 0;

before(async () => {
  // Every request kills its connection without a word, as a process killed mid-request does.
  const dying = await listenHttp((req) => {
    crashes++;
    req.socket.destroy();
  });
  const good = await listenHttp((req, res) => {
    req.resume();
    req.on('end', () => res.end('good'));
  });
  servers.push(dying.server, good.server);
  const inDying = await startInbound('api', 'v1', dying.port);
  const inGood = await startInbound('api', 'v1', good.port);
  sidecars.push(inDying, inGood);
  const ep = (s: Sidecar, id: string) => ({ id, host: '127.0.0.1', port: s.addresses.inbound!.port, version: 'v1' });
  const out = await startOutbound('web', {
    api: { service: 'api', protocol: 'http', routes: [], backends: { api: { name: 'api', endpoints: [ep(inDying, 'api-dying'), ep(inGood, 'api-good')] } } },
  });
  sidecars.push(out);
  port = out.addresses.upstreams.api!.port;
});

after(async () => {
  for (const s of sidecars) await s.close();
  for (const s of servers) await closeServer(s);
});

test('a POST whose app died under it is not sent again', async () => {
  const before = crashes;
  const seen: { status: number; error: string }[] = [];
  for (let i = 0; i < 20 && crashes === before; i++) {
    const r = await new Promise<{ status: number; error: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: `/p/${i}`, method: 'POST', headers: { 'content-length': '2' } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, error: String(res.headers['trellis-error'] ?? '') }));
      });
      req.on('error', reject);
      req.end('hi');
    });
    seen.push(r);
  }
  assert.ok(crashes > before, 'a POST reached the dying app');
  assert.deepEqual(seen.at(-1), { status: 502, error: 'upstream-reset' });
});

test('a GET whose app died under it is answered by another instance', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await get(port, `/g/${i}`)).status);
  assert.deepEqual(statuses, Array(20).fill(200));
  assert.ok(crashes > 0, 'some requests went to the dying app first');
  // (It is then avoided for 2 s like an endpoint that refused a connection.)
});

test('the same over HTTP/2: a GET whose app reset its stream is answered by another instance', async () => {
  let resets = 0;
  const dying = http2.createServer();
  dying.on('stream', (stream) => {
    resets++;
    stream.on('error', () => {}); // the reset it makes itself
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
  const good = http2.createServer();
  good.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('good');
  });
  const listen = async (s: http2.Http2Server): Promise<number> => {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as net.AddressInfo).port;
  };
  const inDying = await startInbound('h2api', 'v1', await listen(dying));
  const inGood = await startInbound('h2api', 'v1', await listen(good));
  const ep = (s: Sidecar, id: string) => ({ id, host: '127.0.0.1', port: s.addresses.inbound!.port, version: 'v1' });
  const out = await startOutbound('web', {
    h2api: { service: 'h2api', protocol: 'http', routes: [], backends: { h2api: { name: 'h2api', endpoints: [ep(inDying, 'h2-dying'), ep(inGood, 'h2-good')] } } },
  });
  const session = http2.connect(`http://127.0.0.1:${out.addresses.upstreams.h2api!.port}`);
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await h2Request(session, { ':path': `/h2/${i}` })).status);
    assert.deepEqual(statuses, Array(10).fill(200));
    assert.ok(resets > 0, 'some requests went to the dying app first');
  } finally {
    session.close();
    for (const s of [out, inDying, inGood]) await s.close();
    for (const s of [dying, good]) await new Promise<void>((r) => s.close(() => r()));
  }
});
