// The canary's steps, driven with a fake clock and fake weights/metrics: what each step
// sets, how a window is judged into pass / wait / roll back, and that an abort puts the
// start weights back. The lines are what `trellis canary` prints for the events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { versionReading, type VersionReading } from '../../src/canary/judge.js';
import { pickStable, runCanary, stepWeights, type CanaryEvent, type CanaryIo, type CanaryOutcome, type CanaryPlan } from '../../src/canary/step-runner.js';
import { eventText } from '../../src/cli/canary.js';
import { TrellisError } from '../../src/errors.js';
import { ProxyMetrics, type HttpLabels } from '../../src/telemetry/metrics.js';

const toV2: HttpLabels = { direction: 'outbound', source: 'frontend', destination: 'backend', destinationVersion: 'v2', route: 'default/split/rule/0' };

const plan: CanaryPlan = {
  service: 'backend',
  to: 'v2',
  stable: 'v1',
  versions: ['v1', 'v2'],
  steps: [10, 50],
  intervalMs: 1000,
  limits: { maxErrorRate: 0.01, maxP99Ms: 200, minRequests: 20 },
  maxWaits: 1,
  start: { v1: 100, v2: 0 },
};

/**
 * A world where each interval's traffic is `traffic(interval)`: [status, count] answers
 * for v2, observed in a real ProxyMetrics while the runner sleeps. Time moves only by
 * the sleeps.
 */
function world(traffic: (interval: number) => [number, number][], o: { abortAt?: number; failSet?: (w: Record<string, number>) => boolean } = {}) {
  const metrics = new ProxyMetrics({ service: 'frontend', id: 'frontend-0' });
  const controller = new AbortController();
  const set: Record<string, number>[] = [];
  const events: CanaryEvent[] = [];
  let clock = 0;
  let interval = 0;
  const io: CanaryIo = {
    async setWeights(w) {
      if (o.failSet?.(w)) throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: 'http://127.0.0.1:1', reason: 'ECONNREFUSED' });
      set.push(w);
      return 'acknowledged';
    },
    async read(): Promise<VersionReading> {
      return versionReading([{ id: 'frontend-0', text: metrics.httpText() }], 'backend', 'v2');
    },
    async sleep(ms, signal) {
      if (o.abortAt === interval) controller.abort();
      if (signal.aborted) throw new Error('aborted');
      clock += ms;
      for (const [status, count] of traffic(interval++)) for (let i = 0; i < count; i++) metrics.observeHttp(toV2, status, 0.004);
    },
    now: () => clock,
    signal: controller.signal,
    report: (e) => events.push(e),
  };
  return { io, set, lines: () => events.map((e) => eventText(e, plan)) };
}

test('the stable version and the weights of a step', () => {
  const view = { versions: ['v1', 'v2', 'v3'], weights: { v1: 10, v2: 5, v3: 85 }, byInstances: { v1: 1, v2: 1, v3: 1 } };
  assert.equal(pickStable(view, 'v2'), 'v3');
  assert.equal(pickStable({ ...view, weights: null }, 'v2'), 'v1');
  assert.deepEqual(stepWeights(['v1', 'v2', 'v3'], 'v2', 'v3', 25), { v1: 0, v2: 25, v3: 75 });
});

test('every step passing promotes the version to 100%', async () => {
  const w = world(() => [[200, 50]]);
  assert.deepEqual(await runCanary(plan, w.io), { kind: 'promoted' } satisfies CanaryOutcome);
  assert.deepEqual(w.set, [
    { v1: 90, v2: 10 },
    { v1: 50, v2: 50 },
    { v1: 0, v2: 100 },
  ]);
  assert.deepEqual(w.lines(), [
    'step 1/2 (v2 10%): v2 10%, v1 90%; acknowledged',
    'step 1/2 (v2 10%): 50 requests in 1.0 s, error rate 0% (max 1%), p99 5 ms (max 200 ms): pass',
    'step 2/2 (v2 50%): v2 50%, v1 50%; acknowledged',
    'step 2/2 (v2 50%): 50 requests in 1.0 s, error rate 0% (max 1%), p99 5 ms (max 200 ms): pass',
    'promoting: acknowledged',
    'promoted: backend v2 takes 100% of the requests (v1=0 v2=100)',
  ]);
});

test('a breach sets the version back to 0% and says which limit, at which step', async () => {
  const w = world((i) =>
    i === 0
      ? [[200, 50]]
      : [
          [200, 45],
          [503, 5],
        ],
  );
  const outcome = await runCanary(plan, w.io);
  assert.deepEqual(outcome, {
    kind: 'rolled-back',
    step: 50,
    reason: 'error rate 10% (5 of 50 requests failed) is above --max-error-rate 1%',
    weights: { v1: 100, v2: 0 },
  });
  assert.deepEqual(w.set.at(-1), { v1: 100, v2: 0 });
  assert.deepEqual(w.lines().slice(-2), [
    'step 2/2 (v2 50%): 50 requests in 1.0 s, error rate 10% (max 1%), p99 5 ms (max 200 ms): error rate over the limit',
    'rolling back: v2 0%, v1 100%; acknowledged',
  ]);
});

test('too little traffic waits up to --max-waits more intervals, the window growing, then rolls back', async () => {
  const w = world(() => [[200, 5]]);
  const outcome = await runCanary(plan, w.io);
  assert.equal(outcome.kind, 'rolled-back');
  assert.equal(outcome.kind === 'rolled-back' && outcome.reason, 'too little traffic to judge: 10 requests to v2 in 2.0 s, fewer than --min-requests 20');
  assert.deepEqual(w.lines().slice(1), [
    'step 1/2 (v2 10%): 5 requests in 1.0 s, error rate 0% (max 1%), p99 5 ms (max 200 ms): too little traffic (fewer than --min-requests 20); waiting another 1000 ms (1 of 1)',
    'step 1/2 (v2 10%): 10 requests in 2.0 s, error rate 0% (max 1%), p99 5 ms (max 200 ms): too little traffic',
    'rolling back: v2 0%, v1 100%; acknowledged',
  ]);
  // A trickle that adds up within the waits passes.
  assert.deepEqual(await runCanary(plan, world(() => [[200, 10]]).io), { kind: 'promoted' });
});

test('an abort puts the weights of the start back', async () => {
  const w = world(() => [[200, 50]], { abortAt: 1 });
  assert.deepEqual(await runCanary(plan, w.io), { kind: 'interrupted' });
  assert.deepEqual(w.set.at(-1), { v1: 100, v2: 0 });
  assert.equal(w.lines().at(-1), 'interrupted: putting backend back to v1=100 v2=0; acknowledged');
});

test('a canary that can no longer be watched rolls back; when even that fails, the outcome says why', async () => {
  const w = world(() => [[200, 50]]);
  const read = w.io.read;
  let reads = 0;
  w.io.read = async () => {
    if (++reads === 3) throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: 'http://127.0.0.1:1', reason: 'ECONNREFUSED' });
    return read();
  };
  const outcome = await runCanary(plan, w.io);
  assert.equal(outcome.kind === 'rolled-back' && outcome.step, 50);
  assert.match(
    outcome.kind === 'rolled-back' ? outcome.reason : '',
    /^the canary could not go on: cannot reach the control plane at http:\/\/127\.0\.0\.1:1: ECONNREFUSED/,
  );
  const stuck = world((i) => (i === 0 ? [[500, 50]] : []), { failSet: (x) => x.v2 === 0 });
  const failed = await runCanary(plan, stuck.io);
  assert.equal(
    failed.kind === 'rolled-back' && failed.restoreError,
    'cannot reach the control plane at http://127.0.0.1:1: ECONNREFUSED; is `trellis control` (or `trellis up`) running?',
  );
});
