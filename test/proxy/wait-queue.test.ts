// The bounded queue in front of a backend with no endpoint at all: requests wait for the
// snapshot that brings one and then go through; one more than the queue holds fails at
// once; one that waits too long fails with 503 no-endpoints.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Endpoint, Snapshot, UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { QUEUE_CAPACITY } from '../../src/proxy/resilience/wait-queue.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

let app: http.Server;
let inbound: Sidecar;
let outbound: Sidecar;
let live: Endpoint;
const api = (endpoints: Endpoint[]): UpstreamSnapshot => ({ service: 'api', protocol: 'http', routes: [], backends: { api: { name: 'api', endpoints } } });
const snapshot = (version: number, endpoints: Endpoint[]): Snapshot => ({
  version,
  service: 'web',
  inboundProtocol: 'http',
  upstreams: { api: api(endpoints) },
});

before(async () => {
  const a = await listenHttp((_req, res) => res.end('ok'));
  app = a.server;
  inbound = await startInbound('api', 'v1', a.port);
  live = { id: 'api-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' };
  outbound = await startOutbound('web', { api: api([]) });
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await closeServer(app);
});

const agent = () => new http.Agent({ keepAlive: false, maxSockets: QUEUE_CAPACITY + 10 });

test('requests to a backend with no endpoint wait for the snapshot that brings one; one over the queue fails at once', async () => {
  const a = agent();
  try {
    const port = outbound.addresses.upstreams.api!.port;
    const waiting = Array.from({ length: QUEUE_CAPACITY }, () => get(port, '/', {}, a));
    // Until the queue is full (requests arrive over their own connections).
    await eventually(() => assert.equal(queueSize(), QUEUE_CAPACITY));
    const over = await get(port, '/', {}, a);
    assert.equal(over.status, 503);
    assert.equal(over.headers['trellis-error'], 'no-endpoints');
    outbound.apply(snapshot(2, [live]));
    const answers = await Promise.all(waiting);
    assert.deepEqual(new Set(answers.map((r) => `${r.status} ${r.body}`)), new Set(['200 ok']));
  } finally {
    a.destroy();
    outbound.apply(snapshot(3, []));
  }
});

test('a request that waits longer than the queue allows fails with 503 no-endpoints', async () => {
  const r = await get(outbound.addresses.upstreams.api!.port, '/');
  assert.equal(r.status, 503);
  assert.equal(r.headers['trellis-error'], 'no-endpoints');
  assert.match(r.body, /waited 3000 ms for an endpoint/);
});

/** The queue of backend api, as the sidecar keeps it. */
function queueSize(): number {
  return outbound.balancing.queueSize('api', 'api');
}
