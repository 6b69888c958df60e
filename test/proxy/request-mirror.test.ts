// RequestMirror through a sidecar pair: copies reach the mirror backend (bodies that
// came with the head included), their responses are discarded, the share mirrored
// follows `percent` within a tolerance, and a mirror backend that is down, slow or
// failing never fails or holds back the real request.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { Endpoint, RouteEntry, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

interface Copy {
  url: string;
  method: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}

let primary: { server: http.Server; port: number };
let shadow: { server: http.Server; port: number };
let inPrimary: Sidecar;
let inShadow: Sidecar;
let outbound: Sidecar;
let port: number;
let stalled: net.Server;
const hung: net.Socket[] = [];
const copies: Copy[] = [];
/** Emits each request's URL when its head reaches the primary app (its route was matched before). */
const primaryHeads = new EventEmitter();

function deadEndpoint(): Promise<Endpoint> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve({ id: 'dead-0', host: '127.0.0.1', port: p, version: 'v1' }));
    });
  });
}

before(async () => {
  primary = await listenHttp((req, res) => {
    primaryHeads.emit(req.url!);
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => res.end(`primary ${req.method} ${req.url} ${body}`));
  });
  shadow = await listenHttp((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      copies.push({ url: req.url!, method: req.method!, body, headers: req.headers });
      // A failing mirror must not matter to the real request.
      res.statusCode = 500;
      res.end('shadow says no');
    });
  });
  // Accepts connections and never answers: a mirror target that hangs.
  stalled = net.createServer((c) => {
    hung.push(c);
  });
  await new Promise<void>((r) => stalled.listen(0, '127.0.0.1', r));
  inPrimary = await startInbound('api', 'v1', primary.port);
  inShadow = await startInbound('api', 'v2', shadow.port);
  const p: Endpoint = { id: 'api-v1-0', host: '127.0.0.1', port: inPrimary.addresses.inbound!.port, version: 'v1' };
  const s: Endpoint = { id: 'api-v2-0', host: '127.0.0.1', port: inShadow.addresses.inbound!.port, version: 'v2' };
  const hang: Endpoint = { id: 'hang-0', host: '127.0.0.1', port: (stalled.address() as net.AddressInfo).port, version: 'v1' };
  const mirror = (path: string, backend: string, percent: number, extra: RouteEntry['filters'] = []): RouteEntry => ({
    name: path,
    match: { path: { type: 'PathPrefix', value: path } },
    filters: [...extra!, { type: 'RequestMirror', backend, percent }],
    backends: [{ backend: 'api-v1', weight: 1 }],
  });
  const snapshot: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [
      mirror('/all', 'api-v2', 100, [{ type: 'RequestHeaderModifier', edits: { set: [{ name: 'x-edited', value: 'yes' }] } }]),
      mirror('/some', 'api-v2', 30),
      mirror('/to-dead', 'dead', 100),
      mirror('/to-hang', 'hang', 100),
      mirror('/to-nowhere', 'no-such-backend', 100),
    ],
    backends: {
      'api-v1': { name: 'api-v1', endpoints: [p] },
      'api-v2': { name: 'api-v2', endpoints: [s] },
      dead: { name: 'dead', endpoints: [await deadEndpoint()] },
      hang: { name: 'hang', endpoints: [hang] },
    },
  };
  outbound = await startOutbound('web', { api: snapshot });
  port = outbound.addresses.upstreams.api!.port;
});

after(async () => {
  await outbound.close();
  await inPrimary.close();
  await inShadow.close();
  await closeServer(primary.server);
  await closeServer(shadow.server);
  for (const c of hung) c.destroy();
  await closeServer(stalled);
});

let barriers = 0;

/**
 * The copies that arrived, once those of the requests sent so far have: mirrors are
 * fire-and-forget, so a mirrored request (100%) is sent after them and its copy awaited
 * as a barrier. A copy is sent when its request's route matches, before the request is
 * forwarded, so every earlier copy was on its way before the barrier request was made.
 * The barrier's own copy is left out.
 */
async function settled(): Promise<Copy[]> {
  const url = `/all/barrier-${++barriers}`;
  assert.equal((await get(port, url)).status, 200);
  await eventually(() => copies.some((c) => c.url === url), { what: "the barrier request's copy" });
  return copies.filter((c) => c.url !== url && !c.url.startsWith('/all/barrier-'));
}

function post(path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('a mirrored request reaches the mirror backend with its edits and body; the client gets the primary answer', async () => {
  copies.length = 0;
  const res = await get(port, '/all/x?q=1', { 'x-user': 'ann' });
  assert.equal(res.status, 200);
  assert.equal(res.body, 'primary GET /all/x?q=1 ');
  const posted = await post('/all/items', '{"n":1}');
  assert.equal(posted.body, 'primary POST /all/items {"n":1}');
  await eventually(() => copies.length >= 2, { what: 'the two copies' });
  assert.equal((await settled()).length, 2);
  const [g, p] = [copies.find((c) => c.method === 'GET')!, copies.find((c) => c.method === 'POST')!];
  assert.equal(g.url, '/all/x?q=1');
  assert.equal(g.headers['x-user'], 'ann');
  assert.equal(g.headers['x-edited'], 'yes', 'the copy carries the request header edits');
  // The caller goes to a peer sidecar in its certificate, not a header: the copy (to a plain app here) carries none.
  assert.equal(g.headers['trellis-source'], undefined);
  assert.equal(p.body, '{"n":1}', 'a body that came with the head is mirrored');
});

test('a request whose body is still streaming is not mirrored, and is not held back', async () => {
  copies.length = 0;
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/all/stream', method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (r) => {
      let text = '';
      r.on('data', (c) => {
        text += c;
      });
      r.on('end', () => resolve({ status: r.statusCode!, body: text }));
    });
    req.on('error', reject);
    // The body follows once the head has reached the app: the route was matched (and the
    // mirror decided) with none of the body in hand, and the head was not held back for it.
    once(primaryHeads, '/all/stream').then(() => {
      req.write('part1-');
      req.end('part2');
    }, reject);
    req.flushHeaders();
  });
  assert.equal(res.body, 'primary POST /all/stream part1-part2');
  assert.deepEqual(await settled(), []);
});

test('percent: about 30% of requests are mirrored', async () => {
  copies.length = 0;
  const N = 400;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  try {
    for (let i = 0; i < N; i += 8) {
      const batch = await Promise.all(Array.from({ length: 8 }, () => get(port, '/some', {}, agent)));
      for (const r of batch) assert.equal(r.status, 200);
    }
  } finally {
    agent.destroy();
  }
  const n = (await settled()).filter((c) => c.url === '/some').length;
  // 120 expected; sd ≈ 9, so ±40 is over 4 sd.
  assert.ok(Math.abs(n - 120) <= 40, `mirrored ${n} of ${N}`);
});

test('a mirror backend that refuses, hangs or does not exist never fails the real request', async () => {
  for (const path of ['/to-dead', '/to-hang', '/to-nowhere']) {
    for (let i = 0; i < 5; i++) {
      const res = await get(port, path);
      assert.equal(res.status, 200, path);
      assert.equal(res.body, `primary GET ${path} `);
    }
  }
});
