// The schedule: a run sends the asked number of requests, spread over the asked
// duration, warm-up apart, and every one is accounted for. Spread, warm-up and abort are
// checked on a clock the test moves by hand (exact, and blind to how busy the machine
// is); the real clock's ticker thread is checked for never sending a request early.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { runLoad } from '../../src/loadgen/run.js';
import { drive, ManualClock, Servers, started } from './helpers.js';

const servers = new Servers();
after(() => servers.close());

describe('constant-rate schedule', () => {
  it('sends rate × duration requests over the duration, and all of them complete', async () => {
    const clock = new ManualClock();
    const arrivals: number[] = [];
    const { url } = await servers.http((_req, res) => {
      arrivals.push(clock.now());
      res.end('ok');
    });
    const run = runLoad({ url, rate: 200, durationMs: 1000, warmupMs: 0, connections: 10, timeoutMs: 2000, clock });
    const plan = await started(clock);
    // Each step waits for the requests it made due to arrive: a request sent early shows
    // as an arrival before its time, one not sent as a step that never settles.
    await drive(clock, plan.startMs + 1000, () => arrivals.length === clock.due);
    const r = await run;
    assert.equal(r.scheduled, 200);
    assert.equal(r.sent, 200);
    assert.equal(r.completed, 200);
    assert.equal(r.errors.total, 0);
    assert.deepEqual(r.statuses, { 200: 200 });
    assert.equal(arrivals.length, 200);
    // Spread over the second, not sent in a burst: 199 intervals of 5 ms, each request
    // arriving at the instant it fell due.
    assert.deepEqual(
      arrivals,
      Array.from({ length: 200 }, (_, i) => plan.startMs + 5 * i),
    );
    const span = arrivals.at(-1)! - arrivals[0]!;
    assert.equal(span, 995, `requests arrived over ${span} ms`);
    const firstHalf = arrivals.filter((t) => t - arrivals[0]! < 500).length;
    assert.equal(firstHalf, 100, `${firstHalf} of 200 in the first half`);
    assert.equal(r.achievedRps, 200, `achieved ${r.achievedRps}`);
    assert.equal(r.latencyUs.count, 200);
  });

  it('reports intended times on the performance clock that no request arrives before', async () => {
    // In a fresh process, as `trellis load` runs: there the first performance.now() call
    // is slow, which once put every intended time ~1 ms late. Requests carry no index, so
    // the n-th arrival is paired with the n-th intended time: with both sorted, a request
    // sent before it was due makes some pair arrive early.
    const script = `
      import http from 'node:http';
      import { runLoad } from ${JSON.stringify(new URL('../../src/loadgen/run.js', import.meta.url).href)};
      const arrivals = [];
      const server = http.createServer((_req, res) => { arrivals.push(performance.now()); res.end('ok'); });
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      const intended = [];
      await runLoad({ url: 'http://127.0.0.1:' + server.address().port + '/', rate: 500, durationMs: 600, warmupMs: 0,
        connections: 8, timeoutMs: 2000, onRequest: (x) => intended.push(x.intendedAt) });
      server.close();
      process.stdout.write(JSON.stringify({ arrivals, intended }));`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    const { arrivals, intended } = JSON.parse(out) as { arrivals: number[]; intended: number[] };
    arrivals.sort((a, b) => a - b);
    intended.sort((a, b) => a - b);
    assert.equal(arrivals.length, 300);
    assert.equal(intended.length, 300);
    const early = arrivals.filter((t, i) => t < intended[i]!).length;
    assert.equal(early, 0, `${early} requests arrived before their intended time (first gap ${(arrivals[0]! - intended[0]!).toFixed(3)} ms)`);
  });

  it('sends the warm-up at the same rate but does not record it', async () => {
    const clock = new ManualClock();
    let seen = 0;
    const { url } = await servers.http((_req, res) => {
      seen++;
      res.end('ok');
    });
    // Readers of counters (the bench's hop report) start where the measured window does.
    const seenAtMeasureStart: number[] = [];
    const run = runLoad({
      url,
      rate: 100,
      durationMs: 500,
      warmupMs: 300,
      connections: 4,
      timeoutMs: 2000,
      clock,
      onMeasureStart: () => seenAtMeasureStart.push(seen),
    });
    const plan = await started(clock);
    await drive(clock, plan.startMs + 800, () => seen === clock.due);
    const r = await run;
    assert.equal(seen, 80);
    assert.equal(seenAtMeasureStart.length, 1, 'called once');
    assert.equal(seenAtMeasureStart[0], 30, `${seenAtMeasureStart[0]} of the 30 warm-up requests had arrived (and no measured one)`);
    assert.equal(r.scheduled, 50);
    assert.equal(r.completed, 50);
    assert.equal(r.latencyUs.count, 50);
  });

  it('stops early when aborted and reports what was scheduled until then', async () => {
    const clock = new ManualClock();
    let answered = 0;
    const { url } = await servers.http((_req, res) => {
      answered++;
      res.end('ok');
    });
    const ac = new AbortController();
    const run = runLoad({ url, rate: 100, durationMs: 5000, warmupMs: 0, connections: 4, timeoutMs: 2000, signal: ac.signal, clock });
    const plan = await started(clock);
    // Aborted 295 ms into the schedule: requests 0-29 (due at 0, 10, ... 290 ms) were due.
    await drive(clock, plan.startMs + 295, () => answered === clock.due);
    ac.abort();
    const r = await run;
    assert.equal(r.interrupted, true);
    assert.equal(r.scheduled, 30, `scheduled ${r.scheduled}`);
    assert.equal(r.completed, r.scheduled);
    assert.equal(r.elapsedMs, 295);
  });

  it('refuses a rate, duration or connection count that is not above 0', async () => {
    const base = { url: 'http://127.0.0.1:1/', rate: 10, durationMs: 1000, warmupMs: 0, connections: 1, timeoutMs: 1000 };
    for (const bad of [{ rate: 0 }, { durationMs: -1 }, { connections: 0 }, { rate: Number.NaN }]) {
      await assert.rejects(runLoad({ ...base, ...bad }), (e: Error & { code?: string }) => e.code === 'TRELLIS_E_USAGE');
    }
  });
});
