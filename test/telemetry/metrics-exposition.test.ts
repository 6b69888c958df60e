// What a proxy's /metrics says, checked as text: every family has # HELP and # TYPE and
// follows Prometheus's naming conventions; the HTTP series carry a classification that
// follows the success rule (gRPC status aware); the proxy internals the golden metrics
// ask for are there (snapshot version and age, connections per listener, pools).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyMetrics, type HttpLabels } from '../../src/telemetry/metrics.js';
import { parsePrometheus } from '../../src/telemetry/prometheus-text.js';

const labels: HttpLabels = { direction: 'outbound', source: 'web', destination: 'api', destinationVersion: 'v1', route: 'default/api/rule/0' };

/** A ProxyMetrics with every family it can have filled in once. */
function filled(): ProxyMetrics {
  const m = new ProxyMetrics({ service: 'web', id: 'web-0' });
  m.observeHttp(labels, 200, 0.004);
  m.observeHttp(labels, 503, 0.02);
  m.observeHttp(labels, 200, 0.001, '0');
  m.observeHttp(labels, 200, 0.001, '14');
  m.tcpOpened('outbound', 'web', 'db', 'v2');
  m.tcpClosed('outbound', 'web', 'db', 'v2', 10, 20);
  m.retried('api', 'r', '503');
  m.budgetExhausted('api', 'r');
  m.timedOut('api', 'r', 'request');
  m.injected('api', 'r', 'abort');
  m.requestRefused('inbound', 'bad-request');
  m.connectionRefused('inbound', 'max-connections');
  m.connectionError('inbound', 'http1');
  m.limitRefused('inbound', 'h2-streams');
  m.tunnelOpened('outbound', 'web', 'api', 'websocket');
  m.tunnelClosed('outbound', 'web', 'api', 'websocket', 1, 2, 0.5);
  m.configApplied(7, Date.now() - 3000);
  m.configRejected();
  m.watchConnections({
    listeners: () => [
      { listener: 'inbound', accepted: 5, active: 2 },
      { listener: 'outbound:api', accepted: 3, active: 1 },
    ],
    pools: () => [
      { pool: 'peers', active: 1, idle: 4 },
      { pool: 'app', active: 0, idle: 2 },
    ],
  });
  m.watchBalancing({
    view: () => [{ service: 'api', backend: 'api', id: 'api-0', pending: 1, ewmaMs: 2, ejected: false, ejections: 1 }] as never,
    breakers: () => [{ service: 'api', open: false, pendingOverflows: 1, requestOverflows: 2, retryOverflows: 3 }] as never,
    ejections: () => [{ service: 'api', version: 'v1', reason: 'consecutive-5xx', count: 1 }] as never,
    failovers: () => [{ service: 'api', backend: 'api-v1', to: 'api', count: 1 }] as never,
  });
  return m;
}

describe("a proxy's /metrics", () => {
  it("gives every family # HELP and # TYPE, named by Prometheus's conventions", async () => {
    const text = await filled().text();
    const help = new Map<string, string>();
    const type = new Map<string, string>();
    for (const line of text.split('\n')) {
      const h = /^# HELP (\S+) (.+)$/.exec(line);
      if (h) help.set(h[1]!, h[2]!);
      const t = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (t) type.set(t[1]!, t[2]!);
    }
    const samples = parsePrometheus(text);
    assert.ok(samples.length > 50);
    for (const s of samples) {
      const family = type.has(s.name) ? s.name : s.name.replace(/_(bucket|sum|count)$/, '');
      assert.ok(help.get(family), `${s.name} has # HELP`);
      const kind = type.get(family);
      assert.ok(kind, `${s.name} has # TYPE`);
      assert.match(family, /^trellis_[a-z0-9_]+$/, `${family}: trellis_ prefix, snake case`);
      if (kind === 'counter') assert.match(family, /_total$/, `counter ${family} ends in _total`);
      else assert.doesNotMatch(family, /_total$/, `${kind} ${family} does not end in _total`);
      if (kind === 'histogram') assert.match(family, /_seconds$/, `histogram ${family} in base units`);
      assert.equal(s.labels.proxy_service, 'web', `${s.name} names its proxy`);
      assert.equal(s.labels.proxy_id, 'web-0');
    }
  });

  it('classifies each HTTP series by the success rule: no response, a 5xx or a gRPC error fail', async () => {
    const samples = parsePrometheus(filled().httpText(), (n) => n === 'trellis_http_requests_total');
    const classes = samples.map((s) => `${s.labels.status}/${s.labels.grpc_status ?? ''}=${s.labels.classification}`).sort();
    assert.deepEqual(classes, ['200/0=success', '200/14=failure', '200/=success', '503/=failure']);
  });

  it('shows the snapshot in force (version, when applied, age) and the snapshots refused', async () => {
    const samples = parsePrometheus(await filled().text());
    const one = (name: string) => samples.find((s) => s.name === name)?.value;
    assert.equal(one('trellis_proxy_config_version'), 7);
    const applied = one('trellis_proxy_config_last_applied_timestamp_seconds') ?? 0;
    assert.ok(Math.abs(applied - (Date.now() - 3000) / 1000) < 2, `applied at ${applied}`);
    const age = one('trellis_proxy_config_age_seconds') ?? 0;
    assert.ok(age >= 3 && age < 10, `age ${age}`);
    assert.equal(one('trellis_proxy_config_rejected_total'), 1);
  });

  it('before the first snapshot: version 0, and no age', async () => {
    const samples = parsePrometheus(await new ProxyMetrics({ service: 'web', id: 'web-0' }).text());
    assert.equal(samples.find((s) => s.name === 'trellis_proxy_config_version')?.value, 0);
    assert.equal(
      samples.some((s) => s.name === 'trellis_proxy_config_age_seconds' || s.name === 'trellis_proxy_config_last_applied_timestamp_seconds'),
      false,
    );
  });

  it("counts connections per listener and the pools' connections by state", async () => {
    const samples = parsePrometheus(await filled().text());
    const pick = (name: string) =>
      samples
        .filter((s) => s.name === name)
        .map(
          (s) =>
            `${Object.values({ ...s.labels, proxy_service: undefined, proxy_id: undefined })
              .filter(Boolean)
              .join(',')}=${s.value}`,
        )
        .sort();
    assert.deepEqual(pick('trellis_proxy_connections_accepted_total'), ['inbound=5', 'outbound:api=3']);
    assert.deepEqual(pick('trellis_proxy_connections_active'), ['inbound=2', 'outbound:api=1']);
    assert.deepEqual(pick('trellis_proxy_pool_connections'), ['app,active=0', 'app,idle=2', 'peers,active=1', 'peers,idle=4']);
  });

  it('labels TCP connections and bytes with the destination version', async () => {
    const samples = parsePrometheus(await filled().text(), (n) => n.startsWith('trellis_tcp_'));
    assert.ok(samples.length >= 4);
    for (const s of samples) assert.equal(s.labels.destination_version, 'v2', s.name);
  });
});
