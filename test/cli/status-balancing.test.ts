// `trellis status` reads each proxy's /balancing admin endpoint and shows the endpoints
// outlier detection ejected and the circuit breakers that are open or refused requests,
// here from a real sidecar that has one of each.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { ProxyView } from '../../src/api/admin.js';
import { DEFAULT_OUTLIER_DETECTION, type UpstreamSnapshot } from '../../src/api/protocol.js';
import { fetchBalancing, renderBalancing } from '../../src/cli/status.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { startOutbound } from '../helpers/proxy-pair.js';

let outbound: Sidecar;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

before(async () => {
  const dead = await freePort();
  const other = await freePort();
  const svc = (name: string, extra: Partial<UpstreamSnapshot>): UpstreamSnapshot => ({
    service: name,
    protocol: 'http',
    routes: [],
    backends: { [name]: { name, endpoints: [{ id: `${name}-0`, host: '127.0.0.1', port: name === 'api' ? dead : other, version: 'v1' }] } },
    ...extra,
  });
  outbound = await startOutbound('web', {
    api: svc('api', {
      balancing: { policy: 't', balancer: 'RoundRobin', panicThreshold: 50, outlierDetection: { ...DEFAULT_OUTLIER_DETECTION, consecutive5xx: 2 } },
    }),
    db: svc('db', {
      balancing: {
        policy: 't',
        balancer: 'RoundRobin',
        panicThreshold: 50,
        circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 0, maxRetries: 3 },
      },
    }),
  });
});

after(() => outbound.close());

function send(service: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: outbound.addresses.upstreams[service]!.port, path: '/', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      })
      .on('error', reject);
  });
}

test("status shows an ejected endpoint and a breaker that refused requests, read from the proxy's admin server", async () => {
  assert.equal(await send('api'), 502);
  assert.equal(await send('api'), 502);
  assert.equal(await send('db'), 503);
  const proxy = { id: 'web-out', connected: true, admin: outbound.addresses.admin! } as unknown as ProxyView;
  const reports = await fetchBalancing([proxy]);
  const text = renderBalancing(reports);
  assert.match(text, /Ejected endpoints/);
  assert.match(text, /web-out\s+api\s+api-0\s+127\.0\.0\.1:\d+\s+consecutive-5xx, back in \d+s\s+1/);
  assert.match(text, /Circuit breakers/);
  assert.match(text, /web-out\s+db\s+open\s+0\/1024\s+0\/1024\s+0\/0\s+0\/3\s+0\/1\/0/);
  // A proxy that does not answer is named, not silently skipped.
  const gone = renderBalancing(
    await fetchBalancing([{ id: 'gone', connected: true, admin: { host: '127.0.0.1', port: await freePort() } } as unknown as ProxyView]),
  );
  assert.match(gone, /No balancing state from: gone/);
});

test('status adds nothing when every endpoint is in rotation and no breaker refused anything', () => {
  assert.equal(renderBalancing([{ id: 'p', endpoints: [], breakers: [] }]), '');
});
