// Every attempt a sidecar starts on an endpoint ends exactly once, however it ends:
// answered, a 500 or 429, retried, reset, refused, timed out, or abandoned by a client
// that went away. After many mixed requests, every endpoint's pending count is back to
// 0 (a leak would make a load-aware balancer shun an endpoint forever). The same for
// TCP connections, pending while open.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { Endpoint, RetryConfig, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

const servers: net.Server[] = [];
const sidecars: Sidecar[] = [];
const hanging = new Set<net.Socket>();

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

let outbound: Sidecar;
let httpPort: number;
let tcpPort: number;

before(async () => {
  // One app answers by path: /ok 200, /err 500, /busy 429, /slow after 30 ms.
  const { server, port } = await listenHttp((req, res) => {
    const path = req.url!.split('?')[0]!;
    const status = path.startsWith('/err') ? 500 : path.startsWith('/busy') ? 429 : 200;
    const delay = path.startsWith('/slow') ? 30 : 0; // a slow answer is one of the outcomes under test
    setTimeout(() => {
      res.statusCode = status;
      res.end('x');
    }, delay);
  });
  servers.push(server);
  const inbound = await startInbound('api', 'v1', port);
  sidecars.push(inbound);
  // An endpoint that resets every connection once it has read the request.
  const resetter = net.createServer((s) => s.once('data', () => s.destroy()));
  // An endpoint that accepts and never answers.
  const black = net.createServer((s) => {
    hanging.add(s);
    s.on('close', () => hanging.delete(s));
  });
  for (const s of [resetter, black]) await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(resetter, black);
  const at = (s: net.Server) => (s.address() as net.AddressInfo).port;
  const endpoints: Endpoint[] = [
    { id: 'good', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' },
    { id: 'reset', host: '127.0.0.1', port: at(resetter), version: 'v1' },
    { id: 'black', host: '127.0.0.1', port: at(black), version: 'v1' },
    { id: 'refused', host: '127.0.0.1', port: await freePort(), version: 'v1' },
  ];
  const retry: RetryConfig = { codes: [500, 429], attempts: 2, backoffMs: 1, nonIdempotent: false, maxBodyBytes: 65536 };
  const api: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [
      {
        name: 'default/api/retried',
        match: { path: { type: 'PathPrefix', value: '/r' } },
        backends: [{ backend: 'api', weight: 1 }],
        retry,
        timeouts: { backendRequestMs: 150 },
      },
      {
        name: 'default/api/plain',
        match: { path: { type: 'PathPrefix', value: '/' } },
        backends: [{ backend: 'api', weight: 1 }],
        timeouts: { requestMs: 300 },
      },
    ],
    backends: { api: { name: 'api', endpoints } },
    // Outlier detection off: every endpoint keeps taking its share of the mixed outcomes.
    balancing: { policy: '', balancer: 'PeakEWMA', panicThreshold: 50 },
  };
  const tcpEndpoints: Endpoint[] = [
    { id: 'tcp-echo', host: '127.0.0.1', port: 0, version: 'v1' },
    { id: 'tcp-refused', host: '127.0.0.1', port: await freePort(), version: 'v1' },
  ];
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  servers.push(echo);
  tcpEndpoints[0] = { ...tcpEndpoints[0]!, port: at(echo) };
  const db: UpstreamSnapshot = { service: 'db', protocol: 'tcp', routes: [], backends: { db: { name: 'db', endpoints: tcpEndpoints } } };
  outbound = await startOutbound('web', { api, db });
  sidecars.push(outbound);
  httpPort = outbound.addresses.upstreams.api!.port;
  tcpPort = outbound.addresses.upstreams.db!.port;
});

after(async () => {
  for (const s of sidecars) await s.close();
  for (const s of hanging) s.destroy();
  for (const s of servers) await closeServer(s);
});

/** Sends one request; `abortMs` > 0 makes the client give up after that long. Resolves with the status (0: no answer). */
function send(path: string, abortMs = 0): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: httpPort, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    // A client that gives up mid-request is one of the outcomes under test.
    if (abortMs > 0)
      setTimeout(() => {
        req.destroy();
        resolve(0);
      }, abortMs);
    req.end();
  });
}

async function pendingSettles(s: Sidecar, service: string): Promise<{ id: string; pending: number | undefined }[]> {
  // Closes travel through sockets: wait until they landed (or the bound passes, and the
  // caller's assertion shows what leaked).
  const view = () => s.balancing.view().filter((v) => v.service === service);
  await eventually(() => !view().some((v) => v.pending !== 0)).catch(() => {});
  return view().map((v) => ({ id: v.id, pending: v.pending }));
}

test('after many mixed outcomes (ok, 500, 429, retries, resets, refusals, timeouts, client aborts) no pending count leaks', async () => {
  const paths = ['/ok', '/err', '/busy', '/slow', '/r/ok', '/r/err', '/r/busy', '/r/slow'];
  const statuses = new Map<number, number>();
  for (let round = 0; round < 6; round++) {
    const batch: Promise<number>[] = [];
    for (let i = 0; i < paths.length; i++) batch.push(send(paths[i]!));
    // Clients that leave mid-request: before the slow answer, and while an attempt hangs.
    batch.push(send('/slow', 5), send('/r/slow', 10), send('/ok', 1));
    for (const st of await Promise.all(batch)) statuses.set(st, (statuses.get(st) ?? 0) + 1);
  }
  // The mix really happened: answers, failures the client saw, and abandoned requests.
  assert.ok((statuses.get(200) ?? 0) > 0, 'some requests succeeded');
  assert.ok(
    [...statuses.keys()].some((s) => s >= 500),
    'some failed',
  );
  assert.ok((statuses.get(0) ?? 0) > 0, 'some were abandoned by their client');
  const view = await pendingSettles(outbound, 'api');
  assert.deepEqual(view, [
    { id: 'good', pending: 0 },
    { id: 'reset', pending: 0 },
    { id: 'black', pending: 0 },
    { id: 'refused', pending: 0 },
  ]);
});

test('a TCP connection is pending with its endpoint while open, and not after it closes', async () => {
  const socks: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect(tcpPort, '127.0.0.1');
    socks.push(s);
    // An echo proves the connection reached the live endpoint.
    await new Promise<void>((r) => {
      s.once('data', () => r());
      s.write('ping');
    });
  }
  const open = outbound.balancing.view().filter((v) => v.service === 'db');
  assert.equal(open.find((v) => v.id === 'tcp-echo')?.pending, 4);
  for (const s of socks) s.destroy();
  const view = await pendingSettles(outbound, 'db');
  assert.deepEqual(view, [
    { id: 'tcp-echo', pending: 0 },
    { id: 'tcp-refused', pending: 0 },
  ]);
});
