import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { HealthChecker, nextHealth, probeHttp, probeTcp, type CheckResult } from '../../src/control/sources/health-checker.js';
import { MeshModel, type HealthState } from '../../src/control/model.js';
import type { HealthConfig } from '../../src/control/sources/mesh-config.js';
import { config, service } from './helpers.js';
import { eventually } from '../helpers/eventually.js';
import { ControlMetrics } from '../../src/control/control-metrics.js';

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function httpApp(): Promise<{ port: number; setStatus: (s: number) => void; hits: () => number }> {
  let status = 200;
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.writeHead(req.url === '/healthz' ? status : 404);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { port: (server.address() as AddressInfo).port, setStatus: (s) => (status = s), hits: () => hits };
}

async function tcpApp(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  cleanups.push(() => (server.listening ? close() : undefined));
  return { port: (server.address() as AddressInfo).port, close };
}

function modelWith(health: HealthConfig, name = 'app'): MeshModel {
  const model = new MeshModel();
  model.setConfig(config([service(name, { health })]), []);
  return model;
}

function register(model: MeshModel, id: string, appPort: number, svc = 'app'): void {
  model.addInstance({
    id,
    service: svc,
    version: 'default',
    app: { host: '127.0.0.1', port: appPort },
    inbound: { host: '127.0.0.1', port: 1 },
    admin: { host: '127.0.0.1', port: 2 },
    pid: 1,
  });
}

/** Lets what a fired timer started (a probe, its result, the next timer) run to its end. */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

const timing = { intervalMs: 10_000, timeoutMs: 300, healthyThreshold: 2, unhealthyThreshold: 2 };

test('an HTTP instance turns healthy on its first good answer and unhealthy after the threshold of bad ones', async () => {
  const app = await httpApp();
  const model = modelWith({ type: 'http', path: '/healthz', ...timing });
  const checker = new HealthChecker({ model, schedule: false });
  checker.start();
  cleanups.push(() => checker.stop());
  register(model, 'app-0', app.port);
  assert.equal(model.health('app-0')!.status, 'unknown');

  assert.equal((await checker.checkNow('app-0'))!.status, 'healthy');
  app.setStatus(503);
  const once = (await checker.checkNow('app-0'))!;
  assert.equal(once.status, 'healthy', 'one failure is below unhealthyThreshold 2');
  assert.match(once.lastError ?? '', /answered 503, expected 2xx/);
  assert.equal((await checker.checkNow('app-0'))!.status, 'unhealthy');
  app.setStatus(204);
  assert.equal((await checker.checkNow('app-0'))!.status, 'unhealthy', 'one success is below healthyThreshold 2');
  const back = (await checker.checkNow('app-0'))!;
  assert.equal(back.status, 'healthy');
  assert.equal(back.lastError, undefined);
});

test('each status change is reported once, as trellis_control_health_transitions_total counts it', async () => {
  const app = await httpApp();
  const model = modelWith({ type: 'http', path: '/healthz', ...timing });
  const metrics = new ControlMetrics();
  cleanups.push(() => metrics.close());
  const checker = new HealthChecker({ model, schedule: false, onTransition: (from, to) => metrics.healthTransition(from, to) });
  checker.start();
  cleanups.push(() => checker.stop());
  register(model, 'app-0', app.port);
  await checker.checkNow('app-0');
  await checker.checkNow('app-0'); // healthy again: no transition
  app.setStatus(503);
  await checker.checkNow('app-0');
  await checker.checkNow('app-0');
  const text = await metrics.text();
  const count = (from: string, to: string): number =>
    Number(new RegExp(`trellis_control_health_transitions_total\\{from="${from}",to="${to}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  assert.equal(count('unknown', 'healthy'), 1);
  assert.equal(count('healthy', 'unhealthy'), 1);
  assert.equal(count('unhealthy', 'healthy'), 0);
});

test('an HTTP check with an expected status wants exactly that status', async () => {
  const app = await httpApp();
  app.setStatus(200);
  assert.equal((await probeHttp({ host: '127.0.0.1', port: app.port }, '/healthz', 200, 500)).ok, true);
  assert.equal((await probeHttp({ host: '127.0.0.1', port: app.port }, '/healthz', 204, 500)).ok, false);
  assert.equal((await probeHttp({ host: '127.0.0.1', port: app.port }, '/other', undefined, 500)).ok, false);
});

test('an HTTP check that gets no answer in time fails with a timeout', async (t) => {
  const server = net.createServer(() => {}); // accepts and never answers
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    server.close();
  });
  const accepted = new Promise((r) => server.once('connection', r));
  // The probe's timeout on a mock clock: it fires when 100 ms have passed since the request went out, not before,
  // however slow the machine (the sockets stay real).
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let settled: CheckResult | undefined;
  const probe = probeHttp({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }, '/healthz', undefined, 100).then((r) => (settled = r));
  await accepted;
  // The deadline runs from the connection's open (when the request is written): let the client see it.
  await flush();
  t.mock.timers.tick(99);
  await flush();
  assert.equal(settled, undefined, 'still waiting 1 ms before the timeout');
  t.mock.timers.tick(1);
  const result = await probe;
  assert.equal(result.ok, false);
  assert.match(result.error ?? '', /no response within 100 ms/);
});

test('a TCP instance is healthy while its port accepts and unhealthy after the threshold once it stops', async () => {
  const app = await tcpApp();
  const model = modelWith({ type: 'tcp', ...timing });
  const checker = new HealthChecker({ model, schedule: false });
  checker.start();
  cleanups.push(() => checker.stop());
  register(model, 'tcp-0', app.port);
  assert.equal((await checker.checkNow('tcp-0'))!.status, 'healthy');
  await app.close();
  assert.equal((await checker.checkNow('tcp-0'))!.status, 'healthy');
  const down = (await checker.checkNow('tcp-0'))!;
  assert.equal(down.status, 'unhealthy');
  assert.match(down.lastError ?? '', /ECONNREFUSED/);
  assert.equal((await probeTcp({ host: '127.0.0.1', port: app.port }, 200)).ok, false);
});

test('the first check runs on registration, so a live instance is healthy within milliseconds', async (t) => {
  const app = await httpApp();
  const model = modelWith({ type: 'http', path: '/healthz', ...timing, intervalMs: 60_000 });
  // The checker's timers on a mock clock that never moves: whatever makes the instance
  // healthy here is the check on registration, not one that waited for a timer.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const checker = new HealthChecker({ model });
  checker.start();
  try {
    const changes: string[] = [];
    model.on('change', (reason) => changes.push(reason));
    register(model, 'app-0', app.port);
    await eventually(() => model.health('app-0')?.status === 'healthy', { what: 'healthy' });
    assert.equal(app.hits(), 1, "one check, with no time passed on the checker's clock");
    assert.deepEqual(changes, ['instance-added', 'health']);
  } finally {
    checker.stop();
  }
});

test('until it is first healthy, an instance is retried at the short startup interval', async (t) => {
  let calls = 0;
  const probe = async (): Promise<CheckResult> => (++calls < 3 ? { ok: false, error: 'not yet' } : { ok: true });
  const model = modelWith({ type: 'tcp', ...timing, healthyThreshold: 1, intervalMs: 60_000 });
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const checker = new HealthChecker({ model, probe, startupIntervalMs: 10 });
  checker.start();
  const advance = async (ms: number): Promise<void> => {
    t.mock.timers.tick(ms);
    await flush();
  };
  try {
    register(model, 'slow-0', 1);
    await flush();
    assert.equal(calls, 1, 'checked on registration');
    await advance(9);
    assert.equal(calls, 1);
    await advance(1);
    assert.equal(calls, 2, 'again after the 10 ms startup interval');
    await advance(10);
    assert.equal(calls, 3);
    assert.equal(model.health('slow-0')?.status, 'healthy');
    // Once healthy, the service's own interval applies.
    await advance(59_999);
    assert.equal(calls, 3);
    await advance(1);
    assert.equal(calls, 4);
  } finally {
    checker.stop();
  }
});

test('checks follow the service interval, and stop when the instance leaves or the checker stops', async (t) => {
  let calls = 0;
  const probe = async (): Promise<CheckResult> => {
    calls++;
    return { ok: true };
  };
  const model = modelWith({ type: 'tcp', ...timing, intervalMs: 15 });
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const checker = new HealthChecker({ model, probe });
  checker.start();
  const advance = async (ms: number): Promise<void> => {
    t.mock.timers.tick(ms);
    await flush();
  };
  try {
    register(model, 'a-0', 1);
    register(model, 'a-1', 1);
    await flush();
    assert.equal(calls, 2, 'each checked on registration');
    for (let i = 1; i <= 3; i++) {
      await advance(14);
      assert.equal(calls, 2 * i, 'not before the 15 ms interval');
      await advance(1);
      assert.equal(calls, 2 * (i + 1), `both checked again at ${15 * i} ms`);
    }
    model.removeInstance('a-0');
    await advance(15);
    assert.equal(calls, 8 + 1, 'only the instance still there is checked');
  } finally {
    checker.stop();
  }
  const after = calls;
  // However long the clock runs now, no check follows: the checker left no timer behind.
  await advance(60_000);
  assert.equal(calls, after, 'no check after stop');
  assert.equal(model.health('a-0'), undefined);
});

test('nextHealth: unknown takes the first result at once; thresholds apply afterwards', () => {
  const start: HealthState = { status: 'unknown', consecutiveSuccesses: 0, consecutiveFailures: 0, since: 0 };
  const th = { healthyThreshold: 3, unhealthyThreshold: 3 };
  const bad = nextHealth(start, { ok: false, error: 'refused' }, th, 1);
  assert.deepEqual(bad, { status: 'unhealthy', lastCheck: 1, lastError: 'refused', consecutiveSuccesses: 0, consecutiveFailures: 1, since: 1 });
  let s: HealthState = bad;
  for (let i = 0; i < 2; i++) s = nextHealth(s, { ok: true }, th, 2 + i);
  assert.equal(s.status, 'unhealthy');
  s = nextHealth(s, { ok: true }, th, 5);
  assert.deepEqual([s.status, s.since, s.consecutiveSuccesses], ['healthy', 5, 3]);
});

test('checks that come due together start at most 32 per event-loop turn (issue 17)', async () => {
  // A registration storm: 100 instances due at once. Each turn of the injected scheduler
  // may start 32 probes, so they start over ceil(100 / 32) = 4 turns, none in the hello's own.
  const started: string[] = [];
  const probe = (target: { host: string; port: number }): Promise<CheckResult> => {
    started.push(`${target.host}:${target.port}`);
    return new Promise(() => {}); // in flight for the whole test
  };
  const turns: (() => void)[] = [];
  const timers = { setTimeout: () => 0, clearTimeout: () => {}, nextTurn: (fn: () => void) => void turns.push(fn) };
  const model = modelWith({ type: 'tcp', ...timing });
  const checker = new HealthChecker({ model, probe, timers });
  checker.start();
  try {
    for (let i = 0; i < 100; i++) register(model, `app-${i}`, 10_000 + i);
    model.removeInstance('app-99'); // left while it waited: never probed
    assert.equal(started.length, 0, 'no probe starts in the turn the instances registered in');
    const perTurn: number[] = [];
    while (turns.length > 0) {
      const before = started.length;
      for (const fn of turns.splice(0)) fn();
      perTurn.push(started.length - before);
    }
    assert.deepEqual(perTurn, [32, 32, 32, 3]);
    assert.equal(new Set(started).size, 99, 'each instance once');
  } finally {
    checker.stop();
  }
});

test('the probes per turn are configurable', async () => {
  let started = 0;
  const probe = (): Promise<CheckResult> => {
    started++;
    return new Promise(() => {});
  };
  const turns: (() => void)[] = [];
  const timers = { setTimeout: () => 0, clearTimeout: () => {}, nextTurn: (fn: () => void) => void turns.push(fn) };
  const model = modelWith({ type: 'tcp', ...timing });
  const checker = new HealthChecker({ model, probe, timers, probesPerTurn: 4 });
  checker.start();
  try {
    for (let i = 0; i < 10; i++) register(model, `app-${i}`, 10_000 + i);
    let count = 0;
    while (turns.length > 0) {
      for (const fn of turns.splice(0)) fn();
      count++;
    }
    assert.equal(started, 10);
    assert.equal(count, Math.ceil(10 / 4));
  } finally {
    checker.stop();
  }
});
