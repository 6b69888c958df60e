// The flags that say what a load command sends and where (TARGET, --from, --control,
// --method, --header, --body, --connections, --http2, --timeout...), parsed into the
// request and the loopback URL the engine (run.ts) takes; a service name is resolved
// through the mesh (src/loadgen/mesh-target.ts). Shared by `trellis load` and
// `trellis bench`, so both take the same flags with the same defaults and messages.
import type { ParseArgsConfig } from 'node:util';
import { TrellisError } from '../errors.js';
import { parseDuration } from './args.js';
import { resolveServiceTarget } from '../loadgen/mesh-target.js';
import { parseLoopbackUrl } from '../loadgen/target.js';
import { ADMIN_TOKEN_FLAGS, adminTarget, adminTokenHelp, controlUrl, type AdminTarget } from './admin-client.js';

/** parseFlags options for the target and request flags; spread them into a command's own. */
export const TARGET_FLAGS = {
  connections: { type: 'string' },
  method: { type: 'string' },
  header: { type: 'string', multiple: true, default: [] as string[] },
  body: { type: 'string' },
  'body-size': { type: 'string' },
  timeout: { type: 'string', default: '5s' },
  http2: { type: 'boolean', default: false },
  from: { type: 'string' },
  control: { type: 'string', default: 'http://127.0.0.1:15000' },
  ...ADMIN_TOKEN_FLAGS,
} satisfies NonNullable<ParseArgsConfig['options']>;

/** The help lines of TARGET_FLAGS. */
export const TARGET_FLAGS_HELP = `  --connections N    HTTP/1.1 keep-alive connections, one request in flight on each
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
${adminTokenHelp(21)}`;

export interface TargetFlagValues {
  readonly connections?: string;
  readonly method?: string;
  readonly header: readonly string[];
  readonly body?: string;
  readonly 'body-size'?: string;
  readonly timeout: string;
  readonly http2: boolean;
  readonly from?: string;
  readonly control: string;
  readonly 'admin-token-file'?: string | undefined;
}

/** The control plane of --control, with the admin token found for it. */
export function controlTarget(values: TargetFlagValues): Promise<AdminTarget> {
  return adminTarget(controlUrl(values.control), values);
}

/** What to send and where, ready for runLoad. */
export interface ResolvedLoadTarget {
  readonly url: string;
  /** How the target is reached, for people; undefined for a URL. */
  readonly via: string | undefined;
  readonly method: string;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Buffer;
  readonly http2: boolean;
  readonly connections: number;
  readonly timeoutMs: number;
}

/** A TRELLIS_E_USAGE error that points at the command's help. */
export function usageError(command: string, reason: string): TrellisError {
  return new TrellisError('TRELLIS_E_USAGE', { reason: `${reason}; see \`trellis ${command} --help\`` });
}

/** A duration flag with a unit (a bare number would be ambiguous between ms and s). */
export function durationFlag(command: string, flag: string, value: string, allowZero: boolean): number {
  const ok = /^\d+(?:\.\d+)?(?:ms|s|m|h)$/.test(value.trim());
  const ms = ok ? parseDuration(value) : NaN;
  if (!ok || !(ms > 0 || (allowZero && ms === 0))) {
    throw usageError(command, `${flag} must be a duration ${allowZero ? 'of 0 or more' : 'above 0'} with a unit, such as 500ms, 10s or 1m; got "${value}"`);
  }
  return ms;
}

/** A number above 0 (whole when `integer`). */
export function numberFlag(command: string, flag: string, value: string, integer: boolean, what: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw usageError(command, `${flag} must be ${integer ? 'a whole number' : 'a number'} above 0 (${what}); got "${value}"`);
  }
  return n;
}

/**
 * Joins `--rate -5` into `--rate=-5` for the given flags, so a negative value is
 * checked (and refused) with a clear message instead of read as an unknown flag.
 */
export function joinNegativeValues(argv: readonly string[], flags: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (flags.has(argv[i]!) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else {
      out.push(argv[i]!);
    }
  }
  return out;
}

/** Numeric flags of TARGET_FLAGS, for joinNegativeValues. */
export const TARGET_NUMERIC_FLAGS: readonly string[] = ['--timeout', '--connections', '--body-size'];

// A service's key: `name`, or `name.namespace` outside default (src/api/names.ts).
const SERVICE_TARGET = /^([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)?)(\/.*)?$/;

/**
 * Checks the request flags, then resolves TARGET (a loopback URL, or a service of the
 * mesh, optionally with a path) to the URL to load. Bad flags and unknown targets are
 * TRELLIS_E_USAGE; an unreachable control plane is TRELLIS_E_CONTROL_UNREACHABLE.
 */
export async function resolveTargetFlags(command: string, positionals: readonly string[], values: TargetFlagValues): Promise<ResolvedLoadTarget> {
  if (positionals.length !== 1) {
    throw usageError(
      command,
      positionals.length === 0
        ? 'name a TARGET: an http:// URL on loopback or a service name'
        : `expected one TARGET, got ${positionals.length}: ${positionals.join(' ')}`,
    );
  }
  const timeoutMs = durationFlag(command, '--timeout', values.timeout, false);
  const connections =
    values.connections === undefined ? (values.http2 ? 100 : 20) : numberFlag(command, '--connections', values.connections, true, 'connections');
  if (values.body !== undefined && values['body-size'] !== undefined) throw usageError(command, 'give --body or --body-size, not both');
  let body = Buffer.alloc(0);
  if (values.body !== undefined) body = Buffer.from(values.body, 'utf8');
  if (values['body-size'] !== undefined) {
    const size = Number(values['body-size']);
    if (!Number.isInteger(size) || size < 0 || size > 64 * 1024 * 1024)
      throw usageError(command, `--body-size must be a whole number of bytes from 0 to 67108864; got "${values['body-size']}"`);
    body = Buffer.alloc(size, 'x');
  }
  const method = (values.method ?? (body.length > 0 ? 'POST' : 'GET')).toUpperCase();
  const headers: [string, string][] = values.header.map((h) => {
    const colon = h.indexOf(':');
    if (colon <= 0) throw usageError(command, `--header expects 'Name: value', got "${h}"`);
    return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()];
  });

  const target = positionals[0]!;
  const base = { method, body, http2: values.http2, connections, timeoutMs };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    if (values.from !== undefined)
      throw usageError(command, `--from needs a service name as TARGET, not a URL (e.g. trellis ${command} backend --from ${values.from})`);
    return { ...base, url: parseLoopbackUrl(target).url, via: undefined, headers };
  }
  const m = SERVICE_TARGET.exec(target);
  if (!m)
    throw usageError(
      command,
      `"${target}" is neither an http:// URL nor a service name (a DNS label such as backend, or backend.namespace outside the default namespace, optionally followed by a path: backend/api)`,
    );
  const control = await controlTarget(values);
  const resolved = await resolveServiceTarget({ control: control.url, token: control.token, service: m[1]!, path: m[2] ?? '/', from: values.from });
  for (const [name, value] of resolved.headers) {
    const i = headers.findIndex(([n]) => n.toLowerCase() === name.toLowerCase());
    if (i >= 0) headers.splice(i, 1);
    headers.push([name, value]);
  }
  return { ...base, url: resolved.url, via: resolved.via, headers };
}
