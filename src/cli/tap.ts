// `trellis tap SERVICE`: a live stream of the requests through a service's sidecars,
// inbound and outbound, read from each sidecar's /tap (proxy/tap/), filtered there.
import type { TapEvent, TapNotice } from '../api/views.js';
import { ADMIN_TOKEN_FLAGS } from './admin-client.js';
import { abortOnSigint, parseFlags } from './args.js';
import { adminAccess, jsonLines, proxiesOf, proxyUrl, type AdminAccess } from './mesh-admin.js';
import { printable } from './printable.js';
import { durationFlag, numberFlag, usageError } from './target-flags.js';

export const help = `Usage: trellis tap SERVICE [options]

Streams the requests passing through SERVICE's sidecars as they end: inbound (others
calling SERVICE) and outbound (SERVICE calling others), one line each, from every
instance. Filters are applied in the proxies, so only what matches crosses the wire.
A reader too slow for the traffic misses events (the line says how many); one that
stays behind is disconnected, so a tap never slows the mesh.

Options:
  --direction in|out   only inbound or only outbound requests
  --method M           only this method (GET, POST...)
  --path PREFIX        only paths starting with PREFIX (e.g. /api)
  --status S           only this status (404, 0 for no response) or class (5xx)
  --caller SERVICE     only requests from this calling service
  --max N              stop after N requests (over every instance)
  --duration D         stop after D (e.g. 30s, 5m); default: until Ctrl-C
  --instance ID        only this instance's sidecar
  --json               print each event as JSON (one a line)
  --control URL        the control plane's admin URL (default: http://127.0.0.1:15000)
  --admin-token-file F the admin API's token (default: $TRELLIS_ADMIN_TOKEN, else the token
                       of the control plane at that address, found in ~/.trellis/controls/)
`;

/** One line of a tap's stream, for people. Every value from a request goes through printable(). */
export function renderTapLine(line: TapEvent | TapNotice, proxy: string): string {
  if (line.kind === 'dropped') return `${printable(proxy)}: ${line.count} event(s) dropped: this reader was behind`;
  if (line.kind === 'end') return `${printable(proxy)}: tap ended (${line.reason})`;
  const e = line;
  const status = e.status === 0 ? 'no response' : String(e.status);
  return (
    `${printable(String(e.ts))} ${printable(e.proxy)} ${e.direction === 'inbound' ? 'in ' : 'out'} ` +
    `${printable(e.method, 32)} ${printable(e.authority, 255)} ${printable(e.path)} ${status}` +
    (e.grpcStatus !== undefined ? ` grpc=${printable(e.grpcStatus, 8)}` : '') +
    ` ${Number(e.latencyMs).toFixed(2)}ms from=${printable(e.caller, 253)} route=${printable(e.route, 253)}` +
    (e.endpoint !== undefined ? ` endpoint=${printable(e.endpoint, 300)}` : '') +
    ` bytes=${Number(e.bytes)}` +
    (e.attempts > 1 ? ` attempts=${Number(e.attempts)}` : '') +
    (e.error !== undefined ? ` error=${printable(e.error, 64)}` : '') +
    (e.peer !== undefined ? ` peer=${printable(e.peer, 300)}` : '')
  );
}

/** The query string of a proxy's /tap for these flags. */
export function tapQuery(f: {
  direction?: string;
  method?: string;
  path?: string;
  status?: string;
  caller?: string;
  max?: number;
  durationMs?: number;
}): string {
  const q = new URLSearchParams();
  if (f.direction !== undefined) q.set('direction', f.direction);
  if (f.method !== undefined) q.set('method', f.method);
  if (f.path !== undefined) q.set('path', f.path);
  if (f.status !== undefined) q.set('status', f.status);
  if (f.caller !== undefined) q.set('caller', f.caller);
  if (f.max !== undefined) q.set('max', String(f.max));
  if (f.durationMs !== undefined) q.set('duration_ms', String(Math.ceil(f.durationMs)));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

export interface TapRun {
  readonly access: AdminAccess;
  readonly service: string;
  readonly instance?: string;
  readonly query: string;
  readonly max: number | undefined;
  readonly durationMs: number | undefined;
  readonly json: boolean;
  readonly write: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** Streams every sidecar of the service until max events, the duration, every stream's end, or `signal`; returns the events printed. */
export async function tap(r: TapRun): Promise<number> {
  const proxies = await proxiesOf(r.access, r.service, r.instance);
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  r.signal?.addEventListener('abort', stop, { once: true });
  const timer = r.durationMs === undefined ? undefined : setTimeout(stop, r.durationMs);
  let printed = 0;
  try {
    await Promise.all(
      proxies.map(async (p) => {
        for await (const raw of jsonLines(r.access, proxyUrl(p, `/tap${r.query}`), ac.signal)) {
          if (ac.signal.aborted) break;
          const line = raw as TapEvent | TapNotice;
          if (typeof line !== 'object' || line === null || typeof line.kind !== 'string') continue;
          if (line.kind === 'end' && (line.reason === 'max-events' || line.reason === 'max-duration') && !r.json) continue;
          r.write(r.json ? JSON.stringify(line) : renderTapLine(line, p.id));
          if (line.kind === 'request' && ++printed === r.max) stop();
        }
      }),
    );
  } finally {
    clearTimeout(timer);
    r.signal?.removeEventListener('abort', stop);
    ac.abort();
  }
  return printed;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      direction: { type: 'string' },
      method: { type: 'string' },
      path: { type: 'string' },
      status: { type: 'string' },
      caller: { type: 'string' },
      max: { type: 'string' },
      duration: { type: 'string' },
      instance: { type: 'string' },
      json: { type: 'boolean', default: false },
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      ...ADMIN_TOKEN_FLAGS,
    },
    true,
    'tap',
  );
  if (positionals.length !== 1) throw usageError('tap', 'name one SERVICE');
  const direction = values.direction === undefined ? undefined : values.direction === 'in' ? 'inbound' : values.direction === 'out' ? 'outbound' : null;
  if (direction === null) throw usageError('tap', `--direction is in or out, got "${values.direction}"`);
  if (values.path !== undefined && !values.path.startsWith('/')) throw usageError('tap', '--path is a prefix starting with /');
  if (values.status !== undefined && !/^(\d{1,3}|[1-5]xx)$/i.test(values.status)) throw usageError('tap', '--status is a status (404) or a class (5xx)');
  const max = values.max === undefined ? undefined : numberFlag('tap', '--max', values.max, true, 'requests');
  const durationMs = values.duration === undefined ? undefined : durationFlag('tap', '--duration', values.duration, false);
  const sigint = abortOnSigint();
  try {
    await tap({
      access: await adminAccess(values.control, values),
      service: positionals[0]!,
      ...(values.instance !== undefined ? { instance: values.instance } : {}),
      query: tapQuery({ direction, method: values.method, path: values.path, status: values.status, caller: values.caller, max, durationMs }),
      max,
      durationMs,
      json: values.json,
      write: (line) => void process.stdout.write(`${line}\n`),
      signal: sigint.signal,
    });
  } finally {
    sigint.dispose();
  }
  return 0;
}
