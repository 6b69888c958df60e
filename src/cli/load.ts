// `trellis load TARGET`: constant-rate, open-model HTTP load against a URL on loopback
// or a service of a running mesh (optionally from inside the mesh, through a calling
// service's sidecar), reported as an HDR latency histogram, achieved vs asked rate and
// errors by kind. The engine is src/loadgen/run.ts; this file is flags and output.
import { TrellisError } from '../errors.js';
import { resolveServiceTarget } from '../loadgen/mesh-target.js';
import { formatProgress, formatResult, type LoadResult } from '../loadgen/result.js';
import { runLoad } from '../loadgen/run.js';
import { parseLoopbackUrl } from '../loadgen/target.js';
import { parseDuration, parseFlags } from './args.js';

export const help = `Usage: trellis load TARGET [options]

Sends HTTP requests at a constant rate (open model: each request is due at its own
time, whatever happened to the previous ones) and reports latency percentiles from an
HDR histogram, the achieved vs the asked rate, and errors by kind. Latency is measured
from each request's intended send time, so a server that stalls is charged for every
request scheduled while it stalled (no coordinated omission, as in wrk2 and fortio).

TARGET is an http:// URL on this machine (127.0.0.0/8, ::1, localhost), or the name of
a service of the running mesh, optionally followed by a path (backend/api/products).
A service is reached through its public listener on the ingress proxy, or with --from
through the sidecar of a service that calls it, from inside the mesh, so routes,
splits and policies apply as they do to that service's own requests.

Options:
  --rate N           requests per second (default 100)
  --duration D       how long to measure, e.g. 10s, 1m (default 10s)
  --warmup D         send at the same rate for this long first, unrecorded (default 0s)
  --connections N    HTTP/1.1 keep-alive connections, one request in flight on each
                     (default 20); with --http2, the most streams in flight (default 100)
  --method M         request method (default GET, or POST with a body)
  --header 'K: V'    add a request header (repeatable)
  --body STRING      request body
  --body-size BYTES  request body of this many bytes ("x" repeated)
  --timeout D        a request unanswered this long after it was sent, or still
                     waiting for a connection this long after it was due, fails (default 5s)
  --http2            HTTP/2 with prior knowledge (h2c) over one connection
  --from SERVICE     send from inside the mesh, through SERVICE's sidecar
  --control URL      the control plane's admin URL (default http://127.0.0.1:15000)
  --json             print one JSON object instead of the report

A progress line (elapsed, current rate, p99 so far, errors) is redrawn on stderr when
it is a terminal. Ctrl-C stops the run early and reports what was measured.

Exit status: 0 when the run completed (errors included: they are reported), 1 when
the mesh could not be asked, 2 for bad flags or an unknown target.

Examples:
  trellis load http://127.0.0.1:8080/ --rate 500 --duration 30s
  trellis load backend --from frontend --rate 200 --duration 10s
  trellis load backend/api/products --from frontend --http2 --json
`;

function usage(reason: string): TrellisError {
  return new TrellisError('TRELLIS_E_USAGE', { reason: `${reason}; see \`trellis load --help\`` });
}

/** A duration flag with a unit (a bare number would be ambiguous between ms and s). */
function durationFlag(flag: string, value: string, allowZero: boolean): number {
  const ok = /^\d+(?:\.\d+)?(?:ms|s|m|h)$/.test(value.trim());
  const ms = ok ? parseDuration(value) : NaN;
  if (!ok || !(ms > 0 || (allowZero && ms === 0))) {
    throw usage(`${flag} must be a duration ${allowZero ? 'of 0 or more' : 'above 0'} with a unit, such as 500ms, 10s or 1m; got "${value}"`);
  }
  return ms;
}

function numberFlag(flag: string, value: string, integer: boolean, what: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw usage(`${flag} must be ${integer ? 'a whole number' : 'a number'} above 0 (${what}); got "${value}"`);
  }
  return n;
}

/** Flags whose value may look negative; `--rate -5` would otherwise read as an unknown flag. */
const NUMERIC_FLAGS = new Set(['--rate', '--duration', '--warmup', '--timeout', '--connections', '--body-size']);

/** Joins `--rate -5` into `--rate=-5`, so the value is checked (and refused) with a clear message. */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (NUMERIC_FLAGS.has(argv[i]!) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else {
      out.push(argv[i]!);
    }
  }
  return out;
}

const SERVICE_TARGET = /^([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)(\/.*)?$/;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(joinNegativeValues(argv), {
    rate: { type: 'string', default: '100' },
    duration: { type: 'string', default: '10s' },
    warmup: { type: 'string', default: '0s' },
    connections: { type: 'string' },
    method: { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
    body: { type: 'string' },
    'body-size': { type: 'string' },
    timeout: { type: 'string', default: '5s' },
    http2: { type: 'boolean', default: false },
    from: { type: 'string' },
    control: { type: 'string', default: 'http://127.0.0.1:15000' },
    json: { type: 'boolean', default: false },
  }, true, 'load');

  if (positionals.length !== 1) {
    throw usage(positionals.length === 0 ? 'name a TARGET: an http:// URL on loopback or a service name' : `expected one TARGET, got ${positionals.length}: ${positionals.join(' ')}`);
  }
  const rate = numberFlag('--rate', values.rate, false, 'requests per second');
  const durationMs = durationFlag('--duration', values.duration, false);
  const warmupMs = durationFlag('--warmup', values.warmup, true);
  const timeoutMs = durationFlag('--timeout', values.timeout, false);
  const connections = values.connections === undefined ? (values.http2 ? 100 : 20) : numberFlag('--connections', values.connections, true, 'connections');
  if (values.body !== undefined && values['body-size'] !== undefined) throw usage('give --body or --body-size, not both');
  let body = Buffer.alloc(0);
  if (values.body !== undefined) body = Buffer.from(values.body, 'utf8');
  if (values['body-size'] !== undefined) {
    const size = Number(values['body-size']);
    if (!Number.isInteger(size) || size < 0 || size > 64 * 1024 * 1024) throw usage(`--body-size must be a whole number of bytes from 0 to 67108864; got "${values['body-size']}"`);
    body = Buffer.alloc(size, 'x');
  }
  const method = (values.method ?? (body.length > 0 ? 'POST' : 'GET')).toUpperCase();
  const headers: [string, string][] = values.header.map((h) => {
    const colon = h.indexOf(':');
    if (colon <= 0) throw usage(`--header expects 'Name: value', got "${h}"`);
    return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()];
  });

  // The target: a URL, or a service of the mesh.
  const target = positionals[0]!;
  let url: string;
  let via: string | undefined;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    if (values.from !== undefined) throw usage(`--from needs a service name as TARGET, not a URL (e.g. trellis load backend --from ${values.from})`);
    url = parseLoopbackUrl(target).url;
  } else {
    const m = SERVICE_TARGET.exec(target);
    if (!m) throw usage(`"${target}" is neither an http:// URL nor a service name (a DNS label such as backend, optionally followed by a path: backend/api)`);
    let control = values.control.replace(/\/+$/, '');
    if (!/^https?:\/\//.test(control)) control = `http://${control}`;
    const resolved = await resolveServiceTarget({ control, service: m[1]!, path: m[2] ?? '/', from: values.from });
    url = resolved.url;
    via = resolved.via;
    for (const [name, value] of resolved.headers) {
      const i = headers.findIndex(([n]) => n.toLowerCase() === name.toLowerCase());
      if (i >= 0) headers.splice(i, 1);
      headers.push([name, value]);
    }
  }

  const live = process.stderr.isTTY === true;
  const ac = new AbortController();
  const onSigint = (): void => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  if (!values.json) {
    process.stderr.write(`trellis load: ${method} ${url}${via ? ` (${via})` : ''}, ${rate} req/s for ${(durationMs / 1000).toFixed(1)}s\n`);
  }
  let result: LoadResult;
  try {
    result = await runLoad({
      url, method, headers, body, http2: values.http2, rate, durationMs, warmupMs, connections, timeoutMs,
      signal: ac.signal,
      onProgress: live ? (p) => process.stderr.write(`\r\x1b[K${formatProgress(p)}`) : undefined,
    });
  } finally {
    process.off('SIGINT', onSigint);
    if (live) process.stderr.write('\r\x1b[K');
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(via ? { ...result, via } : result)}\n`);
  } else {
    process.stdout.write(formatResult(result, via));
  }
  return 0;
}
