// Handshakes stay cheap when a pool opens more connections to a peer sidecar: after the
// first full handshake, every new mutual TLS connection to the same peer resumes the
// session (a ticket from the inbound proxy), so a burst that needs more connections
// pays no certificate chain verification or signature on its request path.
import assert from 'node:assert/strict';
import http from 'node:http';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

let app: http.Server;
let api: Sidecar;
let web: Sidecar;
/** Whether each outbound TLS connection of this process resumed its session, in order. */
const resumed: boolean[] = [];
const connect = tls.connect;
const held: http.ServerResponse[] = [];

before(async () => {
  // The sidecars run in this process: every TLS connection they open goes through here.
  (tls as { connect: typeof tls.connect }).connect = ((...args: Parameters<typeof tls.connect>) => {
    const s = connect(...args);
    s.once('secureConnect', () => resumed.push(s.isSessionReused()));
    return s;
  }) as typeof tls.connect;
  // The app holds every answer until the test lets them go, so requests overlap.
  const listening = await listenHttp((_req, res) => held.push(res));
  app = listening.server;
  const appPort = listening.port;
  api = await startInbound('api', 'v1', appPort);
  const eps = [{ id: 'api-0', host: '127.0.0.1', port: api.addresses.inbound!.port, version: 'v1' }];
  web = await startOutbound('web', { api: { service: 'api', protocol: 'http', routes: [], backends: { api: { name: 'api', endpoints: eps } } } });
});

after(async () => {
  (tls as { connect: typeof tls.connect }).connect = connect;
  for (const r of held) r.end();
  await web?.close();
  await api?.close();
  await closeServer(app);
});

function answerAll(): void {
  for (const r of held.splice(0)) r.end('ok');
}

test('new connections to a peer sidecar resume the TLS session of the first', async () => {
  const port = web.addresses.upstreams.api!.port;
  const agent = new http.Agent({ keepAlive: false });
  const first = get(port, '/', {}, agent);
  await eventually(() => held.length === 1, { what: 'the first request at the app' });
  answerAll();
  assert.equal((await first).status, 200);
  // Four requests at once: the pool needs more connections than the one it has.
  const burst = Array.from({ length: 4 }, () => get(port, '/', {}, agent));
  await eventually(() => held.length === 4, { what: 'the burst at the app' });
  answerAll();
  for (const r of await Promise.all(burst)) assert.equal(r.status, 200);
  assert.ok(resumed.length >= 4, `connections opened: ${resumed.length}`);
  assert.equal(resumed[0], false, 'the first handshake is a full one');
  assert.deepEqual(
    resumed.slice(1).filter((r) => !r),
    [],
    `every later connection resumed: ${JSON.stringify(resumed)}`,
  );
});
