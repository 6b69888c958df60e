// `trellis canary SERVICE --to VERSION`: progressive delivery as Flagger does it, with
// nothing else to install. This file reads the flags, checks them against the service's
// versions, wires the step runner (canary/step-runner.ts) to the control plane's admin
// API and the proxies' metrics, and prints what the runner reports; the steps and the
// judgement of each interval (canary/judge.ts) are the library's. Ctrl-C puts the
// weights back where they were at the start.
import { setTimeout as sleep } from 'node:timers/promises';
import { TrellisError } from '../errors.js';
import { ejectionText, msText, p99Ms, percent, versionReading, type CanaryLimits, type VersionReading, type WindowStats } from '../canary/judge.js';
import { pickStable, runCanary, type CanaryEvent, type CanaryPlan } from '../canary/step-runner.js';
import { readProxyMetrics } from '../loadgen/hop-scrape.js';
import { fetchFailure } from '../loadgen/mesh-target.js';
import { abortOnSigint, parseDuration, parseFlags } from './args.js';
import { ackText, adminApi, ADMIN_FLAGS, adminFlagsHelp, applyWeights, readWeights, weightsText, type Weights } from './weights-client.js';

export const help = `Usage: trellis canary SERVICE --to VERSION [options]

Moves the traffic of SERVICE to VERSION step by step, watching VERSION's error rate
and p99 latency as the sidecars of the services that call it measure them. At each
step VERSION gets the step's percent of the requests and the stable version the rest
(other versions 0); after each interval the step is judged on what was counted in that
interval only. On a breach VERSION goes back to 0% and the command exits 1 saying which
limit, the value, and at which step. After the last step VERSION gets 100% (promoted).

An interval with fewer than --min-requests requests to VERSION does not pass: the step
waits up to --max-waits more intervals for traffic, then the canary rolls back.
Ctrl-C puts the weights back where they were when the canary started.

The weights are written into the route files by the control plane, as with
\`trellis route weights\`. Errors are 5xx answers and requests that got no answer,
and requests for VERSION that its callers sent to another version because none of its
instances could take them (failover). A step in which outlier detection ejects an
instance of VERSION fails, whatever the traffic.
The p99 is estimated from the sidecars' latency histograms, as Prometheus'
histogram_quantile does, so it is as precise as their buckets (..., 50, 100, 150,
200, 250, 300, 400, 500, 750 ms, 1 s, ...): a limit on a bucket bound is exact.

Options:
  --to VERSION          the new version (required)
  --from VERSION        the stable version (default: the other version with the most
                        weight now)
  --steps LIST          percent of the requests for VERSION at each step (default 5,25,50,100)
  --interval D          how long each step is watched (default 30s)
  --max-error-rate P    highest error rate that passes, in percent (default 1%)
  --max-p99 D           highest p99 latency that passes (default 500ms)
  --min-requests N      fewest requests to VERSION an interval needs to be judged (default 20)
  --max-waits N         more intervals a step waits for --min-requests (default 2)
  --timeout D           how long to wait for the proxies to acknowledge each change (default 10s)
${adminFlagsHelp(24)}

Exit status: 0 when VERSION was promoted; 1 when the canary rolled back (or could not
go on); 2 for bad arguments, an unknown service or version; 130 after Ctrl-C.

Example:
  trellis canary backend --to v2 --steps 5,25,50,100 --interval 30s --max-error-rate 1% --max-p99 200ms
`;

/** Parses `5,25,50,100`: whole percents from 1 to 100, rising. */
export function parseSteps(text: string): number[] {
  const steps = text.split(',').map((s) => s.trim().replace(/%$/, ''));
  const out: number[] = [];
  for (const s of steps) {
    const n = /^\d+$/.test(s) ? Number(s) : NaN;
    if (!(n >= 1 && n <= 100))
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `--steps: "${s}" is not a whole percent from 1 to 100 (example: --steps 5,25,50,100)` });
    if (out.length > 0 && n <= out[out.length - 1]!)
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `--steps must rise: ${n} comes after ${out[out.length - 1]}` });
    out.push(n);
  }
  return out;
}

/** Parses `1%`, `0.5%` or `1` (percent) into a fraction. */
export function parsePercent(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(text.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 0 && n <= 100)) throw new TrellisError('TRELLIS_E_USAGE', { reason: `${flag} expects a percent from 0 to 100, e.g. 1% or 0.5%, got "${text}"` });
  return n / 100;
}

function wholeNumber(text: string, flag: string, min: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min)) throw new TrellisError('TRELLIS_E_USAGE', { reason: `${flag} expects a whole number of at least ${min}, got "${text}"` });
  return n;
}

/** "150 requests in 30.0 s, error rate 0% (max 1%), p99 12.3 ms (max 200 ms)". */
export function statsText(s: WindowStats, seconds: number, l: CanaryLimits): string {
  const requests = s.requests + s.failovers;
  const rate = requests > 0 ? (s.errors + s.failovers) / requests : 0;
  const p99 = p99Ms(s);
  const elsewhere = s.failovers > 0 ? ` (${s.failovers} sent to other versions)` : '';
  const ejected = Object.keys(s.ejections).length > 0 ? `, ejected ${ejectionText(s.ejections)}` : '';
  return (
    `${requests} requests${elsewhere} in ${seconds.toFixed(1)} s, error rate ${percent(rate)} (max ${percent(l.maxErrorRate)}), ` +
    `p99 ${p99 === undefined ? '-' : msText(p99)} (max ${msText(l.maxP99Ms)})${ejected}`
  );
}

/** The line each runner event is shown as. */
export function eventText(e: CanaryEvent, plan: CanaryPlan): string {
  const { service, to, stable, steps, limits } = plan;
  const label = (index: number, pct: number): string => `step ${index + 1}/${steps.length} (${to} ${pct}%)`;
  switch (e.type) {
    case 'step':
      return `${label(e.index, e.percent)}: ${to} ${e.percent}%, ${stable} ${100 - e.percent}%; ${e.ack}`;
    case 'judged': {
      const line = `${label(e.index, e.percent)}: ${statsText(e.stats, e.seconds, limits)}`;
      const v = e.verdict;
      if (v.kind === 'pass') return `${line}: pass`;
      if (v.kind === 'breach') return `${line}: ${v.metric === 'ejection' ? `${to} ejected by outlier detection` : `${v.metric} over the limit`}`;
      if (e.waiting !== undefined) {
        return `${line}: too little traffic (fewer than --min-requests ${limits.minRequests}); waiting another ${msText(plan.intervalMs)} (${e.waiting} of ${plan.maxWaits})`;
      }
      return `${line}: too little traffic`;
    }
    case 'rolled-back':
      return `rolling back: ${to} 0%, ${stable} 100%; ${e.ack}`;
    case 'promoting':
      return `promoting: ${e.ack}`;
    case 'promoted':
      return `promoted: ${service} ${to} takes 100% of the requests (${weightsText(e.weights)})`;
    case 'interrupted':
      return `interrupted: putting ${service} back to ${weightsText(plan.start)}; ${e.ack}`;
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      ...ADMIN_FLAGS,
      to: { type: 'string' },
      from: { type: 'string' },
      steps: { type: 'string', default: '5,25,50,100' },
      interval: { type: 'string', default: '30s' },
      'max-error-rate': { type: 'string', default: '1%' },
      'max-p99': { type: 'string', default: '500ms' },
      'min-requests': { type: 'string', default: '20' },
      'max-waits': { type: 'string', default: '2' },
      timeout: { type: 'string', default: '10s' },
    },
    true,
    'canary',
  );
  if (positionals.length !== 1) throw new TrellisError('TRELLIS_E_USAGE', { reason: 'name one service, e.g. `trellis canary backend --to v2`' });
  const service = positionals[0]!;
  const to = values.to;
  if (!to) throw new TrellisError('TRELLIS_E_USAGE', { reason: 'say which version to move to with --to VERSION' });
  const steps = parseSteps(values.steps);
  const intervalMs = parseDuration(values.interval);
  if (intervalMs <= 0) throw new TrellisError('TRELLIS_E_USAGE', { reason: '--interval must be above 0' });
  const limits: CanaryLimits = {
    maxErrorRate: parsePercent(values['max-error-rate'], '--max-error-rate'),
    maxP99Ms: parseDuration(values['max-p99']),
    minRequests: wholeNumber(values['min-requests'], '--min-requests', 1),
  };
  const maxWaits = wholeNumber(values['max-waits'], '--max-waits', 0);
  const timeoutMs = parseDuration(values.timeout);
  const base = await adminApi(values);

  const view = await readWeights(base, service);
  if (!view.versions.includes(to)) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `${service} has no version "${to}"; its versions are: ${view.versions.join(', ')}` });
  }
  const stable = values.from ?? pickStable(view, to);
  if (stable === undefined) throw new TrellisError('TRELLIS_E_USAGE', { reason: `${service} has no version besides ${to} to keep the rest of the traffic` });
  if (!view.versions.includes(stable) || stable === to) {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `--from must be another version of ${service} (${view.versions.filter((v) => v !== to).join(', ')}), got "${stable}"`,
    });
  }
  const start = view.weights ?? view.byInstances;
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  if (view.weights && view.versions.every((v) => v === to || view.weights![v] === 0)) {
    // Steps would start by moving traffic back to the stable version: surely not what was meant.
    out(`${service} ${to} already takes every request (${weightsText(view.weights)}); nothing to do`);
    return 0;
  }
  out(
    `canary of ${service} ${to} (stable ${stable}), steps ${steps.map((s) => `${s}%`).join(' ')}, ${msText(intervalMs)} each; ` +
      `passes with error rate ≤ ${percent(limits.maxErrorRate)}, p99 ≤ ${msText(limits.maxP99Ms)}, at least ${limits.minRequests} requests`,
  );
  out(`weights at the start: ${weightsText(start)}`);

  const interrupt = abortOnSigint();
  const plan: CanaryPlan = { service, to, stable, versions: view.versions, steps, intervalMs, limits, maxWaits, start };
  try {
    const outcome = await runCanary(plan, {
      setWeights: async (w: Weights) => ackText(service, await applyWeights(base, service, w, timeoutMs)),
      read: async (): Promise<VersionReading> => {
        try {
          return versionReading(await readProxyMetrics(base), service, to);
        } catch (err) {
          throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: base.url, reason: `reading the proxies' metrics: ${fetchFailure(err)}` });
        }
      },
      sleep: (ms, signal) => sleep(ms, undefined, { signal }),
      now: () => performance.now(),
      signal: interrupt.signal,
      report: (e) => out(eventText(e, plan)),
    });
    if (outcome.kind === 'promoted') return 0;
    if (outcome.kind === 'interrupted') return 130;
    const now =
      outcome.restoreError === undefined
        ? weightsText(outcome.weights)
        : `unknown, because setting ${to} to 0% failed (${outcome.restoreError}); run \`trellis route weights ${service} ${stable}=100\``;
    throw new TrellisError('TRELLIS_E_CANARY_ROLLED_BACK', { service, version: to, step: `${outcome.step}%`, reason: outcome.reason, weights: now });
  } finally {
    interrupt.dispose();
  }
}
