// A header field repeated in an HTTP/2 request or response reaches the other side as
// the same fields, in the same order, not merged into one: HTTP/2 to an HTTP/2 app,
// HTTP/2 to an HTTP/1.1 app, and an HTTP/1.1 app's response to an HTTP/2 client, through
// an outbound and an inbound sidecar. Cookies leaving HTTP/2 are joined with `; ` (RFC
// 9113 §8.2.3); set-cookie fields are never joined.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Endpoint, UpstreamSnapshot } from '../../src/api/protocol.js';
import { SINGLE_VALUE } from '../../src/proxy/h2/header-fields.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, startInbound, startOutbound } from '../helpers/proxy-pair.js';

/** The raw name/value list as pairs, without pseudo-headers and the headers a hop adds. */
const pairs = (raw: readonly string[], keep: (name: string) => boolean): [string, string][] => {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (keep(raw[i]!.toLowerCase())) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return out;
};
const ours = (name: string): boolean => name.startsWith('x-') || name === 'cookie' || name === 'set-cookie';

let h2App: http2.Http2Server;
let h1App: http.Server;
const seen: { app: string; raw: readonly string[] }[] = [];
let inH2: Sidecar;
let inH1: Sidecar;
let outbound: Sidecar;

const RESPONSE_FIELDS = { 'x-res': ['r1', 'r2'], 'set-cookie': ['a=1; Path=/', 'b=2; Path=/'], 'x-one': 'single' };

before(async () => {
  h2App = http2.createServer();
  h2App.on('stream', (stream, _headers, _flags, raw?: readonly string[]) => {
    seen.push({ app: 'h2', raw: raw ?? [] });
    stream.respond({ ':status': 200, ...RESPONSE_FIELDS }, { endStream: true });
  });
  await new Promise<void>((r) => h2App.listen(0, '127.0.0.1', r));
  h1App = http.createServer((req, res) => {
    seen.push({ app: 'h1', raw: req.rawHeaders });
    for (const [k, v] of Object.entries(RESPONSE_FIELDS)) res.setHeader(k, v);
    res.end();
  });
  await new Promise<void>((r) => h1App.listen(0, '127.0.0.1', r));
  inH2 = await startInbound('h2app', 'default', (h2App.address() as net.AddressInfo).port, 'http2');
  inH1 = await startInbound('h1app', 'default', (h1App.address() as net.AddressInfo).port, 'http1');
  const upstream = (service: string, inbound: Sidecar): UpstreamSnapshot => {
    const ep: Endpoint = { id: `${service}-0`, host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'default' };
    return {
      service,
      protocol: 'http',
      routes: [
        {
          name: `default/${service}/edited`,
          match: { path: { type: 'PathPrefix', value: '/edited' } },
          filters: [{ type: 'ResponseHeaderModifier', edits: { add: [{ name: 'x-res', value: 'r3' }] } }],
          backends: [{ backend: service, weight: 1 }],
        },
        { name: `default/${service}/plain`, match: { path: { type: 'PathPrefix', value: '/' } }, backends: [{ backend: service, weight: 1 }] },
      ],
      backends: { [service]: { name: service, endpoints: [ep] } },
    };
  };
  outbound = await startOutbound('web', { h2app: upstream('h2app', inH2), h1app: upstream('h1app', inH1) });
});

after(async () => {
  await outbound?.close();
  await inH1?.close();
  await inH2?.close();
  if (h1App) await closeServer(h1App);
  if (h2App) await new Promise<void>((r) => h2App.close(() => r()));
});

/** One HTTP/2 request through the outbound listener of `service`; the response's raw fields. */
async function h2Request(service: string, path: string): Promise<{ status: number; raw: readonly string[] }> {
  const session = http2.connect(`http://127.0.0.1:${outbound.addresses.upstreams[service]!.port}`);
  session.on('error', () => {});
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request(
        { ':method': 'GET', ':path': path, ':authority': service, 'x-foo': ['a', 'b'], 'x-bar': 'c', cookie: ['c1=1', 'c2=2'] },
        { endStream: true },
      );
      req.on('response', (h, _flags, raw?: readonly string[]) => {
        req.resume();
        req.on('end', () => resolve({ status: Number(h[':status']), raw: raw ?? [] }));
      });
      req.on('error', reject);
    });
  } finally {
    session.destroy();
  }
}

for (const [app, service] of [
  ['an HTTP/2 app', 'h2app'],
  ['an HTTP/1.1 app', 'h1app'],
] as const) {
  describe(`HTTP/2 client, ${app}`, () => {
    test('the app gets each repeated request field as sent, in order, and the cookies as one field', async () => {
      seen.length = 0;
      const r = await h2Request(service, '/plain');
      assert.equal(r.status, 200);
      assert.equal(seen.length, 1);
      assert.deepEqual(pairs(seen[0]!.raw, ours), [
        ['x-foo', 'a'],
        ['x-foo', 'b'],
        ['x-bar', 'c'],
        ['cookie', 'c1=1; c2=2'],
      ]);
    });

    test("the client gets each repeated response field as the app sent it, set-cookie included, and a filter's edit after them", async () => {
      const plain = await h2Request(service, '/plain');
      assert.deepEqual(pairs(plain.raw, ours), [
        ['x-res', 'r1'],
        ['x-res', 'r2'],
        ['set-cookie', 'a=1; Path=/'],
        ['set-cookie', 'b=2; Path=/'],
        ['x-one', 'single'],
      ]);
      const edited = await h2Request(service, '/edited');
      assert.deepEqual(
        pairs(edited.raw, (n) => n === 'x-res'),
        [
          ['x-res', 'r1'],
          ['x-res', 'r2'],
          ['x-res', 'r3'],
        ],
      );
    });
  });
}

test('the names the proxy combines instead of repeating are exactly those node:http2 refuses to send twice', async () => {
  const server = http2.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  session.on('error', () => {});
  try {
    await new Promise<void>((r) => session.once('connect', () => r()));
    const refused: string[] = [];
    for (const [key, name] of Object.entries(http2.constants)) {
      if (!key.startsWith('HTTP2_HEADER_') || typeof name !== 'string' || name.startsWith(':')) continue;
      try {
        session.request({ ':path': '/', [name]: ['a', 'b'] }).close();
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_HTTP2_HEADER_SINGLE_VALUE') refused.push(name);
      }
    }
    assert.deepEqual(refused.sort(), [...SINGLE_VALUE].sort());
  } finally {
    session.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
