// A client that sends GOAWAY while its request is in flight still gets the response
// (RFC 9113 §6.8: streams already open complete), through an outbound and an inbound
// sidecar. The last stream id of a client's GOAWAY names the *server's* streams it may
// act on (pushes, even ids: 0 when there are none). A client that names its own stream
// (odd) there is refused by nghttp2 inside node:http2 ("GOAWAY: invalid last_stream_id",
// a connection error), and node ends the session with GOAWAY(INTERNAL_ERROR) before any
// Trellis code runs: node's own HTTP/2 server does the same, which the last test pins down.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { F, frame, goaway, PREFACE, RawH2, request, T } from '../helpers/h2-frames.js';
import { closeServer, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const NO_ERROR = 0;
const INTERNAL_ERROR = 2;

let app: http.Server;
let inbound: Sidecar;
let outbound: Sidecar;
/** Requests the app holds until a test releases them. */
const held: http.ServerResponse[] = [];

before(async () => {
  app = http.createServer((_req, res) => {
    held.push(res);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  inbound = await startInbound('app', 'default', (app.address() as net.AddressInfo).port, 'http1');
  outbound = await startOutbound('web', {
    app: {
      service: 'app',
      protocol: 'http',
      routes: [],
      backends: { app: { name: 'app', endpoints: [{ id: 'app-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'default' }] } },
    },
  });
});

after(async () => {
  for (const res of held.splice(0)) res.destroy();
  await outbound?.close();
  await inbound?.close();
  if (app) await closeServer(app);
});

for (const listener of ['outbound', 'inbound'] as const) {
  test(`a client's GOAWAY (NO_ERROR, last stream 0) while its request is in flight: the ${listener} sidecar still sends the response, whole`, async () => {
    const c = new RawH2(listener === 'outbound' ? outbound.addresses.upstreams.app!.port : inbound.addresses.inbound!.port);
    try {
      c.write(PREFACE, frame(T.SETTINGS, 0, 0), request(1, '/in-flight', { authority: 'app' }));
      await c.until('the app has the request', () => held.length === 1);
      c.write(goaway(0, NO_ERROR));
      // The sidecar answers the GOAWAY with its own (graceful: stream 1 is the last it takes) and keeps stream 1 open.
      await c.until("the sidecar's GOAWAY", (x) => x.goawayCode() !== undefined);
      assert.equal(c.goawayCode(), NO_ERROR);
      held.shift()?.end('answered after the GOAWAY');
      await c.until('the response to stream 1', (x) => x.ended().has(1));
      assert.ok(c.answered().has(1));
      const body = Buffer.concat(c.frames.filter((f) => f.type === T.DATA && f.stream === 1).map((f) => f.payload)).toString();
      assert.equal(body, 'answered after the GOAWAY');
      assert.equal(c.resets().size, 0);
    } finally {
      c.close();
    }
  });
}

test("a GOAWAY whose last stream id is the client's own (odd) is a protocol error to nghttp2: a Trellis listener answers exactly as node's own server does", async () => {
  const plain = http2.createServer();
  plain.on('session', (s) => s.on('error', () => {}));
  plain.on('stream', (s) => s.on('error', () => {}));
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  const answer = async (port: number): Promise<{ goaway: number | undefined; answered: number[]; closed: boolean }> => {
    const c = new RawH2(port);
    try {
      c.write(PREFACE, frame(T.SETTINGS, 0, 0), request(1, '/odd-last-stream', { authority: 'app' }));
      await c.until('the SETTINGS ack', (x) => x.frames.some((f) => f.type === T.SETTINGS && (f.flags & F.ACK) !== 0));
      c.write(goaway(1, NO_ERROR));
      await c.until('the connection closed', (x) => x.closed);
      return { goaway: c.goawayCode(), answered: [...c.answered()], closed: c.closed };
    } finally {
      c.close();
    }
  };
  try {
    const node = await answer((plain.address() as net.AddressInfo).port);
    const trellis = await answer(outbound.addresses.upstreams.app!.port);
    assert.deepEqual(node, { goaway: INTERNAL_ERROR, answered: [], closed: true }, "node's own server");
    assert.deepEqual(trellis, node, 'the sidecar, as node');
  } finally {
    for (const res of held.splice(0)) res.destroy();
    await new Promise<void>((r) => plain.close(() => r()));
  }
});
