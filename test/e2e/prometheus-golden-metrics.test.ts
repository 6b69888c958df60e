// The golden metrics in a real Prometheus: `trellis up` on a small mesh (a `client`
// calling `api` through its sidecar) starts Debian's `prometheus` with a 1 s scrape
// interval against the control plane's service discovery; the test sends a bounded load
// on two routes (one the app answers 30 ms late) and asks Prometheus, in PromQL, for the
// per-route rate and p99, checking both against what the test itself sent and measured.
// Skipped, saying why, only when the prometheus binary is not installed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findOnPath } from '../../src/runner/on-path.js';
import { meshUp, stopMesh, REPO, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { panelQueries, promqlErrors, substitute } from '../helpers/dashboards.js';

const PROMETHEUS = findOnPath('prometheus');
const SKIP =
  PROMETHEUS === undefined ? 'the prometheus binary is not installed (on Debian: apt-get install prometheus, or scripts/install-test-deps.sh)' : false;

const ECHO = join(REPO, 'test', 'fixtures', 'apps', 'echo-server.js');
const LATENCY = join(REPO, 'test', 'fixtures', 'apps', 'latency-server.js');
/** What the app adds to every /slow request. */
const SLOW_MS = 30;
/** Requests per second the test sends on each route, and for how long. */
const RATE = 20;
// The window (WINDOW_S), the second before the load's end where it is evaluated, and 3 s
// for the route series to appear and be scraped (every 1 s) before the window opens.
const LOAD_SECONDS = 12;
/** The window of the rate and quantile queries. */
const WINDOW_S = 8;
const SLOW_ROUTE = 'default/api-routes/rule/0';
const FAST_ROUTE = 'default/api-routes/rule/1';
/** The histogram's bucket bounds (metrics.ts), to bound what histogram_quantile may answer. */
const BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10];

interface Sent {
  readonly route: string;
  /** When the answer was complete (ms since the epoch, Prometheus's clock too). */
  readonly at: number;
  readonly seconds: number;
  readonly status: number;
}

let dir: string;
let mesh: RunningMesh | undefined;
let prometheus: string;
let port: number;
const sent: Sent[] = [];
let loadEnd = 0;
/** A moment inside the load, where the queries are evaluated (s since the epoch). */
let inLoad = 0;

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

function send(path: string, route: string): Promise<void> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => {
        sent.push({ route, at: Date.now(), seconds: (performance.now() - started) / 1000, status: res.statusCode ?? 0 });
        resolve();
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', () => {
      sent.push({ route, at: Date.now(), seconds: (performance.now() - started) / 1000, status: 0 });
      resolve();
    });
    req.end();
  });
}

/** Sends RATE requests a second on each route for LOAD_SECONDS: a bounded load, on a schedule (not as fast as it can). */
async function load(): Promise<void> {
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  const total = RATE * LOAD_SECONDS;
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // Raw paths differ per request; the route label must not.
    inFlight.push(send(`/slow/item-${i}?q=${i}`, SLOW_ROUTE), send(`/fast/item-${i}`, FAST_ROUTE));
  }
  await Promise.all(inFlight);
  loadEnd = Date.now();
}

interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(promql: string, time?: number): Promise<VectorSample[]> {
  const params = new URLSearchParams({ query: promql });
  if (time !== undefined) params.set('time', String(time));
  const res = await fetch(`${prometheus}/api/v1/query?${params}`);
  const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: VectorSample[] } };
  assert.equal(body.status, 'success', `${promql}: ${body.error ?? ''}`);
  assert.equal(body.data.resultType, 'vector');
  return body.data.result;
}

/** `{route: value}` of a query summed by route. */
async function byRoute(promql: string, time?: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of await query(promql, time)) out[s.metric.route ?? ''] = Number(s.value[1]);
  return out;
}

/** The q-quantile of `values` (nearest rank). */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

/** The upper bound of the histogram bucket a latency falls in. */
function bucketAbove(seconds: number): number {
  return BUCKETS.find((b) => seconds <= b) ?? Infinity;
}

const CLIENT_OUT = 'direction="outbound",proxy_service="client"';

describe('golden metrics in a real Prometheus', { skip: SKIP }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-prom-'));
    await writeFile(
      join(dir, 'mesh.yaml'),
      `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: prom
spec:
  include: [routes.yaml]
  services:
    - name: client
      command: node ${ECHO}
      upstreams: [api]
      health: { http: { path: /healthz }, interval: 300ms, timeout: 2s }
    - name: api
      command: node ${LATENCY}
      health: { http: { path: /fast/healthz }, interval: 300ms, timeout: 2s }
      versions:
        - name: v1
          env: { SLOW_MS: "${SLOW_MS}" }
`,
    );
    await writeFile(
      join(dir, 'routes.yaml'),
      `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: api-routes
spec:
  parentRefs: [{ name: api }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      backendRefs: [{ name: api }]
    - matches: [{ path: { type: PathPrefix, value: /fast } }]
      backendRefs: [{ name: api }]
`,
    );
    mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'), ['--prometheus', '127.0.0.1:0', '--scrape-interval', '1s']);
    assert.ok(mesh.state.prometheus, `trellis up started Prometheus:\n${mesh.output()}`);
    prometheus = mesh.state.prometheus.url;
    const client = mesh.state.instances.find((i) => i.service === 'client');
    assert.ok(client);
    port = client.upstreams.find((u) => u.service === 'api')?.port ?? 0;
  });

  after(async () => {
    agent.destroy();
    await stopMesh(mesh, dir);
  });

  test('trellis up prints its URL and wrote a config that discovers the proxies through the control plane', async () => {
    assert.ok(mesh);
    assert.ok(mesh.output().includes(`Prometheus: ${prometheus}`), mesh.output());
    const config = await readFile(join(dir, '.trellis', 'prometheus', 'prometheus.yml'), 'utf8');
    assert.ok(config.includes(`${mesh.state.control}/v1/prometheus/targets`), config);
    assert.match(config, /scrape_interval: 1s/);
  });

  test('every proxy of the mesh is a target, up, with its service, version, instance id and kind', async () => {
    assert.ok(mesh);
    const expected = mesh.state.instances.map((i) => i.id).sort();
    await eventually(
      async () => {
        const up = await query('up{job="trellis-proxies"}');
        assert.deepEqual(up.map((s) => s.metric.instance_id).sort(), expected);
        for (const s of up) {
          assert.equal(s.value[1], '1', `${s.metric.instance_id} is up`);
          assert.equal(s.metric.kind, 'sidecar');
        }
        const api = up.find((s) => s.metric.service === 'api');
        assert.equal(api?.metric.version, 'v1');
      },
      { timeoutMs: 30_000 },
    );
  });

  test('a per-route rate and p99 in PromQL agree with what the test sent and measured', { timeout: 120_000 }, async (t) => {
    await load();
    const sentOn = (route: string) => sent.filter((s) => s.route === route);
    for (const route of [SLOW_ROUTE, FAST_ROUTE]) {
      assert.deepEqual(
        sentOn(route).filter((s) => s.status !== 200),
        [],
        'every request was answered 200',
      );
    }

    // Prometheus has scraped past the load: its counters hold exactly what was sent, by
    // route name (the raw paths, one per request, are no label).
    await eventually(
      async () => {
        const total = await byRoute(`sum by (route) (trellis_http_requests_total{${CLIENT_OUT}})`);
        assert.deepEqual(total, { [SLOW_ROUTE]: sentOn(SLOW_ROUTE).length, [FAST_ROUTE]: sentOn(FAST_ROUTE).length });
      },
      { timeoutMs: 20_000 },
    );
    const success = await byRoute(`sum by (route) (trellis_http_requests_total{${CLIENT_OUT},classification="success"})`);
    assert.deepEqual(success, { [SLOW_ROUTE]: sentOn(SLOW_ROUTE).length, [FAST_ROUTE]: sentOn(FAST_ROUTE).length });

    // Evaluated inside the load, a second before its end: the rate over the window
    // against the answers the test counted in the same window.
    const at = (loadEnd - 1000) / 1000;
    inLoad = at;
    const rates = await byRoute(`sum by (route) (rate(trellis_http_requests_total{${CLIENT_OUT}}[${WINDOW_S}s]))`, at);
    for (const route of [SLOW_ROUTE, FAST_ROUTE]) {
      const inWindow = sentOn(route).filter((s) => s.at > (at - WINDOW_S) * 1000 && s.at <= at * 1000);
      const measured = inWindow.length / WINDOW_S;
      const rate = rates[route];
      assert.ok(rate !== undefined, `a rate for ${route}: ${JSON.stringify(rates)}`);
      assert.ok(Math.abs(rate - measured) <= measured * 0.2, `${route}: Prometheus says ${rate.toFixed(2)}/s, the test sent ${measured.toFixed(2)}/s`);
      assert.ok(Math.abs(rate - RATE) <= RATE * 0.35, `${route}: ${rate.toFixed(2)}/s against the ${RATE}/s scheduled`);
    }

    // p99: the sidecar times each request from its head to its last byte, inside what
    // the test measured around it and after what the app added. histogram_quantile
    // answers within the bucket of the true quantile, so the slow route's p99 is at least
    // the lower bound of the bucket holding SLOW_MS, and neither is above the bound of
    // the bucket holding the test's own p99.
    const p99 = await byRoute(
      `histogram_quantile(0.99, sum by (route, le) (rate(trellis_http_request_duration_seconds_bucket{${CLIENT_OUT}}[${WINDOW_S}s])))`,
      at,
    );
    const slowFloor = BUCKETS.filter((b) => b < SLOW_MS / 1000).pop() ?? 0;
    const slow = p99[SLOW_ROUTE];
    const fast = p99[FAST_ROUTE];
    assert.ok(slow !== undefined && fast !== undefined, JSON.stringify(p99));
    const measuredP99 = (route: string) =>
      quantile(
        sentOn(route)
          .filter((s) => s.at > (at - WINDOW_S) * 1000 && s.at <= at * 1000)
          .map((s) => s.seconds),
        0.99,
      );
    assert.ok(slow >= slowFloor, `slow route p99 ${slow} s is at least ${slowFloor} s (the app adds ${SLOW_MS} ms)`);
    assert.ok(slow <= bucketAbove(measuredP99(SLOW_ROUTE)), `slow route p99 ${slow} s within the test's own p99 ${measuredP99(SLOW_ROUTE)} s`);
    assert.ok(fast <= bucketAbove(measuredP99(FAST_ROUTE)), `fast route p99 ${fast} s within the test's own p99 ${measuredP99(FAST_ROUTE)} s`);
    assert.ok(fast < slow, `the fast route's p99 (${fast} s) is below the slow one's (${slow} s)`);
    t.diagnostic(
      `rates ${JSON.stringify(rates)}; p99 from Prometheus ${JSON.stringify(p99)}; the test's own p99: slow ${measuredP99(SLOW_ROUTE)} s, fast ${measuredP99(FAST_ROUTE)} s`,
    );
  });

  test('the proxy internals are there: snapshot version and age, connections, pools', async () => {
    const version = await query('trellis_proxy_config_version{proxy_service="client"}');
    assert.ok(version.length === 1 && Number(version[0]?.value[1]) >= 1, JSON.stringify(version));
    const age = await query('time() - trellis_proxy_config_last_applied_timestamp_seconds{proxy_service="client"}');
    assert.ok(age.length === 1 && Number(age[0]?.value[1]) >= 0, JSON.stringify(age));
    const accepted = await query('trellis_proxy_connections_accepted_total{proxy_service="client",listener="outbound:api"}');
    assert.ok(accepted.length === 1 && Number(accepted[0]?.value[1]) >= 1, JSON.stringify(accepted));
    const pool = await query('sum(trellis_proxy_pool_connections{proxy_service="client",pool="peers"})');
    assert.ok(pool.length === 1 && Number(pool[0]?.value[1]) >= 1, JSON.stringify(pool));
  });

  test('every Grafana panel query (deploy/grafana) parses and returns series for the loaded mesh', async () => {
    assert.ok(inLoad > 0, 'the load ran');
    const empty: string[] = [];
    for (const q of panelQueries()) {
      const expr = substitute(q.expr, { service: 'api', route: SLOW_ROUTE, instance: 'client-0' }, `${WINDOW_S}s`);
      assert.deepEqual(promqlErrors(expr), [], `${q.dashboard}: ${q.panel}: ${expr}`);
      const result = await query(expr, inLoad);
      if (result.length === 0) empty.push(`${q.dashboard}: ${q.panel}: ${expr}`);
    }
    assert.deepEqual(empty, [], 'no dashboard panel is dead');
  });
});
