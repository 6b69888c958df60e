// Test helpers for the load generator: servers on port 0 that are closed in after(),
// the `trellis` CLI run as a child process (asynchronously, so servers in this
// process keep answering while it runs), and a schedule clock the test moves by hand.
import { execFile } from 'node:child_process';
import http from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dueAt, type ScheduleClock, type SchedulePlan, type Ticking } from '../../src/loadgen/schedule.js';
import { eventually } from '../helpers/eventually.js';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const TRELLIS = join(REPO, 'bin', 'trellis.js');

/** Servers to close when the file's tests are done. */
export class Servers {
  readonly #all: net.Server[] = [];

  async listen<S extends net.Server>(server: S): Promise<{ server: S; port: number; url: string }> {
    this.#all.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    return { server, port, url: `http://127.0.0.1:${port}/` };
  }

  http(handler: http.RequestListener): Promise<{ server: http.Server; port: number; url: string }> {
    return this.listen(http.createServer(handler));
  }

  /** Closes every server, ending connections a stalled server still holds. */
  async close(): Promise<void> {
    await Promise.all(
      this.#all.map(
        (s) =>
          new Promise<void>((r) => {
            s.close(() => r());
            if ('closeAllConnections' in s && typeof s.closeAllConnections === 'function') s.closeAllConnections();
          }),
      ),
    );
  }
}

/** A JSON admin API answering GET path → body from `routes`, 404 otherwise. */
export function jsonApi(routes: Record<string, unknown>): http.RequestListener {
  return (req, res) => {
    const body = routes[req.url ?? ''];
    res.statusCode = body === undefined ? 404 : 200;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body ?? { code: 'TRELLIS_E_NOT_FOUND' }));
  };
}

/** Runs `trellis ARGS` and resolves with its exit code and output (bounded to 30 s). */
export function trellis(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TRELLIS, ...args], { cwd: REPO, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A schedule clock the test moves by hand (runLoad's `clock`): requests fall due only
 * as it advances, and latencies are measured on it, so a run is checked in schedule
 * time, exactly, however busy the machine is. Its times are its own (0 at creation);
 * `toPerformance` is the identity, so `onRequest`'s `intendedAt` is on it too.
 */
export class ManualClock implements ScheduleClock {
  #now = 0;
  #ticking: { plan: SchedulePlan; due: (j: number) => void; resolve: () => void } | undefined;
  #waiters: { at: number; resolve: () => void }[] = [];
  /** The plan of the latest run, once its schedule started. */
  plan: SchedulePlan | undefined;
  /** How many of its requests are due so far. */
  due = 0;

  now(): number {
    return this.#now;
  }

  toPerformance(ms: number): number {
    return ms;
  }

  tick(plan: SchedulePlan, due: (upTo: number) => void): Ticking {
    let resolve!: () => void;
    const done = new Promise<void>((r) => {
      resolve = r;
    });
    const ticking = { plan, due, resolve };
    this.#ticking = ticking;
    this.plan = plan;
    this.due = 0;
    this.#post();
    return {
      done,
      stop: async () => {
        if (this.#ticking === ticking) this.#ticking = undefined;
      },
    };
  }

  /** Moves time on by `ms`: what falls due in that span is posted at once, as the ticker thread does after a stall. */
  advance(ms: number): void {
    this.#now += ms;
    this.#post();
    for (const w of this.#waiters.filter((x) => x.at <= this.#now)) {
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.resolve();
    }
  }

  /** Resolves once the clock reads `t` or later (for a client the test writes itself). */
  at(t: number): Promise<void> {
    if (t <= this.#now) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ at: t, resolve }));
  }

  #post(): void {
    const t = this.#ticking;
    if (t === undefined) return;
    const j = dueAt(t.plan, this.due, this.#now);
    if (j > this.due) {
      this.due = j;
      t.due(j);
    }
    if (this.due >= t.plan.total) {
      this.#ticking = undefined;
      t.resolve();
    }
  }
}

/** The plan of the run on `clock`, once runLoad has opened its connections and started the schedule. */
export async function started(clock: ManualClock): Promise<SchedulePlan> {
  return eventually(() => {
    if (clock.plan === undefined) throw new Error('the schedule has not started');
    return clock.plan;
  });
}

/**
 * Moves `clock` 1 ms at a time until it reads `untilMs`. After each step, `onStep` runs
 * (e.g. a server releases what it held), and the step waits until `idle()` says client and
 * server have done all that instant allows (e.g. every due request answered), so each
 * thing happens at its own instant on the clock.
 */
export async function drive(clock: ManualClock, untilMs: number, idle: () => boolean, onStep: () => void = () => {}): Promise<void> {
  const settle = async (): Promise<void> => {
    // What the step set off (a resolved wait, a request to write) runs before the first look.
    await new Promise((r) => setImmediate(r));
    await eventually(idle, { intervalMs: 1, what: `the client and server to settle at ${clock.now()} ms` });
  };
  await settle(); // what the current instant already set off
  while (clock.now() < untilMs) {
    clock.advance(1);
    onStep();
    await settle();
  }
}
