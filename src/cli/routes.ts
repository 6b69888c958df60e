// `trellis routes SERVICE`: the routes a sidecar of SERVICE holds now, from the snapshot
// in force that its admin server shows (/config), with weights and policies.
import { ADMIN_TOKEN_FLAGS } from './admin-client.js';
import type { RouteEntry, RouteFilter, Snapshot, UpstreamSnapshot } from '../api/protocol.js';
import { parseFlags } from './args.js';
import { adminAccess, adminJson, proxiesOf, proxyUrl } from './mesh-admin.js';
import { printable } from './printable.js';
import { table } from './status.js';
import { usageError } from './target-flags.js';

export const help = `Usage: trellis routes SERVICE [options]

Shows the routes SERVICE's sidecar holds now (the snapshot in force, as the proxy has
accepted it): for each destination it calls, every rule in the order the proxy tries
them, what it matches, its backends and weights, its filters, timeouts, retries and
faults; then each destination's balancing, circuit breaker, outlier detection and
retry budget.

Options:
  --instance ID   this instance's sidecar (default: the first connected one)
  --json          print the snapshot's upstreams as JSON
  --control URL   the control plane's admin URL (default: http://127.0.0.1:15000)
  --admin-token-file Fthe admin API's token (default: $TRELLIS_ADMIN_TOKEN, else the token
                  of the control plane at that address, found in ~/.trellis/controls/)
`;

function matchText(r: RouteEntry): string {
  const m = r.match;
  const parts: string[] = [];
  if (r.hostname !== undefined) parts.push(`host ${r.hostname}`);
  if (m.method !== undefined) parts.push(m.method);
  if (m.path !== undefined) parts.push(`${m.path.type === 'PathPrefix' ? 'prefix' : m.path.type === 'Exact' ? 'path' : 'regex'} ${m.path.value}`);
  for (const h of m.headers ?? []) parts.push(`${h.name}${h.type === 'Exact' ? '=' : '~'}${h.value}`);
  for (const q of m.queryParams ?? []) parts.push(`?${q.name}${q.type === 'Exact' ? '=' : '~'}${q.value}`);
  return parts.length === 0 ? 'any' : parts.join(' ');
}

function filterText(f: RouteFilter): string {
  switch (f.type) {
    case 'RequestRedirect':
      return `redirect ${f.statusCode}`;
    case 'RequestMirror':
      return `mirror ${f.percent}% to ${f.backend}`;
    case 'URLRewrite':
      return 'rewrite';
    case 'RequestHeaderModifier':
      return 'request headers';
    case 'ResponseHeaderModifier':
      return 'response headers';
  }
}

/** The rule's policies in one cell: filters, timeouts, retry, fault. */
export function policyText(r: RouteEntry): string {
  const parts: string[] = (r.filters ?? []).map(filterText);
  if (r.timeouts?.requestMs !== undefined) parts.push(`timeout ${r.timeouts.requestMs}ms`);
  if (r.timeouts?.backendRequestMs !== undefined) parts.push(`attempt timeout ${r.timeouts.backendRequestMs}ms`);
  if (r.retry !== undefined) parts.push(`retry ${r.retry.attempts}x on ${r.retry.codes.length > 0 ? r.retry.codes.join(',') : 'resets'}`);
  if (r.fault?.delay !== undefined) parts.push(`fault delay ${r.fault.delay.ms}ms ${r.fault.delay.percent}%`);
  if (r.fault?.abort !== undefined) parts.push(`fault abort ${r.fault.abort.httpStatus ?? `grpc ${r.fault.abort.grpcStatus}`} ${r.fault.abort.percent}%`);
  return parts.join('; ') || '-';
}

function backendsText(r: RouteEntry): string {
  return r.backends.map((b) => `${b.backend}=${b.weight}${b.invalid !== undefined ? ` (invalid: ${b.invalid.reason})` : ''}`).join(' ');
}

/** Each destination's policies, one line. */
function destinationPolicies(u: UpstreamSnapshot): string {
  const b = u.balancing;
  const parts = [`protocol ${u.protocol}`];
  if (b !== undefined) parts.push(`balancer ${JSON.stringify(b).slice(0, 300)}`);
  if (u.retryBudget !== undefined) parts.push(`retry budget ${u.retryBudget.percent}% + ${u.retryBudget.minRetries}/${u.retryBudget.minIntervalMs}ms`);
  if (u.fault !== undefined) parts.push(`fault ${u.fault.policy}`);
  return parts.join(', ');
}

export function renderRoutes(proxy: string, snapshot: Snapshot): string {
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const [name, u] of Object.entries(snapshot.upstreams)) {
    for (const one of u.ports ?? [u]) {
      const dest = 'port' in one ? `${name}:${one.port}` : name;
      if (one.routes.length === 0) rows.push([dest, `default/${u.service}`, 'any', `${u.service}=1`, '-']);
      for (const r of one.routes) rows.push([dest, r.name, matchText(r), backendsText(r), policyText(r)]);
    }
    notes.push(`  ${name}: ${destinationPolicies(u)}`);
  }
  const body =
    rows.length === 0
      ? 'no destinations'
      : table(
          ['DESTINATION', 'ROUTE', 'MATCH', 'BACKENDS (weights)', 'POLICIES'],
          rows.map((r) => r.map((c) => printable(c, 300))),
        );
  return `Routes of ${printable(proxy)} (snapshot v${snapshot.version}), in the order the proxy tries them:\n${body}\n\nDestinations:\n${notes.map((n) => printable(n, 600)).join('\n') || '  none'}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      instance: { type: 'string' },
      json: { type: 'boolean', default: false },
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      ...ADMIN_TOKEN_FLAGS,
    },
    true,
    'routes',
  );
  if (positionals.length !== 1) throw usageError('routes', 'name one SERVICE');
  const access = await adminAccess(values.control, values);
  const [proxy] = await proxiesOf(access, positionals[0]!, values.instance);
  const config = await adminJson<{ id: string; snapshot: Snapshot | null }>(access, proxyUrl(proxy!, '/config'));
  if (config.snapshot === null) {
    process.stdout.write(`${printable(config.id)} has no snapshot yet (waiting for the control plane)\n`);
    return 1;
  }
  if (values.json)
    process.stdout.write(`${JSON.stringify({ proxy: config.id, version: config.snapshot.version, upstreams: config.snapshot.upstreams }, null, 2)}\n`);
  else process.stdout.write(renderRoutes(config.id, config.snapshot));
  return 0;
}
