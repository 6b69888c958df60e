// A client's Connection header may name hop-by-hop headers for the proxy to drop, but
// not the framing: `Connection: content-length` once made the outbound sidecar forward
// the body without its Content-Length, so the inbound side read the body as a second
// request that no route had seen (found by the fuzzer, issue 10).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, rawExchange, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let inbound: Sidecar;
let outbound: Sidecar;
const seen: string[] = [];

before(async () => {
  app = await listenHttp((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${Buffer.concat(chunks).length}`);
      res.end('ok');
    });
  });
  inbound = await startInbound('echo', 'v1', app.port);
  outbound = await startOutbound('web', {
    echo: {
      service: 'echo',
      protocol: 'http',
      routes: [],
      backends: { echo: { name: 'echo', endpoints: [{ id: 'echo-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
});

after(async () => {
  await outbound?.close();
  await inbound?.close();
  if (app) await closeServer(app.server);
});

test('a body framed by a header that Connection names reaches the app as that one request', async () => {
  const smuggled = 'GET /admin HTTP/1.1\r\nHost: echo\r\n\r\n';
  const chunkedBody = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
  for (const [framing, body] of [
    [`Content-Length: ${smuggled.length}`, smuggled],
    ['Transfer-Encoding: chunked', chunkedBody],
  ] as const) {
    seen.length = 0;
    const name = framing.slice(0, framing.indexOf(':')).toLowerCase();
    const reply = await rawExchange(
      outbound.addresses.upstreams.echo!.port,
      `POST /api HTTP/1.1\r\nHost: echo\r\nConnection: close, ${name}\r\n${framing}\r\n\r\n${body}`,
    );
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.deepEqual(seen, [`POST /api ${smuggled.length}`], `the app saw one request, with its body (${framing})`);
  }
});
