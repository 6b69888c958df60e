// `trellis top`: a live table of the mesh's services (or routes) by request rate, with
// success rate and p50/p99, from the proxies' own /metrics read twice: the difference
// between two readings, never totals since the proxies started (as the canary judges).
import type { ProxyView } from '../api/admin.js';
import { histogramQuantile } from '../canary/judge.js';
import { parsePrometheus } from '../telemetry/prometheus-text.js';
import { ADMIN_TOKEN_FLAGS } from './admin-client.js';
import { abortOnSigint, parseFlags } from './args.js';
import { adminAccess, adminHeaders, listProxies, proxyUrl, type AdminAccess } from './mesh-admin.js';
import { printable } from './printable.js';
import { table } from './status.js';
import { durationFlag, usageError } from './target-flags.js';

export const help = `Usage: trellis top [options]

A live table of the mesh's services by request rate: requests per second, success rate
(5xx, no response and gRPC errors fail) and p50/p99 latency, over the last interval, as
each service's sidecars measured what they served (inbound). With --routes, one row per
route as the callers' sidecars measured it (outbound). Refreshed in place on a terminal;
--once (or output that is not a terminal) prints one table over one interval and exits.

Options:
  --routes        one row per destination and route instead of per service
  --callers       one row per service and caller: the identity its sidecars verified
                  from the caller's certificate (unknown: a plaintext caller)
  --interval D    the window of each refresh (default: 2s)
  --once          print one table and exit
  --control URL   the control plane's admin URL (default: http://127.0.0.1:15000)
  --admin-token-file Fthe admin API's token (default: $TRELLIS_ADMIN_TOKEN, else the token
                  of the control plane at that address, found in ~/.trellis/controls/)
`;

const COUNT = 'trellis_http_request_duration_seconds_count';
const BUCKET = 'trellis_http_request_duration_seconds_bucket';

/** One proxy's HTTP series at one moment: by full label set, the count (failed or not) or a bucket. */
export type TopReading = ReadonlyMap<string, { readonly group: string; readonly failed: boolean; readonly le: number | undefined; readonly value: number }>;

/** `callers`: one row per destination and the caller its sidecars verified (inbound `source`: the caller's certificate's service, `unknown` for plaintext). */
export type TopMode = 'services' | 'routes' | 'callers';

/** Reads what top needs out of each proxy's /metrics text. */
export function topReading(texts: readonly { readonly id: string; readonly text: string }[], mode: TopMode): TopReading {
  const out = new Map<string, { group: string; failed: boolean; le: number | undefined; value: number }>();
  for (const { id, text } of texts) {
    for (const s of parsePrometheus(text, (n) => n === COUNT || n === BUCKET)) {
      const l = s.labels;
      if (l.direction !== (mode === 'routes' ? 'outbound' : 'inbound')) continue;
      const group = mode === 'services' ? (l.destination ?? '') : `${l.destination ?? ''}\u0000${(mode === 'routes' ? l.route : l.source) ?? ''}`;
      const key = `${id}\u0000${s.name}${JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
      out.set(key, {
        group,
        failed: l.classification === 'failure',
        le: s.name === BUCKET ? (l.le === '+Inf' ? Infinity : Number(l.le)) : undefined,
        value: s.value,
      });
    }
  }
  return out;
}

export interface TopRow {
  readonly group: string;
  readonly requests: number;
  readonly rps: number;
  /** 0-1; undefined without requests. */
  readonly success: number | undefined;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
}

/** The window between two readings, `seconds` apart, as rows by rate (highest first). */
export function topRows(before: TopReading, after: TopReading, seconds: number): TopRow[] {
  const groups = new Map<string, { requests: number; failed: number; buckets: Map<number, number> }>();
  for (const [key, s] of after) {
    const delta = s.value - (before.get(key)?.value ?? 0);
    // A counter that went down is a restarted proxy: its whole count is this window's.
    const d = delta < 0 ? s.value : delta;
    let g = groups.get(s.group);
    if (g === undefined) groups.set(s.group, (g = { requests: 0, failed: 0, buckets: new Map() }));
    if (s.le === undefined) {
      g.requests += d;
      if (s.failed) g.failed += d;
    } else {
      g.buckets.set(s.le, (g.buckets.get(s.le) ?? 0) + d);
    }
  }
  const rows: TopRow[] = [];
  for (const [group, g] of groups) {
    const buckets = [...g.buckets].sort((a, b) => a[0] - b[0]);
    const q = (x: number): number | undefined => {
      const v = histogramQuantile(x, buckets);
      return v === undefined ? undefined : v * 1000;
    };
    rows.push({
      group,
      requests: g.requests,
      rps: g.requests / seconds,
      success: g.requests === 0 ? undefined : (g.requests - g.failed) / g.requests,
      p50Ms: g.requests === 0 ? undefined : q(0.5),
      p99Ms: g.requests === 0 ? undefined : q(0.99),
    });
  }
  return rows.sort((a, b) => b.rps - a.rps || (a.group < b.group ? -1 : 1));
}

const ms = (v: number | undefined): string => (v === undefined ? '-' : v < 10 ? `${v.toFixed(2)}ms` : `${v.toFixed(0)}ms`);

export function renderTop(rows: readonly TopRow[], mode: TopMode, seconds: number): string {
  const head = mode === 'services' ? ['SERVICE'] : mode === 'routes' ? ['DESTINATION', 'ROUTE'] : ['SERVICE', 'CALLER (mTLS identity)'];
  const body = rows.map((r) => [
    ...(mode === 'services' ? [printable(r.group, 253)] : r.group.split('\u0000').map((c) => printable(c, 253))),
    r.rps.toFixed(1),
    r.success === undefined ? '-' : `${(r.success * 100).toFixed(2)}%`,
    ms(r.p50Ms),
    ms(r.p99Ms),
    String(r.requests),
  ]);
  const t = table([...head, 'RPS', 'SUCCESS', 'P50', 'P99', 'REQUESTS'], body);
  return `${t}\n${rows.length === 0 ? '(no HTTP requests in this window)\n' : ''}over the last ${seconds.toFixed(1)} s\n`;
}

async function readMetrics(a: AdminAccess, proxies: readonly ProxyView[]): Promise<{ id: string; text: string }[]> {
  const read = await Promise.all(
    proxies.map(async (p) => {
      try {
        const res = await fetch(proxyUrl(p, '/metrics'), { headers: adminHeaders(a), signal: AbortSignal.timeout(3000) });
        if (!res.ok) {
          await res.body?.cancel();
          return undefined;
        }
        return { id: p.id, text: await res.text() };
      } catch {
        // A proxy that does not answer is left out of this window.
        return undefined;
      }
    }),
  );
  return read.filter((r): r is { id: string; text: string } => r !== undefined);
}

/** One window: reads every connected proxy, waits `intervalMs`, reads again. */
export async function topWindow(a: AdminAccess, mode: TopMode, intervalMs: number, signal?: AbortSignal): Promise<{ rows: TopRow[]; seconds: number }> {
  const proxies = (await listProxies(a)).filter((p) => p.connected);
  const t0 = performance.now();
  const before = topReading(await readMetrics(a, proxies), mode);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, intervalMs);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
  const after = topReading(await readMetrics(a, proxies), mode);
  const seconds = (performance.now() - t0) / 1000;
  return { rows: topRows(before, after, seconds), seconds };
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      routes: { type: 'boolean', default: false },
      callers: { type: 'boolean', default: false },
      interval: { type: 'string', default: '2s' },
      once: { type: 'boolean', default: false },
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      ...ADMIN_TOKEN_FLAGS,
    },
    true,
    'top',
  );
  if (positionals.length > 0) throw usageError('top', `top takes no arguments, got ${positionals.join(' ')}`);
  const intervalMs = durationFlag('top', '--interval', values.interval, false);
  if (values.routes && values.callers) throw usageError('top', 'choose one of --routes and --callers');
  const mode: TopMode = values.routes ? 'routes' : values.callers ? 'callers' : 'services';
  const access = await adminAccess(values.control, values);
  const live = !values.once && process.stdout.isTTY === true;
  if (!live) {
    const w = await topWindow(access, mode, intervalMs);
    process.stdout.write(renderTop(w.rows, mode, w.seconds));
    return 0;
  }
  const sigint = abortOnSigint();
  try {
    while (!sigint.signal.aborted) {
      const w = await topWindow(access, mode, intervalMs, sigint.signal);
      if (sigint.signal.aborted) break;
      // Home, then clear to the end of the screen: the table is redrawn in place.
      process.stdout.write(`\u001b[H\u001b[J${new Date().toISOString()}  trellis top (Ctrl-C to stop)\n\n${renderTop(w.rows, mode, w.seconds)}`);
    }
  } finally {
    sigint.dispose();
  }
  return 0;
}
