// A listener holds its connections to proxyLimits.maxConnectionsPerListener: the ones
// over it are closed on arrival and counted, the others are served. (A flood past the
// file limit was tried too: libuv accepts and closes the excess itself, so no EMFILE
// reaches the proxy; its listeners still keep an 'error' handler for what else accept
// may report.)
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { closeServer, get, listenHttp, metricsText, startInbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';

const open: net.Socket[] = [];
after(() => {
  for (const s of open) s.destroy();
});

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    open.push(s);
  });
}

test('connections over maxConnectionsPerListener are closed on arrival and counted; the others are served', { timeout: 20_000 }, async () => {
  const { server: app, port: appPort } = await listenHttp((_req, res) => res.end('ok'));
  let inbound: Sidecar | undefined;
  try {
    inbound = await startInbound('api', 'v1', appPort);
    inbound.apply({ version: 2, service: 'api', inboundProtocol: 'http', upstreams: {}, limits: { maxConnectionsPerListener: 2 } });
    const port = inbound.addresses.inbound!.port;
    const held = [await connect(port), await connect(port)];
    const extra = await connect(port);
    await eventually(() => extra.destroyed || extra.readableEnded, { timeoutMs: 3000, what: 'the third connection to be closed' });
    extra.destroy();
    assert.match(await metricsText(inbound), /trellis_proxy_connections_refused_total\{listener="inbound",reason="max-connections"[^}]*\} 1/);
    // The held ones still serve.
    held[0]!.write('GET / HTTP/1.1\r\nhost: api\r\n\r\n');
    const answer = await new Promise<string>((r) => held[0]!.once('data', (c) => r(c.toString('latin1'))));
    assert.match(answer, /^HTTP\/1\.1 200/);
    for (const s of held) s.destroy();
    // With the held ones gone, new connections are served again.
    await eventually(async () => (await get(port)).status === 200, { timeoutMs: 3000, what: 'a new connection to be served' });
  } finally {
    await inbound?.close();
    await closeServer(app);
  }
});
