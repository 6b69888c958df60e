// `trellis load TARGET`: constant-rate, open-model HTTP load against a URL on loopback
// or a service of a running mesh (optionally from inside the mesh, through a calling
// service's sidecar), reported as an HDR latency histogram, achieved vs asked rate and
// errors by kind. The engine is src/loadgen/run.ts; this file is flags and output.
import { formatProgress, formatResult, type LoadResult } from '../loadgen/result.js';
import { runLoad } from '../loadgen/run.js';
import { abortOnSigint, parseFlags } from './args.js';
import { durationFlag, joinNegativeValues, numberFlag, resolveTargetFlags, TARGET_FLAGS, TARGET_FLAGS_HELP, TARGET_NUMERIC_FLAGS } from './target-flags.js';

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
${TARGET_FLAGS_HELP}
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

const COMMAND = 'load';
const LOAD_NUMERIC_FLAGS = new Set([...TARGET_NUMERIC_FLAGS, '--rate', '--duration', '--warmup']);

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    joinNegativeValues(argv, LOAD_NUMERIC_FLAGS),
    {
      ...TARGET_FLAGS,
      rate: { type: 'string', default: '100' },
      duration: { type: 'string', default: '10s' },
      warmup: { type: 'string', default: '0s' },
      json: { type: 'boolean', default: false },
    },
    true,
    COMMAND,
  );
  const rate = numberFlag(COMMAND, '--rate', values.rate, false, 'requests per second');
  const durationMs = durationFlag(COMMAND, '--duration', values.duration, false);
  const warmupMs = durationFlag(COMMAND, '--warmup', values.warmup, true);
  const { url, via, method, headers, body, http2, connections, timeoutMs } = await resolveTargetFlags(COMMAND, positionals, values);

  const live = process.stderr.isTTY === true;
  const interrupt = abortOnSigint();
  if (!values.json) {
    process.stderr.write(`trellis load: ${method} ${url}${via ? ` (${via})` : ''}, ${rate} req/s for ${(durationMs / 1000).toFixed(1)}s\n`);
  }
  let result: LoadResult;
  try {
    result = await runLoad({
      url,
      method,
      headers,
      body,
      http2,
      rate,
      durationMs,
      warmupMs,
      connections,
      timeoutMs,
      signal: interrupt.signal,
      onProgress: live ? (p) => process.stderr.write(`\r\x1b[K${formatProgress(p)}`) : undefined,
    });
  } finally {
    interrupt.dispose();
    if (live) process.stderr.write('\r\x1b[K');
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(via ? { ...result, via } : result)}\n`);
  } else {
    process.stdout.write(formatResult(result, via));
  }
  return 0;
}
