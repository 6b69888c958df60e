// WebSocket through the mesh with the `ws` package on both ends: the upgrade crosses
// the outbound and inbound sidecars, then messages flow both ways as bytes the proxies
// never parse (text, binary, messages larger than a socket read, server pushes), and
// the close handshake's code and reason arrive intact.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: http.Server;
let wss: WebSocketServer;
let inbound: Sidecar;
let outbound: Sidecar;
let url: string;
/** Paths the app saw upgrades for, to show the request head was forwarded as sent. */
const upgradedPaths: string[] = [];

before(async () => {
  app = http.createServer((_req, res) => res.end('plain'));
  wss = new WebSocketServer({ server: app });
  wss.on('connection', (ws, req) => {
    upgradedPaths.push(req.url ?? '');
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'push 3') {
        for (let i = 1; i <= 3; i++) ws.send(`push ${i}`);
        return;
      }
      if (!isBinary && data.toString() === 'bye') return ws.close(4001, 'done here');
      ws.send(data, { binary: isBinary });
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  inbound = await startInbound('chat', 'v1', (app.address() as net.AddressInfo).port);
  outbound = await startOutbound('web', {
    chat: {
      service: 'chat',
      protocol: 'http',
      routes: [],
      backends: { chat: { name: 'chat', endpoints: [{ id: 'chat-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
  url = `ws://127.0.0.1:${outbound.addresses.upstreams.chat!.port}`;
});

after(async () => {
  for (const c of wss.clients) c.terminate();
  wss.close();
  app.closeAllConnections();
  await new Promise<void>((r) => app.close(() => r()));
  await outbound.close();
  await inbound.close();
});

function open(path: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}${path}`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** The next `n` messages, as [data, isBinary]. */
function next(ws: WebSocket, n = 1): Promise<[Buffer, boolean][]> {
  return new Promise((resolve, reject) => {
    const got: [Buffer, boolean][] = [];
    const onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
      got.push([Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), isBinary]);
      if (got.length === n) {
        ws.off('message', onMessage);
        resolve(got);
      }
    };
    ws.on('message', onMessage);
    ws.once('close', () => reject(new Error(`closed after ${got.length} of ${n} messages`)));
  });
}

test('text and binary messages echo through both sidecars', async () => {
  const ws = await open('/room/1?user=ann');
  try {
    const echoed = next(ws, 2);
    ws.send('hello through the mesh');
    ws.send(Buffer.from([0, 1, 2, 255]), { binary: true });
    const [[text, textIsBinary], [bin, binIsBinary]] = await echoed;
    assert.equal(text.toString(), 'hello through the mesh');
    assert.equal(textIsBinary, false);
    assert.deepEqual([...bin], [0, 1, 2, 255]);
    assert.equal(binIsBinary, true);
    assert.ok(upgradedPaths.includes('/room/1?user=ann'), `the app saw ${upgradedPaths.join(', ')}`);
  } finally {
    ws.terminate();
  }
});

test('large messages in both directions arrive whole, in order', async () => {
  const ws = await open('/big');
  try {
    const sizes = [64 * 1024, 1024 * 1024, 3];
    const payloads = sizes.map((n, i) => Buffer.alloc(n, i + 1));
    const echoed = next(ws, payloads.length);
    for (const p of payloads) ws.send(p, { binary: true });
    const got = await echoed;
    assert.deepEqual(
      got.map(([d]) => d.length),
      sizes,
    );
    for (const [i, [d]] of got.entries()) assert.ok(d.equals(payloads[i]!), `message ${i} intact`);
  } finally {
    ws.terminate();
  }
});

test('the server can push unprompted, and its close code and reason reach the client', async () => {
  const ws = await open('/push');
  const pushed = next(ws, 3);
  ws.send('push 3');
  assert.deepEqual(
    (await pushed).map(([d]) => d.toString()),
    ['push 1', 'push 2', 'push 3'],
  );
  const closed = new Promise<[number, string]>((r) => ws.once('close', (code, reason) => r([code, reason.toString()])));
  ws.send('bye');
  assert.deepEqual(await closed, [4001, 'done here']);
});

test('many connections at once each keep their own stream', async () => {
  const sockets = await Promise.all(Array.from({ length: 20 }, (_, i) => open(`/many/${i}`)));
  try {
    const replies = await Promise.all(
      sockets.map(async (ws, i) => {
        const r = next(ws, 1);
        ws.send(`from ${i}`);
        return (await r)[0]![0].toString();
      }),
    );
    assert.deepEqual(
      replies,
      sockets.map((_, i) => `from ${i}`),
    );
  } finally {
    for (const ws of sockets) ws.terminate();
  }
});
