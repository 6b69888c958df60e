// Balancing and passive health through real sidecars: three instances behind inbound
// sidecars, one outbound sidecar whose snapshot gives each upstream service its own
// BackendPolicy. Counts of which instance answered decide; no timing thresholds.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { BalancingConfig, Endpoint, UpstreamSnapshot } from '../../src/api/protocol.js';
import { DEFAULT_OUTLIER_DETECTION } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

const servers: net.Server[] = [];
const sidecars: Sidecar[] = [];
const hanging = new Set<net.Socket>();
let blackConnections = 0;
let outbound: Sidecar;
let upstreams: Record<string, UpstreamSnapshot>;
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** Instance `c` is 50 ms slow on /slow and answers 500 on /flaky; every instance names itself. */
async function instance(name: string): Promise<Endpoint> {
  const { server, port } = await listenHttp((req, res) => {
    const path = req.url!.split('?')[0]!;
    const bad = name === 'c';
    // The delay makes the instance slow: the behaviour under test, not a wait.
    setTimeout(
      () => {
        res.statusCode = bad && path === '/flaky' ? 500 : 200;
        res.end(name);
      },
      bad && path === '/slow' ? 50 : 0,
    );
  });
  servers.push(server);
  const s = await startInbound('api', 'v2', port);
  sidecars.push(s);
  return { id: name, host: '127.0.0.1', port: s.addresses.inbound!.port, version: 'v2' };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

const policy = (balancer: BalancingConfig['balancer'], extra: Partial<BalancingConfig> = {}): BalancingConfig => ({
  policy: 'test',
  balancer,
  panicThreshold: 50,
  ...extra,
});
const service = (name: string, endpoints: Endpoint[], balancing: BalancingConfig, extra: Partial<UpstreamSnapshot> = {}): UpstreamSnapshot => ({
  service: name,
  protocol: 'http',
  routes: [],
  backends: { [name]: { name, endpoints } },
  balancing,
  ...extra,
});

let abc: Endpoint[];

before(async () => {
  abc = [await instance('a'), await instance('b'), await instance('c')];
  const black = net.createServer((s) => {
    blackConnections++;
    hanging.add(s);
    s.on('close', () => hanging.delete(s));
  });
  await new Promise<void>((r) => black.listen(0, '127.0.0.1', r));
  servers.push(black);
  const blackHole: Endpoint = { id: 'half-dead', host: '127.0.0.1', port: (black.address() as net.AddressInfo).port, version: 'v2' };
  const quick = { ...DEFAULT_OUTLIER_DETECTION, baseEjectionTimeMs: 1000 };
  const v1Down: Endpoint[] = [
    { id: 'v1-a', host: '127.0.0.1', port: await freePort(), version: 'v1' },
    { id: 'v1-b', host: '127.0.0.1', port: await freePort(), version: 'v1' },
  ];
  upstreams = {
    ewma: service('ewma', abc, policy('PeakEWMA')),
    rr: service('rr', abc, policy('RoundRobin')),
    flaky: service('flaky', abc, policy('RoundRobin', { outlierDetection: quick })),
    sticky: service('sticky', abc, policy('RingHash', { hashOn: { header: 'x-user' } })),
    hang: {
      ...service('hang', [abc[0]!, abc[1]!, blackHole], policy('RoundRobin', { outlierDetection: quick })),
      routes: [{ name: 'default/hang', match: {}, backends: [{ backend: 'hang', weight: 1 }], timeouts: { backendRequestMs: 100 } }],
    },
    shop: {
      service: 'shop',
      protocol: 'http',
      balancing: policy('PeakEWMA', { outlierDetection: DEFAULT_OUTLIER_DETECTION }),
      routes: [
        {
          name: 'default/shop',
          match: {},
          backends: [{ backend: 'shop-v1', weight: 1 }],
          retry: { codes: [503], attempts: 2, backoffMs: 1, nonIdempotent: false, maxBodyBytes: 65536 },
        },
      ],
      backends: {
        shop: { name: 'shop', endpoints: [...v1Down, abc[0]!, abc[1]!] },
        'shop-v1': { name: 'shop-v1', endpoints: v1Down, failover: 'shop' },
        'shop-v2': { name: 'shop-v2', endpoints: [abc[0]!, abc[1]!], failover: 'shop' },
      },
    },
  };
  outbound = await startOutbound('web', upstreams);
  sidecars.push(outbound);
});

after(async () => {
  agent.destroy();
  for (const s of sidecars) await s.close();
  for (const s of hanging) s.destroy();
  for (const s of servers) await closeServer(s);
});

function send(svc: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: outbound.addresses.upstreams[svc]!.port, path, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends `total` requests, `concurrency` at a time; counts answers by instance. */
async function spread(svc: string, path: string, total: number, concurrency: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < total) {
      sent++;
      const r = await send(svc, path);
      counts.set(r.body, (counts.get(r.body) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return counts;
}

test('with one of three instances 50 ms slower, PeakEWMA sends it under 10% of requests; round robin about a third', async () => {
  const total = 240;
  const ewma = await spread('ewma', '/slow', total, 4);
  const rr = await spread('rr', '/slow', total, 4);
  assert.equal(
    [...ewma.values()].reduce((a, b) => a + b, 0),
    total,
  );
  assert.ok((ewma.get('c') ?? 0) < total * 0.1, `PeakEWMA sent ${ewma.get('c') ?? 0} of ${total} to the slow instance`);
  const rrShare = (rr.get('c') ?? 0) / total;
  assert.ok(rrShare > 0.25 && rrShare < 0.42, `round robin sent ${rr.get('c')} of ${total} to the slow instance`);
});

test('an instance answering 500s is ejected after 5 in a row and comes back after the base ejection time', async () => {
  const seen = (counts: Map<string, number>) => counts.get('c') ?? 0;
  // Sequential, round robin: c answers every third request until its fifth 500.
  const first = await spread('flaky', '/flaky', 30, 1);
  assert.equal(seen(first), 5, 'exactly five 500s reached the client before the ejection');
  const view = () => outbound.balancing.view().find((v) => v.service === 'flaky' && v.id === 'c')!;
  assert.equal(view().ejected, true);
  assert.equal(view().reason, 'consecutive-5xx');
  assert.equal(view().ejections, 1);
  // The base time is 1 s: wait for the return, then c takes traffic again.
  await eventually(() => assert.equal(view().ejected, false));
  const after = await spread('flaky', '/flaky', 6, 1);
  assert.ok(seen(after) > 0, 'the returned instance is picked again');
});

test("RingHash on a header keeps each value on one instance, and only the leaving instance's keys move", async () => {
  const owner = new Map<string, string>();
  for (let u = 0; u < 30; u++) {
    for (let k = 0; k < 3; k++) {
      const r = await send('sticky', '/', { 'x-user': `user-${u}` });
      const prev = owner.get(`user-${u}`);
      if (prev !== undefined) assert.equal(r.body, prev, `user-${u} moved from ${prev} to ${r.body}`);
      owner.set(`user-${u}`, r.body);
    }
  }
  assert.equal(new Set(owner.values()).size, 3, 'the keys spread over all three instances');
  // Instance c leaves: the keys of a and b stay put.
  outbound.apply({
    version: 2,
    service: 'web',
    inboundProtocol: 'http',
    upstreams: { ...upstreams, sticky: service('sticky', abc.slice(0, 2), policy('RingHash', { hashOn: { header: 'x-user' } })) },
  });
  let moved = 0;
  for (const [user, was] of owner) {
    const r = await send('sticky', '/', { 'x-user': user });
    if (was !== 'c') assert.equal(r.body, was, `${user} moved off ${was}, which stayed`);
    else moved++;
  }
  assert.ok(moved > 0 && moved < owner.size / 2);
  outbound.apply({ version: 3, service: 'web', inboundProtocol: 'http', upstreams });
});

test('with every v1 instance down, traffic fails over to v2 and no request fails', async () => {
  const counts = await spread('shop', '/', 20, 2);
  assert.deepEqual([...counts.keys()].sort(), ['a', 'b'], `answers came from ${[...counts.keys()].join(', ')}`);
  assert.equal((counts.get('a') ?? 0) + (counts.get('b') ?? 0), 20);
});

test('a half-dead instance (accepts connections, never answers) is ejected by its timeouts', async () => {
  const statuses = new Map<number, number>();
  for (let i = 0; i < 30; i++) {
    const r = await send('hang', '/');
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  }
  assert.equal(blackConnections, 5, 'five timed-out attempts, then no more');
  assert.equal(statuses.get(504), 5);
  assert.equal(statuses.get(200), 25);
  const v = outbound.balancing.view().find((x) => x.service === 'hang' && x.id === 'half-dead')!;
  assert.equal(v.ejected, true);
});
