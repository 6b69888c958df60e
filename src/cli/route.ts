// `trellis route weights SERVICE v1=90 v2=10`: a manual shift of traffic between the
// versions of a service in a running mesh. The control plane edits the route files
// (they stay the source of truth) and the command waits for every proxy that calls
// the service to acknowledge the change.
import { TrellisError } from '../errors.js';
import { MAX_WEIGHT } from '../api/admin.js';
import { parseDuration, parseFlags } from './args.js';
import { table } from './status.js';
import {
  ackText,
  adminApi,
  ADMIN_FLAGS,
  adminFlagsHelp,
  applyWeights,
  readWeights,
  share,
  type AppliedWeights,
  type Weights,
  type WeightsView,
} from './weights-client.js';

export const help = `Usage: trellis route weights SERVICE [VERSION=WEIGHT...] [options]

Sets the traffic split between the versions of SERVICE in the running mesh, live.
Weights are proportions (v1=9 v2=1 is the same split as v1=90 v2=10); versions not
given get 0. With no VERSION=WEIGHT, prints the split in force.

The config files stay the source of truth: the control plane writes the weights into
the HTTPRoute rule that splits SERVICE between its versions, in the file it came from
(comments and layout kept), or, when no rule does, into a new route file
<SERVICE>-weights.yaml beside the mesh file, included from it. Rules that send some
requests to one version (a header match, say) are left alone. The command returns
once every proxy that calls SERVICE has acknowledged the change, and says how long
that took.

Options:
${adminFlagsHelp(22)}
  --timeout D         how long to wait for the proxies' acknowledgements (default 10s)
  --json              print the control plane's answer as JSON

Exit status: 0 when every proxy that calls SERVICE acknowledged the new weights; 1
when the change was refused (the message says why) or not acknowledged in time; 2 for
bad arguments, an unknown service or an unknown version.

Examples:
  trellis route weights backend v1=90 v2=10
  trellis route weights backend v2=100
  trellis route weights backend
`;

const VERSION_WEIGHT = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)=(\d+)$/;

/** Parses `v1=90 v2=10`; TRELLIS_E_USAGE for anything else, duplicates and all-zero. */
export function parseWeights(args: readonly string[]): Weights {
  const weights: Weights = {};
  for (const arg of args) {
    const m = VERSION_WEIGHT.exec(arg);
    if (!m) {
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `"${arg}" is not VERSION=WEIGHT with a whole number, e.g. v1=90 v2=10` });
    }
    const version = m[1]!;
    const weight = Number(m[3]);
    if (version in weights) throw new TrellisError('TRELLIS_E_USAGE', { reason: `version ${version} is given twice` });
    if (weight > MAX_WEIGHT)
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `the weight of ${version} is over ${MAX_WEIGHT}; weights are proportions, e.g. v1=90 v2=10` });
    weights[version] = weight;
  }
  if (Object.values(weights).every((w) => w === 0)) {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: 'every weight is 0, so requests would have nowhere to go; give at least one version a weight above 0',
    });
  }
  return weights;
}

function where(view: { rules: WeightsView['rules'] }, created: string | null): string {
  if (created) return `no rule split it, so ${created} was written and included from the mesh file`;
  return `split by ${view.rules.map((r) => `${r.file} (HTTPRoute ${r.route}, rule ${r.rule})`).join(' and ')}`;
}

function weightCell(w: Weights | null, v: string): string {
  return w ? `${w[v] ?? 0} (${share(w, v)})` : '-';
}

export function renderChange(service: string, applied: AppliedWeights): string {
  const { change } = applied;
  const versions = Object.keys(change.after);
  const rows = versions.map((v) => [`  ${v}`, weightCell(change.before, v), weightCell(change.after, v)]);
  const lines = [
    `${service}: ${change.changed ? '' : 'already so, nothing to change; '}${where(change, change.created)}`,
    table(['  VERSION', 'BEFORE', 'AFTER'], rows),
  ];
  if (!change.before) lines.push('  (before: no rule split the versions; requests went to every instance in turn)');
  lines.push(ackText(service, applied));
  return `${lines.join('\n')}\n`;
}

function renderView(view: WeightsView): string {
  if (!view.weights)
    return `${view.service}: no HTTPRoute rule splits it between its versions (${view.versions.join(', ')}); requests go to every instance in turn\n`;
  const rows = view.versions.map((v) => [`  ${v}`, weightCell(view.weights, v)]);
  return `${view.service}: ${where(view, null)}\n${table(['  VERSION', 'WEIGHT'], rows)}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      ...ADMIN_FLAGS,
      timeout: { type: 'string', default: '10s' },
      json: { type: 'boolean', default: false },
    },
    true,
    'route',
  );
  const [sub, service, ...rest] = positionals;
  if (sub !== 'weights') {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: sub
        ? `unknown route command "${sub}"; try \`trellis route weights SERVICE v1=90 v2=10\``
        : 'say what to do, e.g. `trellis route weights SERVICE v1=90 v2=10`',
    });
  }
  if (!service) throw new TrellisError('TRELLIS_E_USAGE', { reason: 'name the service, e.g. `trellis route weights backend v1=90 v2=10`' });
  const base = await adminApi(values);
  const timeoutMs = parseDuration(values.timeout);
  if (rest.length === 0) {
    const view = await readWeights(base, service);
    process.stdout.write(values.json ? `${JSON.stringify(view, null, 2)}\n` : renderView(view));
    return 0;
  }
  const applied = await applyWeights(base, service, parseWeights(rest), timeoutMs);
  process.stdout.write(
    values.json ? `${JSON.stringify({ ...applied.change, elapsedMs: Math.round(applied.elapsedMs) }, null, 2)}\n` : renderChange(service, applied),
  );
  return 0;
}
