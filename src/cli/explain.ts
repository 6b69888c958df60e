// `trellis explain --from A METHOD URL [-H 'K: V']...`: what A's sidecar would do with
// that request now, asked of the sidecar itself (POST /explain: its router on its
// snapshot in force, its balancers' state), never recomputed here.
import { ADMIN_TOKEN_FLAGS } from './admin-client.js';
import type { AuthorizationExplainView, ExplainView } from '../api/views.js';
import { parseFlags } from './args.js';
import { adminAccess, adminJson, listProxies, proxiesOf, proxyUrl } from './mesh-admin.js';
import { printable } from './printable.js';
import { table } from './status.js';
import { usageError } from './target-flags.js';

export const help = `Usage: trellis explain --from SERVICE METHOD URL [-H 'Name: value']...

Asks SERVICE's sidecar what it would do with a request its app sends to URL (the host
names the destination, as the app's HTTP proxy listener takes it): which route matches,
and for every route tried before it the first condition that failed (method, hostname,
path, header, query); the matched rule's backends and weights, filters, timeouts, retry
and fault policies; and the candidate endpoints with their balancer state (load, EWMA,
ejected or not) and the destination's circuit breaker, as that sidecar sees them now.
Then a sidecar of the destination says what its RequestAuthentication makes of the
request's token and which AuthorizationPolicy would allow or refuse it from SERVICE's
certificate (dry-run and audit policies too). Nothing is sent.

Example:
  trellis explain --from frontend GET http://backend/api/products -H 'x-version: v2'

Options:
  --from SERVICE      the calling service (its sidecar answers)
  -H, --header 'K: V' a request header (repeatable)
  --instance ID       this instance's sidecar (default: the first connected one)
  --json              print the sidecar's answer as JSON
  --control URL       the control plane's admin URL (default: http://127.0.0.1:15000)
  --admin-token-file Fthe admin API's token (default: $TRELLIS_ADMIN_TOKEN, else the token
                      of the control plane at that address, found in ~/.trellis/controls/)
`;

const p = (s: unknown, max = 300): string => printable(String(s), max);

export function renderExplain(v: ExplainView): string {
  const lines: string[] = [];
  lines.push(`${p(v.request.method)} http://${p(v.request.authority)}${p(v.request.path, 1024)} from ${p(v.proxy)} (snapshot v${v.snapshotVersion ?? '-'})`);
  lines.push(`destination: ${v.destination === undefined ? '-' : p(v.destination)}`);
  if (v.routes.length > 0) {
    lines.push('', 'Routes, in the order the proxy tries them:');
    const rows = v.routes.map((r) => [
      r.result === 'matched' ? '=>' : '',
      p(r.name),
      r.result === 'matched' ? 'matched' : r.result === 'not-tried' ? 'not tried (an earlier route matched)' : `no: ${p(r.condition)} ${p(r.reason, 600)}`,
    ]);
    lines.push(table(['', 'ROUTE', 'RESULT'], rows));
  }
  if (v.error !== undefined) lines.push('', `answer: ${p(v.error.token)}: ${p(v.error.message, 600)}`);
  const m = v.matched;
  if (m !== undefined) {
    lines.push('', `Matched rule ${p(m.name)}:`);
    lines.push(`  backends: ${m.backends.map((b) => `${p(b.name)}=${b.weight}${b.invalid !== undefined ? ` (invalid: ${p(b.invalid)})` : ''}`).join(' ')}`);
    lines.push(`  filters:  ${m.filters.length === 0 ? 'none' : p(JSON.stringify(m.filters), 600)}`);
    lines.push(`  timeouts: ${m.timeouts === undefined ? 'none (the connection defaults)' : p(JSON.stringify(m.timeouts))}`);
    lines.push(`  retry:    ${m.retry === undefined ? 'none (refused connections only)' : p(JSON.stringify(m.retry))}`);
    lines.push(`  fault:    ${m.fault === undefined ? 'none' : p(JSON.stringify(m.fault))}`);
    lines.push(...renderAuthorization(v));
    lines.push('', 'Candidate endpoints, as this sidecar sees them now:');
    lines.push(
      v.endpoints.length === 0
        ? '  none'
        : table(
            ['BACKEND', 'ENDPOINT', 'ADDRESS', 'VERSION', 'BALANCER', 'IN FLIGHT', 'EWMA', 'STATE'],
            v.endpoints.map((e) => [
              p(e.backend),
              p(e.id),
              p(e.address),
              p(e.version),
              p(e.balancer),
              e.pending === undefined ? '-' : String(e.pending),
              e.ewmaMs === undefined ? '-' : `${e.ewmaMs}ms`,
              e.ejected ? `ejected (${p(e.reason)}, back in ${Math.ceil(e.ejectedForMs / 1000)}s)` : 'in rotation',
            ]),
          ),
    );
    for (const b of v.breakers) {
      lines.push(
        `circuit breaker of ${p(b.service)}: ${b.open ? 'OPEN' : 'closed'} (connections ${b.connections}/${b.maxConnections}, pending ${b.pending}/${b.maxPendingRequests}, requests ${b.requests}/${b.maxRequests}, retries ${b.retries}/${b.maxRetries})`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The destination sidecar's verdict on this caller's request: authentication, then authorization. */
function renderAuthorization(v: ExplainView): string[] {
  const z = v.authorization;
  if (z === null) return [`  authorization: not evaluated (no connected sidecar of ${p(v.destination ?? '-')} to ask)`];
  const out: string[] = [];
  const caller = z.caller === null ? 'a caller with no certificate' : p(z.caller);
  out.push(`  inbound:  ${p(z.proxy)} port ${z.port}, mTLS ${p(z.mtls)}, caller ${caller}`);
  const n = z.authentication;
  if (n !== undefined) {
    out.push(
      `  authentication: ${
        n.result === 'no-token'
          ? 'no token (no end user; policies decide)'
          : n.result === 'verified'
            ? `verified, end user ${p(n.principal)}`
            : `REFUSED: 401 invalid-token (${p(n.reason)}: ${p(n.description)}), before authorization`
      }`,
    );
  }
  if (!z.policies) out.push('  authorization: allow (no AuthorizationPolicy applies to the service)');
  else {
    out.push(
      `  authorization: ${z.decision === 'allow' ? 'allow' : 'DENY (403 forbidden)'}${z.policy !== undefined ? ` by ${p(z.policy)}` : ''}: ${p(z.reason, 600)}`,
    );
    if (z.dryRun !== undefined) out.push(`  dry run:  the dryRun policy ${p(z.dryRun.policy)} would refuse it (logged and counted, let through)`);
    if (z.audited.length > 0) out.push(`  audited:  ${z.audited.map((a) => p(a)).join(', ')}`);
  }
  return out;
}

/** The service and port a destination key names (`name`, or `name:port` for one port of a multi-port service). */
function destinationOf(key: string): { service: string; port: number | undefined } {
  const colon = key.lastIndexOf(':');
  if (colon === -1) return { service: key, port: undefined };
  const port = Number(key.slice(colon + 1));
  return Number.isInteger(port) ? { service: key.slice(0, colon), port } : { service: key, port: undefined };
}

/**
 * Asks a sidecar of the destination what its authentication and authorization make of
 * the request from the caller (`POST /explain/inbound`): the caller's sidecar holds
 * none of the destination's policies. Null when no sidecar of the destination is connected.
 */
async function inboundVerdict(
  access: Awaited<ReturnType<typeof adminAccess>>,
  view: ExplainView,
  body: ReturnType<typeof explainRequest>,
): Promise<AuthorizationExplainView | null> {
  if (view.destination === undefined || view.matched === undefined) return null;
  const { service, port } = destinationOf(view.destination);
  const target = (await listProxies(access)).find((x) => x.connected && x.service === service && x.kind !== 'gateway');
  if (target === undefined) return null;
  return adminJson<AuthorizationExplainView>(access, proxyUrl(target, '/explain/inbound'), {
    ...body,
    caller: view.caller ?? null,
    ...(port !== undefined ? { port } : {}),
  });
}

/** METHOD URL and headers into what a proxy's /explain takes. */
export function explainRequest(
  method: string,
  url: string,
  headers: readonly string[],
): { method: string; authority: string; target: string; headers: [string, string][] } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw usageError('explain', `"${url}" is not a URL (e.g. http://backend/api/products)`);
  }
  if (u.protocol !== 'http:') throw usageError('explain', 'the URL is http:// (the sidecar routes by the host it names)');
  const pairs: [string, string][] = headers.map((h) => {
    const colon = h.indexOf(':');
    if (colon <= 0) throw usageError('explain', `-H expects 'Name: value', got "${h}"`);
    return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()];
  });
  return { method: method.toUpperCase(), authority: u.host, target: `${u.pathname}${u.search}`, headers: pairs };
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      from: { type: 'string' },
      header: { type: 'string', short: 'H', multiple: true, default: [] },
      instance: { type: 'string' },
      json: { type: 'boolean', default: false },
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      ...ADMIN_TOKEN_FLAGS,
    },
    true,
    'explain',
  );
  if (values.from === undefined) throw usageError('explain', 'name the calling service with --from');
  if (positionals.length !== 2) throw usageError('explain', 'give METHOD and URL, e.g. GET http://backend/api/products');
  const body = explainRequest(positionals[0]!, positionals[1]!, values.header);
  const access = await adminAccess(values.control, values);
  const [proxy] = await proxiesOf(access, values.from, values.instance);
  const asked = await adminJson<ExplainView>(access, proxyUrl(proxy!, '/explain'), body);
  const view: ExplainView = { ...asked, authorization: await inboundVerdict(access, asked, body) };
  process.stdout.write(values.json ? `${JSON.stringify(view, null, 2)}\n` : renderExplain(view));
  return 0;
}
