// How a rate sweep (sweep.ts) is shown: the table printed step by step, the result
// line, an SVG plot of p50/p99/p99.9 against the asked rate (log-scale axes, the SLO
// line, the knee marked), and a self-contained HTML report holding both. The SVG is
// written by hand: a few dozen elements need no plotting library.
import { coresText, cpuText, hopName, MACHINE_SATURATED, msText, type Bottleneck, type HopStep, type ServiceHop } from './hop-metrics.js';
import { formatMs } from './result.js';
import type { Slo, StopReason, SweepResult, SweepStep } from './sweep.js';

/** What the report says about the run besides the steps. */
export interface SweepReportInfo {
  readonly target: string;
  readonly via?: string;
  readonly method: string;
  readonly protocol: 'http/1.1' | 'h2';
  readonly connections: number;
  readonly stepDurationMs: number;
  readonly warmupMs: number;
  readonly slo: Slo;
  readonly startedAt: Date;
}

function rateText(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

function pctText(f: number, digits = 1): string {
  return `${(f * 100).toFixed(digits)}%`;
}

function latencyText(us: number, count: number): string {
  return count > 0 ? formatMs(us) : '-';
}

/** The share of scheduled requests that failed or got a non-2xx answer. */
export function errorShare(s: SweepStep): number {
  return s.measure.scheduled > 0 ? s.measure.errors.total / s.measure.scheduled : 0;
}

export function verdictText(s: SweepStep): string {
  return s.ok ? 'ok' : `over SLO (${s.reasons.join(', ')})`;
}

const COLUMNS: readonly [string, number][] = [
  ['step', 4],
  ['phase', 11],
  ['asked/s', 8],
  ['achieved/s', 10],
  ['p50', 9],
  ['p99', 9],
  ['p99.9', 9],
  ['errors', 7],
];

/** The table's header line. */
export function formatStepHeader(): string {
  return `${COLUMNS.map(([name, w], i) => (i === 1 ? name.padEnd(w) : name.padStart(w))).join('  ')}  verdict\n`;
}

/** One table line, printed as soon as the step is judged. */
export function formatStepRow(s: SweepStep): string {
  const m = s.measure;
  const cells = [
    String(s.step),
    s.phase,
    rateText(s.rate),
    rateText(m.achievedRps),
    latencyText(m.latencyUs.p50, m.latencyUs.count),
    latencyText(m.latencyUs.p99, m.latencyUs.count),
    latencyText(m.latencyUs.p999, m.latencyUs.count),
    pctText(errorShare(s), 2),
  ];
  return `${cells.map((c, i) => (i === 1 ? c.padEnd(COLUMNS[i]![1]) : c.padStart(COLUMNS[i]![1]))).join('  ')}  ${verdictText(s)}\n`;
}

/** "p99 ≤ 100 ms and success ≥ 99.9%". */
export function sloText(slo: Slo): string {
  const success = slo.minSuccess * 100;
  return `p99 ≤ ${slo.p99Ms} ms and success ≥ ${Number(success.toFixed(3))}%`;
}

const STOPPED: Record<StopReason, string> = {
  precision: '',
  'max-rate': '',
  'max-steps': 'stopped after --max-steps steps',
  'min-rate': '',
  interrupted: 'interrupted',
};

/** The result line (and a second line when the search ended short of its precision). */
export function formatSweepSummary(r: SweepResult, slo: Slo, maxRate: number): string {
  const meeting = `highest rate meeting ${sloText(slo)}`;
  if (r.saturation === undefined) {
    const lowest = r.steps.length > 0 ? Math.min(...r.steps.map((s) => s.rate)) : undefined;
    return `saturation: not found (no rate${lowest !== undefined ? ` down to ${rateText(lowest)} req/s` : ''} met ${sloText(slo)})${r.stoppedBy === 'interrupted' || r.stoppedBy === 'max-steps' ? `, ${STOPPED[r.stoppedBy]}` : ''}\n`;
  }
  if (r.firstBad === undefined) {
    const capped = r.stoppedBy === 'max-rate' && r.saturation >= maxRate;
    return `saturation: ${capped ? `not reached up to --max-rate ${rateText(maxRate)} req/s` : `not reached; ≥ ${rateText(r.saturation)} req/s`} (${meeting}${capped ? '' : `; ${STOPPED[r.stoppedBy]}`})\n`;
  }
  const between =
    r.stoppedBy === 'precision'
      ? ''
      : `\n            ${STOPPED[r.stoppedBy]}: the knee lies between ${rateText(r.saturation)} and ${rateText(r.firstBad)} req/s`;
  return `saturation: ~${rateText(r.saturation)} req/s (${meeting})${between}\n`;
}

// ---- hops (the bottleneck account, for service targets) ----

/** What the sweep learnt about the mesh's hops: each step's account and the bottleneck. */
export interface SweepHops {
  /** By step number; a step whose readings failed has none. */
  readonly steps: ReadonlyMap<number, HopStep>;
  readonly bottleneck: Bottleneck | undefined;
  /** Whether the sidecars report their apps' CPU (Linux only). */
  readonly appCpu: boolean;
}

function shareText(share: number | undefined): string {
  return share === undefined ? '-' : `${(share * 100).toFixed(share < 0.1 ? 1 : 0)}%`;
}

/** The indented line under a step's row: the slowest hop, then the others, time inside per request. */
export function formatHopLine(h: HopStep): string {
  if (h.services.length === 0) return '        hops: no inbound requests seen at any sidecar\n';
  const [slowest, ...rest] = h.services;
  const one = (x: ServiceHop): string =>
    x.role === 'tcp'
      ? `${hopName(x)} (${x.requests} connections${cpuText(x) ? `, ${cpuText(x)}` : ''})`
      : `${hopName(x)} ${msText(x.insideMs)} (${shareText(x.share)}${x.errorRate > 0 ? `, ${(x.errorRate * 100).toFixed(1)}% errors` : ''}${cpuText(x) ? `, ${cpuText(x)}` : ''})`;
  const waited =
    h.clientMs !== undefined && h.e2eMs !== undefined && h.clientMs - h.e2eMs >= 1
      ? `; the client waited ${msText(h.clientMs - h.e2eMs)} per request before the mesh (every connection busy, or the client's own CPU)`
      : '';
  const machine = h.machine ? `; machine ${coresText(h.machine.busyCores)} of ${h.machine.cores} cores busy (client ${coresText(h.machine.clientCores)})` : '';
  return `        slowest hop: ${one(slowest!)}${rest.length > 0 ? `; then ${rest.map(one).join('; ')}` : ''}${waited}${machine}\n`;
}

/** `bottleneck: c (time inside ...)`, or why none was named. */
export function formatBottleneck(hops: SweepHops): string {
  if (!hops.bottleneck) return 'bottleneck: not named (no sidecar reported inbound requests during the steps)\n';
  const b = hops.bottleneck;
  const knee = hops.steps.get(b.step);
  // Requests waiting in the client for a free connection never reach the mesh's counters.
  const clientWait = knee?.clientMs !== undefined && knee.e2eMs !== undefined ? knee.clientMs - knee.e2eMs : 0;
  const waitNote =
    knee && clientWait > knee.e2eMs! && clientWait >= 1
      ? `\n            (at ${rateText(b.rate)} req/s the client waited ${msText(clientWait)} per request before the mesh, more than the mesh took (every connection busy, or the client's own CPU); raise --connections to tell the mesh's limit from the client's)`
      : '';
  const m = knee?.machine;
  const machineNote =
    m && m.busyCores >= MACHINE_SATURATED * m.cores
      ? `\n            (at ${rateText(b.rate)} req/s this machine was busy on ${coresText(m.busyCores)} of its ${m.cores} cores, ${coresText(m.clientCores)} of them the load client's: every hop and the client were short of CPU, so the knee is the machine's as much as any hop's)`
      : '';
  return `bottleneck: ${hopName(b)} (${b.reason})${machineNote || waitNote}${hops.appCpu ? '' : "\n            (CPU is the sidecars' only: their apps' CPU is not reported on this platform)"}\n`;
}

function renderHopTable(h: HopStep): string {
  const rows = h.services.map(
    (x) =>
      `<tr><td>${escapeXml(hopName(x))}</td><td>${x.requests}${x.role === 'tcp' ? ' connections' : ''}</td>` +
      `<td>${x.role === 'tcp' ? '-' : escapeXml(msText(x.insideMs))}</td><td>${shareText(x.share)}</td>` +
      `<td>${x.role === 'tcp' ? '-' : `${(x.errorRate * 100).toFixed(2)}%`}</td><td>${x.sidecarCores === undefined ? '-' : coresText(x.sidecarCores)}</td><td>${x.appCores === undefined ? '-' : coresText(x.appCores)}</td></tr>`,
  );
  return `<table class="hops"><thead><tr><th>service</th><th>requests</th><th>time inside / req</th><th>of end-to-end</th><th>errors</th><th>sidecar cores</th><th>app cores</th></tr></thead>
<tbody>${rows.join('')}</tbody></table>`;
}

/** The HTML section of the hops: the bottleneck and a small table per step. */
export function renderHopsHtml(r: SweepResult, hops: SweepHops): string {
  const parts = [
    `<h2>Hops</h2>`,
    `<p class="bottleneck">${escapeXml(formatBottleneck(hops).trim())}</p>`,
    "<p>Time inside a service: its sidecars' inbound request time minus their outbound time for its own calls, per inbound request; end-to-end as the entry proxy measured it. Readings cover each step's measured window (not its warm-up). A TCP service (a database) shows its connections and CPU; its callers' time inside includes waiting on it.</p>",
  ];
  for (const s of r.steps) {
    const h = hops.steps.get(s.step);
    if (!h) continue;
    parts.push(
      `<h3>step ${s.step}: ${rateText(s.rate)} req/s asked${h.e2eMs !== undefined ? `, end-to-end ${escapeXml(msText(h.e2eMs))} per request` : ''}${h.clientMs !== undefined ? ` (${escapeXml(msText(h.clientMs))} at the client)` : ''}</h3>`,
    );
    if (h.machine)
      parts.push(`<p>machine: ${coresText(h.machine.busyCores)} of ${h.machine.cores} cores busy (load client ${coresText(h.machine.clientCores)})</p>`);
    parts.push(renderHopTable(h));
  }
  return parts.join('\n');
}

// ---- SVG ----

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** 1-2-5 ticks in [lo, hi]. */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(6)));
    }
  }
  return out;
}

function msLabel(ms: number): string {
  if (ms >= 1000) return `${Number((ms / 1000).toPrecision(3))} s`;
  return `${Number(ms.toPrecision(3))} ms`;
}

function rateLabel(r: number): string {
  return r >= 1000 ? `${Number((r / 1000).toPrecision(3))}k` : String(Number(r.toPrecision(3)));
}

const SERIES = [
  { key: 'p50', label: 'p50', color: '#2f9e44' },
  { key: 'p99', label: 'p99', color: '#1971c2' },
  { key: 'p999', label: 'p99.9', color: '#9c36b5' },
] as const;

/**
 * The plot: p50, p99 and p99.9 (log scale, ms) against the asked rate (log scale), one
 * point per step that got answers; the SLO's p99 bound as a dashed line; the knee (the
 * highest rate meeting the SLO) as a vertical line. Steps that missed the SLO are drawn
 * hollow. Elements carry data-* attributes so tools and tests can read the values back.
 */
export function renderSweepSvg(r: SweepResult, slo: Slo, title = 'Latency against asked rate'): string {
  const W = 760,
    H = 440,
    L = 70,
    R = 110,
    T = 36,
    B = 76;
  const pw = W - L - R,
    ph = H - T - B;
  const steps = [...r.steps].sort((a, b) => a.rate - b.rate);
  const answered = steps.filter((s) => s.measure.latencyUs.count > 0);
  const rates = steps.map((s) => s.rate);
  let xLo = rates.length > 0 ? Math.min(...rates) : 1;
  let xHi = rates.length > 0 ? Math.max(...rates) : 10;
  xLo /= 1.25;
  xHi *= 1.25;
  const lats = answered.flatMap((s) => [s.measure.latencyUs.p50, s.measure.latencyUs.p99, s.measure.latencyUs.p999].map((us) => Math.max(us, 1) / 1000));
  lats.push(slo.p99Ms);
  const yLo = 10 ** Math.floor(Math.log10(Math.min(...lats)));
  const yHi = 10 ** Math.ceil(Math.log10(Math.max(...lats) * 1.0001));
  const x = (rate: number): number => L + ((Math.log10(rate) - Math.log10(xLo)) / (Math.log10(xHi) - Math.log10(xLo))) * pw;
  const y = (ms: number): number => T + ph - ((Math.log10(Math.max(ms, yLo)) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph;
  const f = (n: number): string => n.toFixed(1);

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`);
  out.push(`<title>${escapeXml(title)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${L}" y="20" font-size="14" font-weight="600">${escapeXml(title)}</text>`);
  // grid and axes
  out.push('<g class="grid" stroke="#e9ecef">');
  for (const v of logTicks(yLo, yHi)) out.push(`<line x1="${L}" x2="${L + pw}" y1="${f(y(v))}" y2="${f(y(v))}"/>`);
  for (const v of logTicks(xLo, xHi)) out.push(`<line x1="${f(x(v))}" x2="${f(x(v))}" y1="${T}" y2="${T + ph}"/>`);
  out.push('</g>');
  out.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#868e96"/>`);
  out.push('<g class="y-ticks" text-anchor="end" fill="#495057">');
  for (const v of logTicks(yLo, yHi)) out.push(`<text x="${L - 6}" y="${f(y(v) + 4)}">${msLabel(v)}</text>`);
  out.push('</g><g class="x-ticks" text-anchor="middle" fill="#495057">');
  for (const v of logTicks(xLo, xHi)) out.push(`<text x="${f(x(v))}" y="${T + ph + 16}">${rateLabel(v)}</text>`);
  out.push('</g>');
  out.push(`<text x="${L + pw / 2}" y="${T + ph + 34}" text-anchor="middle" fill="#212529">asked rate (req/s, log scale)</text>`);
  out.push(`<text transform="translate(16 ${T + ph / 2}) rotate(-90)" text-anchor="middle" fill="#212529">latency (log scale)</text>`);
  // the SLO
  const sy = f(y(slo.p99Ms));
  out.push(
    `<line class="slo" data-p99-ms="${slo.p99Ms}" x1="${L}" x2="${L + pw}" y1="${sy}" y2="${sy}" stroke="#e03131" stroke-width="1.5" stroke-dasharray="6 4"/>`,
  );
  out.push(`<text x="${L + pw + 6}" y="${f(y(slo.p99Ms) + 4)}" fill="#e03131">SLO p99 ${escapeXml(msLabel(slo.p99Ms))}</text>`);
  // the knee
  if (r.saturation !== undefined) {
    const kx = f(x(r.saturation));
    out.push(
      `<line class="knee" data-rate="${r.saturation}" x1="${kx}" x2="${kx}" y1="${T}" y2="${T + ph}" stroke="#f08c00" stroke-width="1.5" stroke-dasharray="3 3"/>`,
    );
    out.push(`<text x="${kx}" y="${T - 4}" text-anchor="middle" fill="#e8590c">knee ~${escapeXml(rateText(r.saturation))} req/s</text>`);
  }
  // the series
  for (const [i, s] of SERIES.entries()) {
    const pts = answered.map((st) => [x(st.rate), y(st.measure.latencyUs[s.key] / 1000)] as const);
    if (pts.length > 1)
      out.push(
        `<polyline class="series-${s.key}" fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map(([a, b]) => `${f(a)},${f(b)}`).join(' ')}"/>`,
      );
    out.push(`<g class="points-${s.key}" stroke="${s.color}" stroke-width="1.5">`);
    for (const st of answered) {
      const ms = st.measure.latencyUs[s.key] / 1000;
      out.push(
        `<circle class="point" data-series="${s.key}" data-rate="${st.rate}" data-ms="${Number(ms.toPrecision(4))}" data-ok="${st.ok}" cx="${f(x(st.rate))}" cy="${f(y(ms))}" r="3.5" fill="${st.ok ? s.color : '#fff'}"><title>${escapeXml(`${s.label} ${msLabel(ms)} at ${rateText(st.rate)} req/s asked${st.ok ? '' : ` (over SLO: ${st.reasons.join(', ')})`}`)}</title></circle>`,
      );
    }
    out.push('</g>');
    // legend, in a row under the axis
    const lx = L + i * 80;
    out.push(
      `<line x1="${lx}" x2="${lx + 20}" y1="${H - 14}" y2="${H - 14}" stroke="${s.color}" stroke-width="2"/><text x="${lx + 26}" y="${H - 10}">${s.label}</text>`,
    );
  }
  out.push(
    `<circle cx="${L + 248}" cy="${H - 14}" r="3.5" fill="#fff" stroke="#495057" stroke-width="1.5"/><text x="${L + 256}" y="${H - 10}" fill="#495057">over SLO</text>`,
  );
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// ---- HTML ----

function escapeHtml(s: string): string {
  return escapeXml(s);
}

/** A self-contained HTML page: the result, the plot, the table and the settings. */
export function renderSweepHtml(r: SweepResult, info: SweepReportInfo, maxRate: number, hops?: SweepHops): string {
  const summary = (formatSweepSummary(r, info.slo, maxRate) + (hops ? formatBottleneck(hops) : '')).trim();
  const rows = r.steps.map((s) => {
    const m = s.measure;
    const cells = [
      String(s.step),
      s.phase,
      rateText(s.rate),
      rateText(m.achievedRps),
      latencyText(m.latencyUs.p50, m.latencyUs.count),
      latencyText(m.latencyUs.p99, m.latencyUs.count),
      latencyText(m.latencyUs.p999, m.latencyUs.count),
      pctText(errorShare(s), 2),
      verdictText(s),
    ];
    return `<tr class="${s.ok ? 'ok' : 'over'}">${cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`;
  });
  const settings: [string, string][] = [
    ['target', `${info.method} ${info.target}${info.via ? ` (${info.via})` : ''}`],
    ['protocol', `${info.protocol === 'h2' ? 'HTTP/2 (h2c)' : 'HTTP/1.1'}, ${info.connections} ${info.protocol === 'h2' ? 'streams' : 'connections'}`],
    [
      'steps',
      `${(info.stepDurationMs / 1000).toFixed(1)}s measured after ${(info.warmupMs / 1000).toFixed(1)}s warm-up, constant rate, open model (latency from each request's intended send time)`,
    ],
    ['SLO', sloText(info.slo)],
    ['started', info.startedAt.toISOString()],
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>trellis bench: ${escapeHtml(info.target)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #212529; max-width: 60rem; }
h1 { font-size: 1.3rem; }
.summary { font-size: 1.1rem; font-weight: 600; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #dee2e6; text-align: right; white-space: nowrap; }
td:nth-child(2), td:last-child, th:nth-child(2), th:last-child { text-align: left; }
td:last-child { white-space: normal; }
table.hops td:first-child, table.hops th:first-child { text-align: left; }
table.hops td:last-child { white-space: nowrap; }
table.hops td:nth-child(2), table.hops th:nth-child(2), table.hops td:last-child, table.hops th:last-child { text-align: right; }
tr.over td:last-child { color: #c92a2a; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { color: #495057; }
</style>
</head>
<body>
<h1>trellis bench: ${escapeHtml(info.target)}</h1>
<p class="summary">${escapeHtml(summary)}</p>
${renderSweepSvg(r, info.slo, `p50 / p99 / p99.9 against asked rate: ${info.target}`)}
<table>
<thead><tr><th>step</th><th>phase</th><th>asked req/s</th><th>achieved req/s</th><th>p50</th><th>p99</th><th>p99.9</th><th>errors</th><th>verdict</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>
${hops ? renderHopsHtml(r, hops) : ''}
<dl>
${settings.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('\n')}
</dl>
</body>
</html>
`;
}
