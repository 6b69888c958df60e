// Coordinated omission: a server that stalls for 1 s in the middle of a 3 s run at
// 100 req/s is charged for every request scheduled during that second, because latency
// is measured from each request's intended send time. A naive closed-loop client, which
// waits for each answer before sending the next and times from the actual send, sees
// the stall in one request only. Both run on a clock the test moves by hand, so the
// stall and every latency are exact, however busy the machine is.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, describe, it } from 'node:test';
import { runLoad, type RequestRecord } from '../../src/loadgen/run.js';
import { drive, ManualClock, Servers, started } from './helpers.js';

const servers = new Servers();
after(() => servers.close());

/**
 * Answers at once, except that from 1 s after its first request and for 1 s (on `clock`)
 * it holds every answer; `release` answers them once the clock has reached the end.
 */
async function stallingServer(
  clock: ManualClock,
): Promise<{ url: string; stall: () => { start: number; end: number }; held: http.ServerResponse[]; release: () => void }> {
  let start = Infinity;
  let end = Infinity;
  const held: http.ServerResponse[] = [];
  const { url } = await servers.http((_req, res) => {
    const now = clock.now();
    if (start === Infinity) {
      start = now + 1000;
      end = start + 1000;
    }
    if (now >= start && now < end) held.push(res);
    else res.end('ok');
  });
  const release = (): void => {
    if (clock.now() >= end) for (const res of held.splice(0)) res.end('late');
  };
  return { url, stall: () => ({ start, end }), held, release };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * What a naive client does, on `clock`: one connection, next request at the next free
 * 10 ms slot, timed from its actual send. `idle` is true while it waits for its next slot.
 */
function closedLoop(clock: ManualClock, url: string, rate: number, durationMs: number): { latencies: number[]; idle: () => boolean; done: Promise<void> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let waiting = false;
  const interval = 1000 / rate;
  const begin = clock.now();
  const done = (async () => {
    let slot = 0;
    try {
      while (slot * interval < durationMs) {
        waiting = true;
        await clock.at(begin + slot * interval);
        waiting = false;
        const sentAt = clock.now();
        await new Promise<void>((resolve, reject) => {
          http
            .get(url, { agent }, (res) => {
              res.resume();
              res.on('end', () => resolve());
            })
            .on('error', reject);
        });
        latencies.push(clock.now() - sentAt);
        // The slots that passed while it waited are skipped: those requests are never sent.
        slot = Math.max(slot + 1, Math.ceil((clock.now() - begin) / interval));
      }
      waiting = true;
    } finally {
      agent.destroy();
    }
  })();
  return { latencies, idle: () => waiting, done };
}

describe('coordinated omission', () => {
  it('charges a 1 s stall to every request scheduled during it', async () => {
    const clock = new ManualClock();
    const server = await stallingServer(clock);
    const records: RequestRecord[] = [];
    const run = runLoad({
      url: server.url,
      rate: 100,
      durationMs: 3000,
      warmupMs: 0,
      connections: 10,
      timeoutMs: 5000,
      onRequest: (x) => records.push(x),
      clock,
    });
    const plan = await started(clock);
    // At each instant the client does all it can: every due request is answered, or held
    // by the stalled server, or queued behind the 10 connections the server holds.
    await drive(clock, plan.startMs + 3000, () => records.length + server.held.length === clock.due || server.held.length === 10, server.release);
    const r = await run;
    assert.equal(r.scheduled, 300);
    assert.equal(r.completed, 300);
    assert.equal(records.length, 300);

    const { start, end } = server.stall();
    const during = records.filter((x) => x.intendedAt >= start && x.intendedAt < end);
    assert.equal(during.length, 100, `${during.length} requests were due during the stall`);
    for (const x of during) {
      // None could be answered before the stall ended, and each is charged from when it was due.
      const owed = end - x.intendedAt;
      assert.equal(x.latencyMs, owed, `request ${x.index}, due ${x.intendedAt - start} ms into the stall: ${x.latencyMs} ms, not ${owed} ms`);
    }
    assert.ok(records.filter((x) => x.latencyMs >= 100).length >= 85, "the requests due in the stall's first 900 ms waited ≥ 100 ms");
    assert.ok(records.filter((x) => x.latencyMs >= 500).length >= 45, 'those due in its first half waited ≥ 500 ms');
    assert.ok(r.latencyUs.p99 >= 900_000, `p99 ${r.latencyUs.p99} µs`);
    assert.ok(r.latencyUs.max >= 980_000 && r.latencyUs.max < 1_100_000, `max ${r.latencyUs.max} µs`);
    assert.ok(r.latencyUs.p50 < 100_000, `p50 ${r.latencyUs.p50} µs: the other two seconds were fast`);
    assert.ok(r.peakQueued >= 50, `peak queued ${r.peakQueued}`);
  });

  it('is what a naive closed-loop client misses against the same stall', async () => {
    const clock = new ManualClock();
    const server = await stallingServer(clock);
    const client = closedLoop(clock, server.url, 100, 3000);
    await drive(clock, 3000, () => client.idle() || server.held.length === 1, server.release);
    await client.done;
    const latencies = client.latencies.sort((a, b) => a - b);
    assert.ok(latencies.length < 250, `${latencies.length} requests: the stalled slots were never sent`);
    assert.equal(latencies.length, 201, 'the 99 slots after the stalled one were skipped');
    assert.ok(latencies.filter((ms) => ms >= 500).length <= 1, 'one request saw the stall');
    assert.deepEqual(
      latencies.filter((ms) => ms > 0),
      [1000],
      'one request saw the stall, all of it',
    );
    assert.ok(percentile(latencies, 99) < 100, `naive p99 ${percentile(latencies, 99).toFixed(1)} ms`);
  });
});
