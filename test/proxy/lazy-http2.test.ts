// A sidecar loads node:http2 (about 3 MB of its memory) only when HTTP/2 arrives: a
// pair serving HTTP/1.1 has not loaded it, and the first h2c request through the same
// pair loads it and is answered. Runs in a fresh process, since this test runner's own
// process has loaded http2 long before.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { runModuleScript } from '../helpers/module-child.js';

const helpers = new URL('../helpers/proxy-pair.js', import.meta.url).href;

// The child: an app speaking HTTP/1.1 and h2c, a sidecar pair in front, one HTTP/1.1 request, then
// one h2c request; it prints whether http2 was loaded before the h2c one, and both answers.
const child = `
import http from 'node:http';
import net from 'node:net';
import { get, startInbound, startOutbound } from ${JSON.stringify(helpers)};
const loaded = () => process.moduleLoadList.some((m) => m === 'NativeModule http2');
// The app answers HTTP/1.1, and h2c too (loading http2 itself only when h2c arrives).
const handler = (req, res) => res.end('app ' + req.url);
const h1app = http.createServer(handler);
let h2app;
const app = net.createServer((socket) => socket.once('data', async (first) => {
  socket.pause();
  socket.unshift(first);
  if (first.toString('latin1', 0, 4) !== 'PRI ') {
    h1app.emit('connection', socket);
    return socket.resume();
  }
  h2app ??= (await import('node:http2')).createServer(handler);
  h2app.emit('connection', socket);
}));
await new Promise((r) => app.listen(0, '127.0.0.1', r));
const inbound = await startInbound('api', 'v1', app.address().port);
const ep = { id: 'api-0', host: '127.0.0.1', port: inbound.addresses.inbound.port, version: 'v1' };
const outbound = await startOutbound('web', { api: { service: 'api', protocol: 'http', routes: [], backends: { api: { name: 'api', endpoints: [ep] } } } });
const port = outbound.addresses.upstreams.api.port;
const h1 = await get(port, '/one');
const before = loaded();
const http2 = await import('node:http2');
const session = http2.connect('http://127.0.0.1:' + port);
const h2 = await new Promise((resolve, reject) => {
  const s = session.request({ ':path': '/two' });
  let body = '';
  s.setEncoding('utf8');
  s.on('response', (h) => { body += h[':status'] + ' '; });
  s.on('data', (c) => { body += c; });
  s.on('end', () => resolve(body));
  s.on('error', reject);
  s.end();
});
session.close();
console.log(JSON.stringify({ h1: h1.status + ' ' + h1.body, before, h2 }));
await outbound.close();
await inbound.close();
app.close();
`;

test('node:http2 is loaded on the first HTTP/2 request, not before', async () => {
  const r = await runModuleScript<{ h1: string; before: boolean; h2: string }>(child, [], fileURLToPath(new URL('.', import.meta.url)), 20_000);
  assert.equal(r.h1, '200 app /one');
  assert.equal(r.before, false, 'an HTTP/1.1-only sidecar pair has not loaded node:http2');
  assert.equal(r.h2, '200 app /two', 'the h2c request is answered once HTTP/2 is loaded');
});
