// `trellis bench TARGET`: a rate sweep that finds where a target stops meeting its SLO.
// Each step is one constant-rate, open-model run of the load engine
// (src/loadgen/run.ts); the search is src/loadgen/sweep.ts and the table, plot and
// HTML report src/loadgen/sweep-report.ts. This file is flags and output.
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { formatProgress } from '../loadgen/result.js';
import { runLoad } from '../loadgen/run.js';
import { runSweep, type Slo, type SweepOptions, type SweepResult } from '../loadgen/sweep.js';
import { countersDelta, hopStep, nameBottleneck, type HopStep, type MeshCounters } from '../loadgen/hop-metrics.js';
import { openMeshProbe, type MeshProbe } from '../loadgen/hop-scrape.js';
import {
  formatBottleneck,
  formatHopLine,
  formatStepHeader,
  formatStepRow,
  formatSweepSummary,
  renderSweepHtml,
  renderSweepSvg,
  type SweepHops,
  type SweepReportInfo,
} from '../loadgen/sweep-report.js';
import {
  durationFlag,
  joinNegativeValues,
  numberFlag,
  resolveTargetFlags,
  controlTarget,
  TARGET_FLAGS,
  TARGET_FLAGS_HELP,
  TARGET_NUMERIC_FLAGS,
  usageError,
} from './target-flags.js';
import { abortOnSigint, parseFlags } from './args.js';

export const help = `Usage: trellis bench TARGET [options]

Finds the saturation point of TARGET: the highest request rate at which the success
rate stays at or above --min-success and p99 latency at or below --slo-p99. Each step
is a constant-rate, open-model run (as \`trellis load\`: latency from each request's
intended send time). The rate grows ×2 from --start-rate until a step misses the SLO
or the target falls below 95% of the asked rate, then is bisected between the last
good and the first bad rate until they are within --precision. A first step that
misses is run once more (\`repeat\`: the first runs cold) before the rate halves down.

TARGET and its flags are as for \`trellis load\`: an http:// URL on this machine, or a
service of the running mesh (backend/api/products), with --from to load it through a
calling service's sidecar.

For a service target, every sidecar's /metrics is read before and after each step, and
each HTTP service gets an account of the step: its time inside (inbound request time
minus its own outbound calls, per request, and as a share of end-to-end), its error
rate and its CPU (sidecar, and app where the sidecar can tell: Linux); so does the
entry proxy (the --from sidecar or the ingress: end-to-end minus the target's inbound
time), and the machine's CPU is noted. A line under each step names the slowest hop;
the summary names the bottleneck, the hop that saturates first: the deepest to fail,
or one whose process runs at ~1 core, or else the one whose time inside grows most
from its least below the knee to the knee (the lowest rate missing the SLO; a rate
run twice counts by its last run). Readings cover each step's measured window, not its warm-up.
--no-hops skips this.

Sweep:
  --slo-p99 D        highest acceptable p99 (default 100ms)
  --min-success P    lowest acceptable share of 2xx answers, in percent (default 99.9)
  --start-rate N     first rate, req/s (default 100)
  --max-rate N       no step asks for more, req/s (default 100000)
  --precision P      stop when first bad ≤ last good × (1 + P%) (default 10)
  --max-steps N      steps in all, search up and bisection together (default 12)
  --step-duration D  measured time of each step (default 5s)
  --warmup D         unrecorded load at the step's rate before each step (default 1s)

Request:
${TARGET_FLAGS_HELP}

Output:
  --json             print one JSON object instead of the table
  --report FILE      write the HTML report here (default trellis-bench-<time>.html)
  --no-report        write no HTML report
  --svg FILE         also write the plot alone as SVG
  --no-hops          do not read the sidecars' metrics (no per-hop account, no bottleneck)

With many fast answers per second the client's --connections can be the limit: raise
it when the achieved rate stalls while latency stays low. Ctrl-C stops the sweep and
reports the steps done.

Exit status: 0 when the sweep ran (whether or not a rate met the SLO), 1 when the mesh
could not be asked or a file could not be written, 2 for bad flags or an unknown target.

Examples:
  trellis bench http://127.0.0.1:8080/ --slo-p99 50ms
  trellis bench backend/api/products --from frontend --step-duration 3s
`;

const COMMAND = 'bench';

/** A percentage, with or without %, in (0, 100] (or (0, 100) for a precision). */
function percentFlag(flag: string, value: string, max: number, inclusive: boolean, example: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(value.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!(n > 0) || n > max || (!inclusive && n === max)) {
    throw usageError(COMMAND, `${flag} must be a percentage above 0 and ${inclusive ? 'at most' : 'below'} ${max}, such as ${example}; got "${value}"`);
  }
  return n / 100;
}

const BENCH_NUMERIC_FLAGS = new Set([
  ...TARGET_NUMERIC_FLAGS,
  '--slo-p99',
  '--min-success',
  '--start-rate',
  '--max-rate',
  '--precision',
  '--max-steps',
  '--step-duration',
  '--warmup',
]);

/** Pause between steps. */
const SETTLE_MS = 250;
/**
 * After a step over its SLO, the target may still be working through what queued up
 * (requests the client gave up on are not necessarily dropped by the target): wait
 * about as long as the slowest answer took, bounded, so the next step starts clean.
 */
const MAX_COOLDOWN_MS = 3000;

/** This machine's CPU times and the client's own, to tell a saturated machine from a saturated hop. */
function cpuTimes(): { busyMs: number; totalMs: number; cores: number; clientUs: number } {
  let busyMs = 0,
    totalMs = 0;
  const all = cpus();
  for (const c of all) {
    const t = c.times;
    busyMs += t.user + t.nice + t.sys + t.irq;
    totalMs += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  const u = process.cpuUsage();
  return { busyMs, totalMs, cores: all.length, clientUs: u.user + u.system };
}

/** A step's hop account in --json: ms and cores rounded for reading, null where unknown. */
function hopsJson(h: HopStep | undefined): unknown {
  if (!h) return null;
  const r = (n: number | undefined, d = 3): number | null => (n === undefined ? null : Number(n.toFixed(d)));
  return {
    seconds: r(h.seconds),
    e2eMs: r(h.e2eMs),
    e2eRequests: h.e2eRequests,
    clientMs: r(h.clientMs),
    machine: h.machine ? { cores: h.machine.cores, busyCores: r(h.machine.busyCores), clientCores: r(h.machine.clientCores) } : null,
    services: h.services.map((x) => ({
      service: x.service,
      role: x.role,
      requests: x.requests,
      insideMs: r(x.insideMs),
      share: r(x.share, 4),
      errorRate: r(x.errorRate, 4),
      sidecarCores: r(x.sidecarCores),
      appCores: r(x.appCores),
      peak: x.peak ? { ...x.peak, cores: r(x.peak.cores) } : null,
    })),
  };
}

function defaultReportName(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `trellis-bench-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}.html`;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    joinNegativeValues(argv, BENCH_NUMERIC_FLAGS),
    {
      ...TARGET_FLAGS,
      'slo-p99': { type: 'string', default: '100ms' },
      'min-success': { type: 'string', default: '99.9' },
      'start-rate': { type: 'string', default: '100' },
      'max-rate': { type: 'string', default: '100000' },
      precision: { type: 'string', default: '10' },
      'max-steps': { type: 'string', default: '12' },
      'step-duration': { type: 'string', default: '5s' },
      warmup: { type: 'string', default: '1s' },
      json: { type: 'boolean', default: false },
      report: { type: 'string' },
      'no-report': { type: 'boolean', default: false },
      svg: { type: 'string' },
      'no-hops': { type: 'boolean', default: false },
    },
    true,
    COMMAND,
  );

  // Sweep flags first: they need no mesh.
  const slo: Slo = {
    p99Ms: durationFlag(COMMAND, '--slo-p99', values['slo-p99'], false),
    minSuccess: percentFlag('--min-success', values['min-success'], 100, true, '99.9 or 99%'),
    minAchieved: 0.95,
  };
  const startRate = numberFlag(COMMAND, '--start-rate', values['start-rate'], false, 'requests per second');
  const maxRate = numberFlag(COMMAND, '--max-rate', values['max-rate'], false, 'requests per second');
  if (startRate > maxRate) throw usageError(COMMAND, `--start-rate (${startRate}) is above --max-rate (${maxRate})`);
  const precision = percentFlag('--precision', values.precision, 100, false, '10 or 5%');
  const maxSteps = numberFlag(COMMAND, '--max-steps', values['max-steps'], true, 'steps');
  if (maxSteps > 100) throw usageError(COMMAND, `--max-steps must be 100 or less; got "${values['max-steps']}"`);
  const stepMs = durationFlag(COMMAND, '--step-duration', values['step-duration'], false);
  const warmupMs = durationFlag(COMMAND, '--warmup', values.warmup, true);
  // A step must schedule enough requests for its success rate to mean something.
  const minRate = Math.max(1, 10 / (stepMs / 1000));
  if (startRate < minRate)
    throw usageError(
      COMMAND,
      `--start-rate ${startRate} sends fewer than 10 requests in a ${values['step-duration']} step; raise --start-rate or --step-duration`,
    );
  if (values.report !== undefined && values['no-report']) throw usageError(COMMAND, 'give --report FILE or --no-report, not both');
  if (values.report === '' || values.svg === '') throw usageError(COMMAND, '--report and --svg need a file name');

  const t = await resolveTargetFlags(COMMAND, positionals, values);
  const startedAt = new Date();
  const reportPath = values['no-report'] ? undefined : resolve(values.report ?? defaultReportName(startedAt));
  const svgPath = values.svg === undefined ? undefined : resolve(values.svg);

  const opts: SweepOptions = { startRate, maxRate, precision, maxSteps, minRate, slo };
  const info: SweepReportInfo = {
    target: t.url,
    via: t.via,
    method: t.method,
    protocol: t.http2 ? 'h2' : 'http/1.1',
    connections: t.connections,
    stepDurationMs: stepMs,
    warmupMs,
    slo,
    startedAt,
  };

  // The per-hop account needs a mesh: service targets only.
  const targetService = t.via !== undefined && !values['no-hops'] ? positionals[0]!.split('/')[0]! : undefined;
  let probe: MeshProbe | undefined;
  if (targetService !== undefined) {
    try {
      probe = await openMeshProbe(await controlTarget(values), targetService, values.from);
    } catch (err) {
      process.stderr.write(`trellis bench: cannot read the mesh's services for the per-hop account (${(err as Error).message}); running without it\n`);
    }
  }
  const hopSteps = new Map<number, HopStep>();
  let lastHop: HopStep | undefined;
  const readMesh = async (): Promise<MeshCounters | undefined> => {
    try {
      return await probe?.read();
    } catch {
      return undefined;
    }
  };

  const live = process.stderr.isTTY === true && !values.json;
  const interrupt = abortOnSigint();
  if (!values.json) {
    process.stderr.write(
      `trellis bench: ${t.method} ${t.url}${t.via ? ` (${t.via})` : ''}; SLO p99 ≤ ${slo.p99Ms} ms, success ≥ ${Number((slo.minSuccess * 100).toFixed(3))}%; steps of ${(stepMs / 1000).toFixed(1)}s after ${(warmupMs / 1000).toFixed(1)}s warm-up\n`,
    );
    process.stdout.write(formatStepHeader());
  }
  let result: SweepResult;
  let previous: { ok: boolean; maxLatencyMs: number } | undefined;
  try {
    result = await runSweep(
      opts,
      async (rate) => {
        if (previous !== undefined) {
          const pause = previous.ok ? SETTLE_MS : Math.min(MAX_COOLDOWN_MS, Math.max(SETTLE_MS, previous.maxLatencyMs));
          await new Promise((r) => setTimeout(r, pause));
        }
        // The readings start where the measured window does, so the warm-up (when pools
        // fill and the JIT settles) is not counted in any hop's share.
        let beforeRead: Promise<MeshCounters | undefined> | undefined;
        let cpuBefore = cpuTimes();
        let measure: Awaited<ReturnType<typeof runLoad>>;
        try {
          measure = await runLoad({
            url: t.url,
            method: t.method,
            headers: t.headers,
            body: t.body,
            http2: t.http2,
            connections: t.connections,
            timeoutMs: t.timeoutMs,
            rate,
            durationMs: stepMs,
            warmupMs,
            signal: interrupt.signal,
            onMeasureStart: () => {
              cpuBefore = cpuTimes();
              beforeRead = readMesh();
            },
            onProgress: live ? (p) => process.stderr.write(`\r\x1b[K  ${rate} req/s: ${formatProgress(p)}`) : undefined,
          });
        } finally {
          if (live) process.stderr.write('\r\x1b[K');
        }
        const cpuAfter = cpuTimes();
        const before = await beforeRead;
        const after = before ? await readMesh() : undefined;
        if (probe && before && after) {
          const seconds = (after.at - before.at) / 1000;
          const total = cpuAfter.totalMs - cpuBefore.totalMs;
          lastHop = {
            ...hopStep(probe.topology, countersDelta(before, after), seconds, { requests: measure.completed, meanMs: measure.latencyUs.mean / 1000 }),
            ...(total > 0 && seconds > 0
              ? {
                  machine: {
                    cores: cpuAfter.cores,
                    busyCores: ((cpuAfter.busyMs - cpuBefore.busyMs) / total) * cpuAfter.cores,
                    clientCores: (cpuAfter.clientUs - cpuBefore.clientUs) / 1e6 / seconds,
                  },
                }
              : {}),
          };
        } else {
          lastHop = undefined;
        }
        return measure;
      },
      {
        signal: interrupt.signal,
        onStep: (s) => {
          previous = { ok: s.ok, maxLatencyMs: s.measure.latencyUs.max / 1000 };
          if (lastHop) hopSteps.set(s.step, lastHop);
          if (!values.json) process.stdout.write(formatStepRow(s) + (lastHop ? formatHopLine(lastHop) : ''));
          lastHop = undefined;
        },
      },
    );
  } finally {
    interrupt.dispose();
  }

  const hops: SweepHops | undefined = probe
    ? {
        steps: hopSteps,
        bottleneck: nameBottleneck(
          result.steps.flatMap((s) => {
            const h = hopSteps.get(s.step);
            return h ? [{ step: s.step, rate: s.rate, ok: s.ok, hops: h }] : [];
          }),
          probe.topology,
        ),
        appCpu: [...hopSteps.values()].some((h) => h.services.some((x) => x.appCores !== undefined)),
      }
    : undefined;

  if (reportPath !== undefined) writeFileSync(reportPath, renderSweepHtml(result, info, maxRate, hops));
  if (svgPath !== undefined) writeFileSync(svgPath, renderSweepSvg(result, slo, `p50 / p99 / p99.9 against asked rate: ${t.url}`));

  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({
        target: t.url,
        ...(t.via ? { via: t.via } : {}),
        method: t.method,
        protocol: info.protocol,
        connections: t.connections,
        slo: { p99Ms: slo.p99Ms, minSuccess: slo.minSuccess, minAchieved: slo.minAchieved },
        search: { startRate, maxRate, precision, maxSteps, stepDurationMs: stepMs, warmupMs },
        saturationRps: result.saturation ?? null,
        firstBadRps: result.firstBad ?? null,
        stoppedBy: result.stoppedBy,
        steps: result.steps.map((s) => ({
          step: s.step,
          phase: s.phase,
          rate: s.rate,
          achievedRps: s.measure.achievedRps,
          scheduled: s.measure.scheduled,
          completed: s.measure.completed,
          success: s.success,
          latencyUs: s.measure.latencyUs,
          errors: s.measure.errors,
          ok: s.ok,
          reasons: s.reasons,
          ...(hops ? { hops: hopsJson(hops.steps.get(s.step)) } : {}),
        })),
        ...(hops ? { bottleneck: hops.bottleneck ?? null, appCpu: hops.appCpu } : {}),
        report: reportPath ?? null,
        svg: svgPath ?? null,
      })}\n`,
    );
  } else {
    process.stdout.write(`\n${formatSweepSummary(result, slo, maxRate)}${hops ? formatBottleneck(hops) : ''}`);
    if (reportPath !== undefined) process.stdout.write(`report: ${reportPath}\n`);
    if (svgPath !== undefined) process.stdout.write(`plot: ${svgPath}\n`);
  }
  return 0;
}
