// The sidecar's gauge of its app's CPU: the process listening on the app port is found
// through /proc (Linux only) and its CPU seconds exported, so a bench can tell a busy
// app from a busy sidecar.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ProxyMetrics } from '../../src/telemetry/metrics.js';
import { parsePrometheus } from '../../src/telemetry/prometheus-text.js';
import { Servers } from './helpers.js';

const servers = new Servers();
after(() => servers.close());

describe('app CPU metric', { skip: process.platform !== 'linux' && 'reads /proc (Linux only)' }, () => {
  it('reports the CPU seconds of the process listening on the app port, and nothing for a free port', async () => {
    const { port } = await servers.http((_req, res) => res.end('ok'));
    const m = new ProxyMetrics({ service: 'svc', id: 'svc-0' });
    m.watchAppCpu(port);
    const until = performance.now() + 50;
    while (performance.now() < until); // some CPU to see
    const samples = parsePrometheus(await m.text(), (n) => n === 'trellis_proxy_app_cpu_seconds_total');
    assert.equal(samples.length, 1);
    assert.equal(samples[0]!.labels.pid, String(process.pid), 'this test process listens on the port');
    const own = process.cpuUsage();
    assert.ok(samples[0]!.value > 0 && samples[0]!.value <= (own.user + own.system) / 1e6 + 0.05, `${samples[0]!.value} s`);

    const none = new ProxyMetrics({ service: 'svc', id: 'svc-1' });
    none.watchAppCpu(1); // nothing listens on port 1
    assert.equal(parsePrometheus(await none.text(), (n) => n === 'trellis_proxy_app_cpu_seconds_total').length, 0);
  });
});
