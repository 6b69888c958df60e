// Active health checks: every registered instance's app address is probed (HTTP GET or
// TCP connect) on its service's interval, and the consecutive results move it between
// `unknown`, `healthy` and `unhealthy`. Only healthy instances are routable, so the first
// check runs the moment an instance registers, and checks repeat quickly until it first
// turns healthy (an app often starts listening a little after its sidecar says hello).
// It sits in sources/ because, like the config watcher, it feeds the model (each
// instance's health) and compiles nothing; the compiler reads what it wrote.
import http from 'node:http';
import net from 'node:net';
import type { HostPort } from '../../api/protocol.js';
import { DEFAULT_HEALTH, type HealthConfig } from './mesh-config.js';
import type { HealthState, Instance, MeshModel } from '../model.js';

export interface CheckResult {
  readonly ok: boolean;
  readonly error?: string;
  /**
   * The probe timed out only as far as a checker that was not watching can tell: its
   * own event loop was blocked past the deadline (a long compile, a GC pause), so the
   * app may well have answered in time. Such a result moves no health state.
   */
  readonly inconclusive?: boolean;
}

/** Probes one address once; never rejects. */
export type Probe = (target: HostPort, health: HealthConfig) => Promise<CheckResult>;

/** The timer functions the checker schedules with; tests may pass manual ones. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Runs `fn` on a later turn of the event loop (default: setImmediate); the checker starts its probes in batches with it. */
  nextTurn?(fn: () => void): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Probes started in one turn of the event loop, at most (issue 17). Instances that
 * registered together come due together: a registration storm of 1,000 proxies made
 * rounds of hundreds of probes start in one timer callback, each a socket and a
 * request, holding the loop for tens of milliseconds; the rest wait for the next turn
 * (setImmediate), after the loop has read its sockets. A probe's deadline starts when it
 * does, so waiting in line costs it nothing.
 */
export const DEFAULT_PROBES_PER_TURN = 32;

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * How late a probe's timer may fire before the checker counts itself as stalled: a
 * timer runs late only when this thread's event loop was blocked, and a timeout it was
 * not watching for proves nothing about the app.
 */
const STALL_MS = 100;

/**
 * A probe's deadline that the checker's own stalls cannot fake (issue 17: thousands of
 * healthy apps were marked unhealthy while the control plane's event loop was blocked).
 * When the timer fires, the verdict waits for `setImmediate`: after a blocked stretch,
 * Node runs expired timers before it polls the sockets, so an answer that arrived
 * meanwhile is read first and wins. A timer that fired more than {@link STALL_MS} late
 * makes the timeout inconclusive. `restart()` starts the deadline anew (when the
 * connection opens: the timeout runs from the request's write, not the probe's start).
 */
class ProbeDeadline {
  readonly #ms: number;
  readonly #onTimeout: (inconclusive: boolean) => void;
  #timer: NodeJS.Timeout | undefined;
  #due = 0;
  /** Bumped by restart() and clear(), so a verdict pending from an earlier timer is dropped. */
  #generation = 0;

  constructor(ms: number, onTimeout: (inconclusive: boolean) => void) {
    this.#ms = ms;
    this.#onTimeout = onTimeout;
    this.restart();
  }

  restart(): void {
    this.clear();
    const generation = this.#generation;
    this.#due = performance.now() + this.#ms;
    this.#timer = setTimeout(() => {
      const late = performance.now() - this.#due;
      setImmediate(() => {
        if (generation === this.#generation) this.#onTimeout(late > STALL_MS);
      });
    }, this.#ms);
  }

  clear(): void {
    this.#generation++;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** `GET path` against the app; healthy on the expected status, or on any 2xx if none is set. */
export function probeHttp(target: HostPort, path: string, expectedStatus: number | undefined, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: CheckResult): void => {
      if (done) return;
      done = true;
      deadline.clear();
      resolve(result);
    };
    const req = http.request(
      { host: target.host, port: target.port, path, method: 'GET', agent: false, headers: { 'user-agent': 'trellis-health-check', connection: 'close' } },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        const ok = expectedStatus === undefined ? status >= 200 && status < 300 : status === expectedStatus;
        finish(ok ? { ok } : { ok, error: `GET ${path} answered ${status}, expected ${expectedStatus ?? '2xx'}` });
        req.destroy();
      },
    );
    const deadline = new ProbeDeadline(timeoutMs, (inconclusive) => {
      finish({ ok: false, error: `GET ${path}: no response within ${timeoutMs} ms`, ...(inconclusive ? { inconclusive } : {}) });
      req.destroy();
    });
    // The request is written once the connection opens: from then on the app has timeoutMs to answer.
    req.once('socket', (socket) => socket.once('connect', () => !done && deadline.restart()));
    req.on('error', (err) => finish({ ok: false, error: `GET ${path}: ${describe(err)}` }));
    req.end();
  });
}

/** Healthy when a TCP connection opens within the timeout. */
export function probeTcp(target: HostPort, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: CheckResult): void => {
      if (done) return;
      done = true;
      deadline.clear();
      socket.destroy();
      resolve(result);
    };
    const socket = net.connect({ host: target.host, port: target.port });
    const deadline = new ProbeDeadline(timeoutMs, (inconclusive) =>
      finish({ ok: false, error: `tcp connect: no answer within ${timeoutMs} ms`, ...(inconclusive ? { inconclusive } : {}) }),
    );
    socket.once('connect', () => finish({ ok: true }));
    socket.once('error', (err) => finish({ ok: false, error: `tcp ${describe(err)}` }));
  });
}

/** The probe the service's health config asks for. */
export const defaultProbe: Probe = (target, health) =>
  health.type === 'http' ? probeHttp(target, health.path, health.status, health.timeoutMs) : probeTcp(target, health.timeoutMs);

/**
 * The health state after one more result. An `unknown` instance takes the first
 * result's side at once; after that, `healthyThreshold` successes in a row make it
 * healthy and `unhealthyThreshold` failures in a row make it unhealthy.
 */
export function nextHealth(
  prev: HealthState,
  result: CheckResult,
  thresholds: Pick<HealthConfig, 'healthyThreshold' | 'unhealthyThreshold'>,
  now: number,
): HealthState {
  const consecutiveSuccesses = result.ok ? prev.consecutiveSuccesses + 1 : 0;
  const consecutiveFailures = result.ok ? 0 : prev.consecutiveFailures + 1;
  let status = prev.status;
  if (status === 'unknown') status = result.ok ? 'healthy' : 'unhealthy';
  else if (result.ok && consecutiveSuccesses >= Math.max(1, thresholds.healthyThreshold)) status = 'healthy';
  else if (!result.ok && consecutiveFailures >= Math.max(1, thresholds.unhealthyThreshold)) status = 'unhealthy';
  return {
    status,
    lastCheck: now,
    ...(result.ok ? {} : { lastError: result.error ?? 'check failed' }),
    consecutiveSuccesses,
    consecutiveFailures,
    since: status === prev.status ? prev.since : now,
  };
}

export interface HealthCheckerOptions {
  model: MeshModel;
  log?: (line: string) => void;
  probe?: Probe;
  timers?: Timers;
  /** false: no timers at all; tests drive checks with {@link HealthChecker.checkNow}. */
  schedule?: boolean;
  /** Called on each change of an instance's status (metrics: trellis_control_health_transitions_total). */
  onTransition?: (from: HealthState['status'], to: HealthState['status']) => void;
  /** Interval while an instance has never been healthy (capped by its service's interval). */
  startupIntervalMs?: number;
  /** How long after registration the startup interval applies. */
  startupWindowMs?: number;
  /** Probes started in one event-loop turn at most (default {@link DEFAULT_PROBES_PER_TURN}). */
  probesPerTurn?: number;
}

interface Tracked {
  readonly instance: Instance;
  timer?: unknown;
  everHealthy: boolean;
}

export class HealthChecker {
  readonly #model: MeshModel;
  readonly #log: (line: string) => void;
  readonly #probe: Probe;
  readonly #timers: Timers;
  readonly #schedule: boolean;
  readonly #onTransition?: (from: HealthState['status'], to: HealthState['status']) => void;
  readonly #startupIntervalMs: number;
  readonly #startupWindowMs: number;
  readonly #tracked = new Map<string, Tracked>();
  #unsubscribe: (() => void)[] = [];
  readonly #probesPerTurn: number;
  readonly #nextTurn: (fn: () => void) => void;
  /** Checks due, waiting for their turn (#startDue); consumed from #dueHead. */
  #due: Tracked[] = [];
  #dueHead = 0;
  #turnScheduled = false;

  constructor(opts: HealthCheckerOptions) {
    this.#model = opts.model;
    this.#log = opts.log ?? (() => {});
    this.#probe = opts.probe ?? defaultProbe;
    this.#timers = opts.timers ?? realTimers;
    this.#schedule = opts.schedule ?? true;
    this.#onTransition = opts.onTransition;
    this.#startupIntervalMs = opts.startupIntervalMs ?? 200;
    this.#startupWindowMs = opts.startupWindowMs ?? 30_000;
    this.#probesPerTurn = Math.max(1, Math.floor(opts.probesPerTurn ?? DEFAULT_PROBES_PER_TURN));
    const nextTurn = this.#timers.nextTurn;
    this.#nextTurn = nextTurn ? (fn) => nextTurn.call(this.#timers, fn) : (fn) => void setImmediate(fn);
  }

  /** Starts checking every instance in the model, now and as they register. */
  start(): void {
    this.#unsubscribe = [
      this.#model.on('instance-added', (instance) => this.#track(instance)),
      this.#model.on('instance-removed', (instance) => this.#untrack(instance)),
    ];
    for (const instance of this.#model.instances()) this.#track(instance);
  }

  stop(): void {
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    for (const t of this.#tracked.values()) if (t.timer !== undefined) this.#timers.clearTimeout(t.timer);
    this.#tracked.clear();
    this.#due = [];
    this.#dueHead = 0;
  }

  /** Runs one check of an instance now and returns its new health (undefined if it is gone). */
  async checkNow(id: string): Promise<HealthState | undefined> {
    const instance = this.#model.instance(id);
    if (!instance) return undefined;
    const health = this.#model.service(instance.service)?.health ?? DEFAULT_HEALTH;
    const result: CheckResult = instance.app ? await this.#probe(instance.app, health) : { ok: true };
    // The instance may have deregistered (or re-registered) while the probe ran.
    if (this.#model.instance(id) !== instance) return undefined;
    const prev = this.#model.health(id);
    if (!prev) return undefined;
    // The checker stalled past the deadline: it cannot tell a slow app from its own pause.
    if (result.inconclusive === true) return prev;
    const next = nextHealth(prev, result, health, this.#model.now());
    this.#model.setHealth(id, next);
    if (next.status !== prev.status) {
      this.#onTransition?.(prev.status, next.status);
      this.#log(`control: health: ${id} (${instance.service}) ${prev.status} -> ${next.status}${next.lastError ? `: ${next.lastError}` : ''}`);
    }
    return next;
  }

  #track(instance: Instance): void {
    this.#untrack(instance);
    const tracked: Tracked = { instance, everHealthy: false };
    this.#tracked.set(instance.id, tracked);
    if (this.#schedule) this.#enqueue(tracked);
  }

  #untrack(instance: Instance): void {
    const tracked = this.#tracked.get(instance.id);
    if (!tracked) return;
    if (tracked.timer !== undefined) this.#timers.clearTimeout(tracked.timer);
    this.#tracked.delete(instance.id);
  }

  async #run(tracked: Tracked): Promise<void> {
    tracked.timer = undefined;
    const state = await this.checkNow(tracked.instance.id);
    if (this.#tracked.get(tracked.instance.id) !== tracked || !state) return;
    if (state.status === 'healthy') tracked.everHealthy = true;
    tracked.timer = this.#timers.setTimeout(() => {
      tracked.timer = undefined;
      this.#enqueue(tracked);
    }, this.#intervalFor(tracked));
  }

  /** Queues a check; the queue's probes start on the next turn, {@link #probesPerTurn} a turn. */
  #enqueue(tracked: Tracked): void {
    // Nothing to probe (a gateway with no app): its check is settled at once, in this
    // turn, as before, so the push its registration starts already sees it healthy.
    if (tracked.instance.app === undefined) return void this.#run(tracked);
    this.#due.push(tracked);
    if (this.#turnScheduled) return;
    this.#turnScheduled = true;
    this.#nextTurn(() => this.#startDue());
  }

  #startDue(): void {
    this.#turnScheduled = false;
    const due = this.#due;
    let started = 0;
    while (started < this.#probesPerTurn && this.#dueHead < due.length) {
      const tracked = due[this.#dueHead++]!;
      // Untracked (or tracked anew) while it waited: that one is not due.
      if (this.#tracked.get(tracked.instance.id) !== tracked) continue;
      started++;
      void this.#run(tracked);
    }
    if (this.#dueHead < due.length) {
      this.#turnScheduled = true;
      this.#nextTurn(() => this.#startDue());
    } else if (due === this.#due) {
      this.#due = [];
      this.#dueHead = 0;
    }
  }

  #intervalFor(tracked: Tracked): number {
    const interval = (this.#model.service(tracked.instance.service)?.health ?? DEFAULT_HEALTH).intervalMs;
    const starting = !tracked.everHealthy && this.#model.now() - tracked.instance.registeredAt < this.#startupWindowMs;
    return starting ? Math.min(interval, this.#startupIntervalMs) : interval;
  }
}
