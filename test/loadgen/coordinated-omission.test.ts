// Coordinated omission: a server that stalls for 1 s in the middle of a 3 s run at
// 100 req/s is charged for every request scheduled during that second, because latency
// is measured from each request's intended send time. A naive closed-loop client, which
// waits for each answer before sending the next and times from the actual send, sees
// the stall in one request only.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, describe, it } from 'node:test';
import { runLoad, type RequestRecord } from '../../src/loadgen/run.js';
import { Servers } from './helpers.js';

const servers = new Servers();
after(() => servers.close());

/**
 * Answers at once, except that from 1 s after its first request and for 1 s it holds
 * every answer until the stall ends (without blocking this process, which also runs
 * the client).
 */
async function stallingServer(): Promise<{ url: string; stall: () => { start: number; end: number } }> {
  let start = Infinity;
  let end = Infinity;
  const { url } = await servers.http((_req, res) => {
    const now = performance.now();
    if (start === Infinity) {
      start = now + 1000;
      end = start + 1000;
    }
    if (now >= start && now < end) setTimeout(() => res.end('late'), end - now);
    else res.end('ok');
  });
  return { url, stall: () => ({ start, end }) };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** What a naive client does: one connection, next request at the next free 10 ms slot, timed from its actual send. */
async function closedLoop(url: string, rate: number, durationMs: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  const interval = 1000 / rate;
  const begin = performance.now();
  let slot = 0;
  try {
    while (slot * interval < durationMs) {
      const wait = begin + slot * interval - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const sentAt = performance.now();
      await new Promise<void>((resolve, reject) => {
        http.get(url, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        }).on('error', reject);
      });
      latencies.push(performance.now() - sentAt);
      // The slots that passed while it waited are skipped: those requests are never sent.
      slot = Math.max(slot + 1, Math.ceil((performance.now() - begin) / interval));
    }
  } finally {
    agent.destroy();
  }
  return latencies;
}

describe('coordinated omission', () => {
  it('charges a 1 s stall to every request scheduled during it', async () => {
    const { url, stall } = await stallingServer();
    const records: RequestRecord[] = [];
    const r = await runLoad({ url, rate: 100, durationMs: 3000, warmupMs: 0, connections: 10, timeoutMs: 5000, onRequest: (x) => records.push(x) });
    assert.equal(r.scheduled, 300);
    assert.equal(r.completed, 300);
    assert.equal(records.length, 300);

    const { start, end } = stall();
    const during = records.filter((x) => x.intendedAt >= start && x.intendedAt < end);
    assert.ok(during.length >= 94 && during.length <= 105, `${during.length} requests were due during the stall`);
    for (const x of during) {
      // None could be answered before the stall ended, and each is charged from when it was due.
      const owed = end - x.intendedAt;
      assert.ok(x.latencyMs >= owed - 5, `request ${x.index}, due ${(x.intendedAt - start).toFixed(1)} ms into the stall: ${x.latencyMs.toFixed(1)} ms < ${owed.toFixed(1)} ms`);
    }
    assert.ok(records.filter((x) => x.latencyMs >= 100).length >= 85, 'the requests due in the stall\'s first 900 ms waited ≥ 100 ms');
    assert.ok(records.filter((x) => x.latencyMs >= 500).length >= 45, 'those due in its first half waited ≥ 500 ms');
    assert.ok(r.latencyUs.p99 >= 900_000, `p99 ${r.latencyUs.p99} µs`);
    assert.ok(r.latencyUs.max >= 980_000 && r.latencyUs.max < 1_100_000, `max ${r.latencyUs.max} µs`);
    assert.ok(r.latencyUs.p50 < 100_000, `p50 ${r.latencyUs.p50} µs: the other two seconds were fast`);
    assert.ok(r.peakQueued >= 50, `peak queued ${r.peakQueued}`);
  });

  it('is what a naive closed-loop client misses against the same stall', async () => {
    const { url } = await stallingServer();
    const latencies = (await closedLoop(url, 100, 3000)).sort((a, b) => a - b);
    assert.ok(latencies.length < 250, `${latencies.length} requests: the stalled slots were never sent`);
    assert.ok(latencies.filter((ms) => ms >= 500).length <= 1, 'one request saw the stall');
    assert.ok(percentile(latencies, 99) < 100, `naive p99 ${percentile(latencies, 99).toFixed(1)} ms`);
  });
});
