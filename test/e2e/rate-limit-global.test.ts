// A global rate limit holds across the replicas of a service: three real sidecars of
// `api` behind a real control plane, load spread unevenly (one replica gets ~87% of it),
// and the requests the three admit together over 10 s are the global rate × 10 s,
// within ±10%, with no call to another process per request (the control plane
// rebalances per-replica quotas from the demand each reports every second).
//
// The 10 s are those of the quota loop's own clock, not the wall clock: one manual clock
// drives the control plane's rebalancing, the sidecars' demand reports and their token
// buckets (`rateQuotaClock`, `rateLimitClock`), and the load moves it on in steps of
// STEP_MS, sending the requests due in a step and awaiting their answers before the next.
// So each request is decided at the time it was due, however slowly a loaded machine
// gets there (on real time, a starved machine once admitted 538 of 600: its load arrived
// in clumps, and a bucket full at its burst wastes what accrues), and the count is the
// same in every run. The processes, sockets, mTLS and the control stream are real.
//
// Phases: the quotas are rebalanced at whole seconds of the clock, the sidecars report at
// half seconds (they start at 500 ms), so each rebalance uses the reports of half a
// second before, delivered over the real stream while 50 steps of requests go by.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import https from 'node:https';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { mintCredential } from '../../src/security/bootstrap-credential.js';
import { generateKeyPair, makeCsr, privateKeyPem } from '../../src/security/x509.js';
import { eventually } from '../helpers/eventually.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { closeServer, listenHttp, quietLog } from '../helpers/proxy-pair.js';
import { TEST_BOOTSTRAP_SECRET, tempDir } from '../control/helpers.js';

const RATE = 60; // per second, for the three replicas together
/** The window, on the quota loop's clock. */
const WINDOW_MS = 10_000;
/** How far the clock moves between two rounds of requests. */
const STEP_MS = 10;
/** Offered load per replica, requests per second: uneven on purpose. */
const OFFERED = [150, 15, 8];

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: limits }
spec:
  services:
    - name: api
      replicas: 3
    - name: web
      upstreams: [api]
---
apiVersion: trellis.dev/v1alpha1
kind: RateLimitPolicy
metadata: { name: api-global }
spec:
  targetRefs: [{ group: "", kind: Service, name: api }]
  limits:
    - name: global
      requests: ${RATE}
      interval: 1s
      burst: 10
      global: true
`;

let files: Awaited<ReturnType<typeof tempDir>>;
let plane: ControlPlane;
let app: { server: http.Server; port: number };
const sidecars: Sidecar[] = [];
/** The load's client TLS: a certificate for `web` from the control plane's own CA (the inbound listeners are STRICT). */
let clientTls: https.AgentOptions;
/** The clock of the quota loop: the control plane's rebalancing, the sidecars' reports and buckets. */
const clock = new ManualClock();

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH);
  plane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    log: quietLog,
    health: { schedule: false },
    rateQuotaClock: clock,
  });
  app = await listenHttp((_req, res) => res.end('ok'));
  const keys = await generateKeyPair();
  const ca = plane.identity.ca;
  const issued = await ca.issue(await makeCsr(keys), { trustDomain: ca.trustDomain, namespace: 'default', serviceAccount: 'web' });
  if (typeof issued === 'string') throw new Error(issued);
  clientTls = {
    key: await privateKeyPem(keys.privateKey),
    cert: issued.chain.join('\n'),
    ca: issued.trustBundle,
    // The sidecar's certificate names a SPIFFE ID, not a host name.
    checkServerIdentity: () => undefined,
  };
  // Half a second after the control plane's timer was armed: the sidecars' report timers
  // (armed when their snapshots commit, at this time) fire between two rebalances.
  clock.advance(500);
  for (let i = 0; i < 3; i++) {
    const id = `api-${i}`;
    const s = new Sidecar({
      service: 'api',
      version: 'default',
      id,
      kind: 'sidecar',
      control: `http://127.0.0.1:${plane.address.port}`,
      credential: mintCredential(TEST_BOOTSTRAP_SECRET, { kind: 'sidecar', service: 'api', id }),
      app: { host: '127.0.0.1', port: app.port },
      inbound: { host: '127.0.0.1', port: 0 },
      upstreams: [],
      admin: { host: '127.0.0.1', port: 0 },
      accessLog: 'off',
      log: quietLog,
      rateLimitClock: clock,
    });
    sidecars.push(s);
    await s.start();
  }
});

after(async () => {
  for (const s of sidecars) await s.close();
  await plane.close();
  await closeServer(app.server);
  await files.remove();
});

/** The quota a sidecar holds now (requests per second), from its metrics; undefined before the first. */
async function quotaOf(s: Sidecar): Promise<number | undefined> {
  const line = (await s.metrics.text()).split('\n').find((l) => l.startsWith('trellis_rate_limit_quota_requests_per_second{'));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

/** Every replica holds an equal share of the rate (what it gets while its demand is unknown). */
async function holdEqualShares(): Promise<true> {
  const q = await Promise.all(sidecars.map(quotaOf));
  assert.ok(
    q.every((x) => x !== undefined && Math.abs(x - RATE / 3) < 0.01),
    `quotas ${q.join(', ')}`,
  );
  return true;
}

/** One request to an inbound listener; its answer's status is counted (0: no answer). */
function call(port: number, agent: https.Agent, counts: Map<number, number>): Promise<void> {
  return new Promise<void>((done) => {
    const count = (status: number): void => {
      counts.set(status, (counts.get(status) ?? 0) + 1);
      done();
    };
    const req = https.request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      res.resume();
      res.on('end', () => count(res.statusCode ?? 0));
    });
    req.on('error', () => count(0));
    req.end();
  });
}

/**
 * Load at `rates[i]` per second to sidecar i for `ms` of the manual clock: the clock moves
 * on by STEP_MS, then the requests due by then are sent to every replica together and
 * their answers awaited, so each is decided at the clock time it was due.
 */
async function load(rates: readonly number[], ms: number, counts: Map<number, number>[]): Promise<void> {
  const agents = sidecars.map(() => new https.Agent({ keepAlive: true, maxSockets: 32, ...clientTls }));
  const sent = rates.map(() => 0);
  try {
    for (let elapsed = STEP_MS; elapsed <= ms; elapsed += STEP_MS) {
      clock.advance(STEP_MS);
      const calls: Promise<void>[] = [];
      rates.forEach((rate, i) => {
        const port = sidecars[i]!.addresses.inbound!.port;
        for (const due = Math.floor((elapsed * rate) / 1000); sent[i]! < due; sent[i]!++) calls.push(call(port, agents[i]!, counts[i]!));
      });
      await Promise.all(calls);
    }
  } finally {
    for (const a of agents) a.destroy();
  }
}

test('three replicas under uneven load admit the global rate together over 10 s of the quota clock, within ±10%', { timeout: 300_000 }, async () => {
  // Every replica holds its share before the load starts (an equal one: no demand known yet).
  await eventually(holdEqualShares);
  const counts = sidecars.map(() => new Map<number, number>());
  await load(OFFERED, WINDOW_MS, counts);
  const admitted = counts.map((c) => c.get(200) ?? 0);
  const refused = counts.map((c) => c.get(429) ?? 0);
  const total = admitted.reduce((a, b) => a + b, 0);
  const expected = (RATE * WINDOW_MS) / 1000;
  const detail = `admitted ${admitted.join(' + ')} = ${total} (expected ${expected} ± 10%), refused ${refused.join(', ')}, other ${counts.map((c) => [...c.entries()].filter(([s]) => s !== 200 && s !== 429).length).join(',')}`;
  assert.ok(Math.abs(total - expected) <= expected * 0.1, detail);
  // The quiet replicas were not starved to feed the busy one: they got (nearly) all they asked.
  assert.ok(admitted[1]! >= (0.9 * OFFERED[1]! * WINDOW_MS) / 1000 && admitted[2]! >= (0.9 * OFFERED[2]! * WINDOW_MS) / 1000, detail);
  assert.ok(refused[0]! > 0, detail);
  // The busy replica now holds most of the rate.
  const q = await Promise.all(sidecars.map(quotaOf));
  assert.ok(q[0]! > RATE / 2, `quotas after the load: ${q.join(', ')}`);
  console.log(`# global rate limit: ${detail}; quotas after: ${q.map((x) => x?.toFixed(1)).join(', ')}`);
});

test('a replica that leaves frees its share for the others at once', { timeout: 20_000 }, async () => {
  // A quiet spell longer than demand reports are kept (three rebalance intervals), in one
  // move of the clock: the rebalances in it know no demand (a report of the spell is
  // read only once the clock has stopped), so every replica is back to an equal share.
  clock.advance(5000);
  await eventually(holdEqualShares);
  const leaving = sidecars.pop()!;
  await leaving.close();
  await eventually(async () => {
    const q = await Promise.all(sidecars.map(quotaOf));
    const sum = q.reduce<number>((a, b) => a + (b ?? 0), 0);
    assert.ok(Math.abs(sum - RATE) < 0.01, `quotas ${q.join(', ')}`);
    return true;
  });
});
