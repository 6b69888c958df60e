// `trellis trace`: the recent traces the control plane keeps (its OTLP receiver takes
// spans from every sidecar and every app that exports to it), and one trace as a tree
// of spans with per-hop timings.
import { TrellisError } from '../errors.js';
import type { SpanView, TraceListView, TraceSummaryView, TraceView } from '../api/traces.js';
import { parseCount, parseFlags } from './args.js';
import { ADMIN_TOKEN_FLAGS, adminGetJson, adminTarget, adminTokenHelp, controlUrl } from './admin-client.js';

export const help = `Usage: trellis trace [TRACE_ID] [--control URL] [--service NAME] [--limit N] [--json]

Without TRACE_ID: the most recent traces the control plane keeps, newest first: the
root span, the services in it, how many spans and errors, and how long it took.
With TRACE_ID: that trace as a tree, each span with its start (from the trace's
start), its duration, its service and kind, a bar of where it falls in the trace, and
its HTTP status. Sidecar spans and the apps' own spans (OpenTelemetry SDK) join in one tree.

Options:
  --control URL   the control plane's admin URL (default: http://127.0.0.1:15000)
  --service NAME  only traces the service has a span in
  --limit N       at most N traces (default 20)
  --json          print the admin API's JSON
${adminTokenHelp(18)}
`;

const TIMEOUT_MS = 3000;
const KINDS = ['unset', 'internal', 'server', 'client', 'producer', 'consumer'];
const BAR = 24;

function ms(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(2)}s` : `${n.toFixed(2)}ms`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

/** The list of recent traces as a table. */
export function renderTraceList(traces: readonly TraceSummaryView[]): string {
  if (traces.length === 0) return 'No traces kept yet. Send some requests through the mesh (1% are sampled by default; failed ones always).\n';
  const rows = [['TRACE', 'STARTED', 'DURATION', 'SPANS', 'ERRORS', 'ROOT', 'SERVICES']];
  for (const t of traces) {
    rows.push([
      t.traceId,
      t.startTime.slice(11, 23),
      ms(t.durationMs),
      String(t.spans),
      String(t.errors),
      `${t.rootService}: ${t.rootName}`,
      t.services.join(','),
    ]);
  }
  return table(rows);
}

/**
 * A line on what the receiver dropped of what it had answered 200 (it decodes bodies when
 * traces are read, so a malformed one is found after its sender was told all is well),
 * or '' when it dropped nothing.
 */
export function renderReceiverNote(list: Partial<Pick<TraceListView, 'rejected' | 'skippedBodies'>>): string {
  const r = list.rejected;
  const bodies = typeof r?.bodies === 'number' ? r.bodies : 0;
  const spans = typeof r?.spans === 'number' ? r.spans : 0;
  const skipped = typeof list.skippedBodies === 'number' ? list.skippedBodies : 0;
  const parts: string[] = [];
  if (bodies > 0) parts.push(`${bodies} malformed ${bodies === 1 ? 'body' : 'bodies'}`);
  if (spans > 0) parts.push(`${spans} bad ${spans === 1 ? 'span' : 'spans'}`);
  if (parts.length > 0) {
    const why = typeof r?.lastProblem === 'string' && r.lastProblem !== '' ? ` (the latest: ${r.lastProblem.slice(0, 200)})` : '';
    parts[parts.length - 1] += why;
  }
  if (skipped > 0) parts.push(`${skipped} ${skipped === 1 ? 'body' : 'bodies'} never read (more waited than it keeps)`);
  return parts.length === 0 ? '' : `The receiver dropped, of what it had accepted: ${parts.join('; ')}.\n`;
}

/** One trace as a tree: children under their parent, in start order; spans whose parent never arrived at the top. */
export function renderTraceTree(trace: TraceView): string {
  const spans = trace.spans;
  if (spans.length === 0) return `trace ${trace.traceId}: no spans\n`;
  const start = spans.reduce((m, s) => (BigInt(s.startTimeUnixNano) < m ? BigInt(s.startTimeUnixNano) : m), BigInt(spans[0]!.startTimeUnixNano));
  const end = spans.reduce((m, s) => (BigInt(s.endTimeUnixNano) > m ? BigInt(s.endTimeUnixNano) : m), 0n);
  const total = Math.max(1, Number(end - start));
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, SpanView[]>();
  const roots: SpanView[] = [];
  for (const s of spans) {
    if (s.parentSpanId === '' || !ids.has(s.parentSpanId) || s.parentSpanId === s.spanId) roots.push(s);
    else children.set(s.parentSpanId, [...(children.get(s.parentSpanId) ?? []), s]);
  }
  const rows = [['START', 'DURATION', 'SERVICE', 'KIND', 'TIMELINE'.padEnd(BAR), 'SPAN']];
  const seen = new Set<string>();
  const walk = (s: SpanView, prefix: string, last: boolean, depth: number): void => {
    if (seen.has(s.spanId)) return; // a cycle in hostile parent ids
    seen.add(s.spanId);
    const s0 = Number(BigInt(s.startTimeUnixNano) - start);
    const d = Number(BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano));
    const from = Math.min(BAR - 1, Math.floor((s0 / total) * BAR));
    const width = Math.max(1, Math.min(BAR - from, Math.round((d / total) * BAR)));
    const bar = `${' '.repeat(from)}${'█'.repeat(width)}`.padEnd(BAR);
    const status = s.attributes['http.response.status_code'];
    const note = [status !== undefined ? String(status) : '', s.error ? 'ERROR' : ''].filter(Boolean).join(' ');
    const branch = depth === 0 ? '' : `${prefix}${last ? '└─ ' : '├─ '}`;
    rows.push([`+${ms(s0 / 1e6)}`, ms(d / 1e6), s.service, KINDS[s.kind] ?? String(s.kind), bar, `${branch}${s.name}${note ? `  (${note})` : ''}`]);
    const kids = (children.get(s.spanId) ?? []).sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1));
    const next = depth === 0 ? '' : `${prefix}${last ? '   ' : '│  '}`;
    for (let i = 0; i < kids.length; i++) walk(kids[i]!, next, i === kids.length - 1, depth + 1);
  };
  for (const r of roots) walk(r, '', true, 0);
  const services = [...new Set(spans.map((s) => s.service))].sort();
  const head = `trace ${trace.traceId}: ${spans.length} spans, ${services.length} services (${services.join(', ')}), ${ms(total / 1e6)}${trace.droppedSpans > 0 ? `, ${trace.droppedSpans} spans not kept` : ''}\n`;
  return head + table(rows);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      service: { type: 'string' },
      limit: { type: 'string', default: '20' },
      json: { type: 'boolean', default: false },
      ...ADMIN_TOKEN_FLAGS,
    },
    true,
    'trace',
  );
  const target = await adminTarget(controlUrl(values.control), values);
  if (positionals.length > 1) throw new TrellisError('TRELLIS_E_USAGE', { reason: 'give at most one trace id; see `trellis trace --help`' });
  const id = positionals[0];
  if (id !== undefined) {
    if (!/^[0-9a-fA-F]{32}$/.test(id)) throw new TrellisError('TRELLIS_E_USAGE', { reason: `a trace id is 32 hex digits, got "${id.slice(0, 64)}"` });
    const trace = await adminGetJson<TraceView>(target, `/v1/traces/${id.toLowerCase()}`, TIMEOUT_MS, 'undefined-on-404');
    if (trace === undefined)
      throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `the control plane keeps no trace ${id}; \`trellis trace\` lists the ones it has` });
    process.stdout.write(values.json ? `${JSON.stringify(trace, null, 2)}\n` : renderTraceTree(trace));
    return 0;
  }
  const limit = parseCount(values.limit, '--limit');
  const q = new URLSearchParams({ limit: String(limit) });
  if (values.service !== undefined) q.set('service', values.service);
  const list = await adminGetJson<Partial<TraceListView>>(target, `/v1/traces?${q}`, TIMEOUT_MS, 'undefined-on-404');
  const traces = list?.traces ?? [];
  process.stdout.write(values.json ? `${JSON.stringify(traces, null, 2)}\n` : renderTraceList(traces) + (list === undefined ? '' : renderReceiverNote(list)));
  return 0;
}
