// The proxy's own process metrics: collected by Trellis (prom-client's default
// collectors are not loaded, to keep a sidecar's memory down) under the names those
// collectors use, which the bottleneck report and dashboards read.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyMetrics } from '../../src/telemetry/metrics.js';
import { PROXY_CPU_METRIC } from '../../src/loadgen/hop-metrics.js';
import { parsePrometheus } from '../../src/telemetry/prometheus-text.js';

describe('proxy process metrics', () => {
  it('exports CPU seconds, resident memory and heap of this process, labelled with the proxy', async () => {
    const m = new ProxyMetrics({ service: 'svc', id: 'svc-0' });
    const until = performance.now() + 30;
    while (performance.now() < until); // some CPU to see
    const text = await m.text();
    const one = (name: string): { value: number; labels: Record<string, string> } => {
      const s = parsePrometheus(text, (n) => n === name);
      assert.equal(s.length, 1, `${name} in:\n${text}`);
      return s[0]!;
    };
    const cpu = one(PROXY_CPU_METRIC);
    const own = process.cpuUsage();
    assert.ok(cpu.value > 0 && cpu.value <= (own.user + own.system) / 1e6, `cpu ${cpu.value} s`);
    assert.equal(cpu.labels.proxy_id, 'svc-0');
    assert.equal(cpu.labels.proxy_service, 'svc');
    const rss = one('trellis_proxy_process_resident_memory_bytes').value;
    assert.ok(rss > 1e6 && rss <= process.memoryUsage.rss() * 2, `rss ${rss}`);
    assert.ok(one('trellis_proxy_nodejs_heap_size_used_bytes').value > 0);
    const start = one('trellis_proxy_process_start_time_seconds').value;
    assert.ok(Math.abs(start - (Date.now() / 1000 - process.uptime())) < 5, `start ${start}`);
    if (process.platform === 'linux') assert.ok(one('trellis_proxy_process_open_fds').value > 0);
    // The counter is a reading, not a sum of readings: a second scrape does not double it.
    const again = parsePrometheus(await m.text(), (n) => n === PROXY_CPU_METRIC)[0]!.value;
    assert.ok(again >= cpu.value && again < cpu.value + 1, `second scrape ${again}`);
  });
});
