// Canaries the control plane runs for the dashboard: the same step runner and judge as
// `trellis canary` (src/canary/), wired to the control plane's own weights API and the
// proxies' metrics instead of the admin API over HTTP. The control plane keeps them so
// that a canary started from a browser goes on when the tab closes.
//
// Pause holds the step in force (the interval's clock stops; the weights stay); resume
// goes on; roll back stops the canary and puts the weights back where they were when it
// started, as Ctrl-C does for `trellis canary`. One canary per service at a time, and
// at most `maxCanaries` kept (finished ones are dropped first).
import { setTimeout as sleep } from 'node:timers/promises';
import { TrellisError } from '../../errors.js';
import type { Weights, WeightsChange, WeightsView } from '../../api/admin.js';
import type { CanaryView } from '../../api/dashboard.js';
import { msText, p99Ms, percent, versionReading, type CanaryLimits } from '../../canary/judge.js';
import { pickStable, runCanary, type CanaryEvent, type CanaryPlan } from '../../canary/step-runner.js';
import type { MeshModel } from '../model.js';
import type { WeightsApi } from '../admin/weights-api.js';
import { targetAddress } from '../admin/prometheus-sd.js';
import { getBounded } from './mesh-stats.js';

/** What the dashboard asks for; absent fields take `trellis canary`'s defaults. */
export interface CanaryRequest {
  readonly service: string;
  readonly to: string;
  readonly steps?: readonly number[];
  readonly intervalS?: number;
  readonly maxErrorRate?: number;
  readonly maxP99Ms?: number;
  readonly minRequests?: number;
}

export interface CanariesOptions {
  readonly model: MeshModel;
  readonly weights: WeightsApi;
  readonly log?: (line: string) => void;
  /** How long to wait for the callers' ACKs of each change (default 10 s). */
  readonly ackTimeoutMs?: number;
  readonly maxCanaries?: number;
}

const MAX_EVENTS = 50;
const TICK_MS = 200;

class Canary {
  state: CanaryView['state'] = 'running';
  step = -1;
  percent = 0;
  reason: string | null = null;
  endedAt: number | null = null;
  readonly startedAt = Date.now();
  readonly events: { at: string; text: string }[] = [];
  readonly abort = new AbortController();
  constructor(readonly plan: CanaryPlan) {}

  note(text: string): void {
    this.events.push({ at: new Date().toISOString(), text });
    if (this.events.length > MAX_EVENTS) this.events.shift();
  }

  view(): CanaryView {
    const p = this.plan;
    return {
      service: p.service,
      to: p.to,
      stable: p.stable,
      steps: p.steps,
      intervalS: p.intervalMs / 1000,
      state: this.state,
      step: this.step,
      percent: this.percent,
      startedAt: new Date(this.startedAt).toISOString(),
      endedAt: this.endedAt === null ? null : new Date(this.endedAt).toISOString(),
      events: [...this.events],
      reason: this.reason,
    };
  }
}

function usage(reason: string): TrellisError {
  return new TrellisError('TRELLIS_E_USAGE', { reason });
}

function number(v: unknown, name: string, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw usage(`${name} must be a number from ${min} to ${max}`);
  return v;
}

export class Canaries {
  readonly #o: CanariesOptions;
  readonly #canaries = new Map<string, Canary>();

  constructor(o: CanariesOptions) {
    this.#o = o;
  }

  list(): CanaryView[] {
    return [...this.#canaries.values()].map((c) => c.view());
  }

  /** Starts a canary; throws TRELLIS_E_USAGE (400) for a request that can't run, TRELLIS_E_NOT_FOUND for an unknown service. */
  start(body: unknown): CanaryView {
    const r = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    if (typeof r.service !== 'string' || typeof r.to !== 'string') throw usage('give {"service": "backend", "to": "v2"}');
    const service = r.service;
    const to = r.to;
    const existing = this.#canaries.get(service);
    if (existing && (existing.state === 'running' || existing.state === 'paused')) throw usage(`a canary of ${service} is already running`);
    const answer = this.#o.weights.view(service);
    if (answer.status !== 200) throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `no HTTP service named "${service}" to run a canary of` });
    const view = answer.body as WeightsView;
    if (!view.versions.includes(to)) throw usage(`${service} has no version "${to}"; its versions are: ${view.versions.join(', ')}`);
    const stable = pickStable(view, to);
    if (stable === undefined) throw usage(`${service} has no version besides ${to} to keep the rest of the traffic`);
    const stepsIn = r.steps ?? [10, 50, 100];
    if (!Array.isArray(stepsIn) || stepsIn.length === 0 || stepsIn.length > 20) throw usage('steps: 1 to 20 percents, rising');
    const steps: number[] = [];
    for (const s of stepsIn) {
      if (typeof s !== 'number' || !Number.isInteger(s) || s < 1 || s > 100 || (steps.length > 0 && s <= steps[steps.length - 1]!)) {
        throw usage('steps: whole percents from 1 to 100, rising');
      }
      steps.push(s);
    }
    const limits: CanaryLimits = {
      maxErrorRate: number(r.maxErrorRate, 'maxErrorRate', 0, 1, 0.01),
      maxP99Ms: number(r.maxP99Ms, 'maxP99Ms', 1, 600_000, 500),
      minRequests: Math.round(number(r.minRequests, 'minRequests', 1, 1_000_000, 20)),
    };
    const intervalMs = Math.round(number(r.intervalS, 'intervalS', 1, 3600, 30) * 1000);
    const plan: CanaryPlan = {
      service,
      to,
      stable,
      versions: view.versions,
      steps,
      intervalMs,
      limits,
      maxWaits: 2,
      start: view.weights ?? view.byInstances,
    };
    this.#evict();
    const c = new Canary(plan);
    this.#canaries.set(service, c);
    c.note(`canary of ${service} ${to} (stable ${stable}), steps ${steps.map((s) => `${s}%`).join(' ')}, ${msText(intervalMs)} each`);
    this.#run(c);
    return c.view();
  }

  /** Pauses, resumes or rolls back the service's canary; false when none runs. */
  control(service: string, action: 'pause' | 'resume' | 'rollback'): CanaryView | undefined {
    const c = this.#canaries.get(service);
    if (!c || (c.state !== 'running' && c.state !== 'paused')) return undefined;
    if (action === 'pause') {
      c.state = 'paused';
      c.note(`paused at ${c.plan.to} ${c.percent}%`);
    } else if (action === 'resume') {
      c.state = 'running';
      c.note('resumed');
    } else {
      c.note('roll back asked: putting the weights back where they were at the start');
      c.abort.abort();
    }
    return c.view();
  }

  /** Stops every canary (the control plane is closing); weights stay as they are. */
  close(): void {
    for (const c of this.#canaries.values()) {
      if (c.state === 'running' || c.state === 'paused') {
        c.state = 'stopped';
        c.endedAt = Date.now();
      }
    }
  }

  #evict(): void {
    const max = this.#o.maxCanaries ?? 32;
    for (const [service, c] of this.#canaries) {
      if (this.#canaries.size < max) break;
      if (c.state !== 'running' && c.state !== 'paused') this.#canaries.delete(service);
    }
    if (this.#canaries.size >= max) throw usage(`${max} canaries are running; wait for one to end`);
  }

  #run(c: Canary): void {
    const { service, to } = c.plan;
    const now = (): number => performance.now();
    runCanary(c.plan, {
      // Once the control plane closes, the canary stops where it is: nothing is written on the way out.
      setWeights: async (w) => (c.state === 'stopped' ? 'the control plane stopped; the weights stay as they are' : this.#setWeights(service, w)),
      read: async () => versionReading(await this.#readMetrics(), service, to),
      sleep: async (ms, signal) => {
        // The interval's clock runs only while not paused.
        let left = ms;
        while (left > 0) {
          if (c.state === 'stopped') throw new Error('stopped');
          const t0 = now();
          await sleep(Math.min(left, TICK_MS), undefined, { signal });
          if (c.state === 'running') left -= now() - t0;
        }
      },
      now,
      signal: c.abort.signal,
      report: (e) => this.#report(c, e),
    }).then(
      (outcome) => {
        c.endedAt = Date.now();
        if (c.state === 'stopped') return;
        if (outcome.kind === 'promoted') c.state = 'promoted';
        else if (outcome.kind === 'interrupted') c.state = 'rolled-back';
        else {
          c.state = 'rolled-back';
          c.reason = `at ${outcome.step}%: ${outcome.reason}${outcome.restoreError ? ` (setting ${to} to 0% failed: ${outcome.restoreError})` : ''}`;
          c.note(`rolled back ${c.reason}`);
        }
        this.#o.log?.(`control: canary of ${service} ${to}: ${c.state}${c.reason ? ` ${c.reason}` : ''}`);
      },
      (err: unknown) => {
        c.endedAt = Date.now();
        c.state = 'failed';
        c.reason = err instanceof Error ? err.message : String(err);
        c.note(`failed: ${c.reason}`);
      },
    );
  }

  #report(c: Canary, e: CanaryEvent): void {
    const { to, stable, steps } = c.plan;
    switch (e.type) {
      case 'step':
        c.step = e.index;
        c.percent = e.percent;
        return c.note(`step ${e.index + 1}/${steps.length}: ${to} ${e.percent}%, ${stable} ${100 - e.percent}%; ${e.ack}`);
      case 'judged': {
        const s = e.stats;
        const all = s.requests + s.failovers;
        const p99 = p99Ms(s);
        const verdict = e.verdict.kind === 'pass' ? 'pass' : e.verdict.kind === 'breach' ? `breach (${e.verdict.metric})` : 'too little traffic';
        return c.note(
          `step ${e.index + 1}: ${all} requests in ${e.seconds.toFixed(1)} s, error rate ${percent(all > 0 ? (s.errors + s.failovers) / all : 0)}, p99 ${p99 === undefined ? '-' : msText(p99)}: ${verdict}`,
        );
      }
      case 'rolled-back':
        c.percent = 0;
        return c.note(`rolling back: ${to} 0%, ${stable} 100%; ${e.ack}`);
      case 'promoting':
        return c.note(`promoting: ${e.ack}`);
      case 'promoted':
        c.percent = 100;
        return c.note(`promoted: ${to} takes 100%`);
      case 'interrupted':
        c.percent = c.plan.start[to] ?? 0;
        return c.note(`rolled back to the start weights; ${e.ack}`);
    }
  }

  /** Sets the weights through the weights API and waits for every caller's ACK. */
  async #setWeights(service: string, w: Weights): Promise<string> {
    const answer = await this.#o.weights.set(service, { weights: w });
    if (answer.status !== 200) {
      throw new Error(`the weights were refused: ${JSON.stringify(answer.body).slice(0, 300)}`);
    }
    const change = answer.body as WeightsChange;
    const deadline = Date.now() + (this.#o.ackTimeoutMs ?? 10_000);
    const t0 = Date.now();
    for (;;) {
      const pending = change.callers.filter((c) => (this.#o.model.proxy(c.id)?.ackedVersion ?? 0) < c.version);
      if (pending.length === 0) return `acknowledged by ${change.callers.length} caller(s) in ${Date.now() - t0} ms`;
      if (Date.now() > deadline) return `not yet acknowledged by ${pending.map((p) => p.id).join(', ')}`;
      await sleep(50);
    }
  }

  async #readMetrics(): Promise<{ id: string; text: string }[]> {
    const proxies = this.#o.model.proxies().filter((p) => p.connected);
    const read = await Promise.all(
      proxies.map(async (p) => {
        const address = targetAddress(p);
        if (address === undefined) return undefined;
        try {
          return { id: p.id, text: await getBounded(`http://${address}/metrics`, 2000, 8 * 1024 * 1024) };
        } catch {
          return undefined;
        }
      }),
    );
    return read.filter((r): r is { id: string; text: string } => r !== undefined);
  }
}
