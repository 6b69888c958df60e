// `trellis pod-init`: what the injected trellis-init container runs. It installs the
// pod's netfilter rules (podInitRuleset: the isolation mode's ruleset, one source) in the
// pod's network namespace with `nft -f -`, and exits. Needs NET_ADMIN, nothing more.
import { spawnSync } from 'node:child_process';
import { TrellisError } from '../errors.js';
import { podInitRuleset } from '../k8s/inject.js';
import { parseFlags } from './args.js';

/** Usage text of `trellis pod-init`. */
export const help = `Usage: trellis pod-init --ports P,P... [--dns] [--dry-run]

Installs a Kubernetes pod's interception rules (run by the injected trellis-init
container, with NET_ADMIN): each app port redirected to the sidecar's inbound listener
(15006, 15007, ...), the sidecar's admin port 15020 open, and nothing leaving the pod
unless the sidecar (uid 1337) sent it. --dns also redirects the app's DNS queries (UDP
and TCP port 53) to the sidecar's responder on 127.0.0.1:15053. --dry-run prints the nft
ruleset instead.
`;

/** The ports flag as numbers: a comma list, empty for a pod without ports. */
export function parsePorts(value: string): number[] {
  if (value.trim() === '') return [];
  return value.split(',').map((p) => {
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 65535) throw new TrellisError('TRELLIS_E_USAGE', { reason: `--ports: "${p}" is not a port` });
    return n;
  });
}

/** Runs the command; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    { ports: { type: 'string', default: '' }, dns: { type: 'boolean', default: false }, 'dry-run': { type: 'boolean', default: false } },
    false,
    'pod-init',
  );
  const ruleset = podInitRuleset(parsePorts(values.ports), { dns: values.dns });
  if (values['dry-run']) {
    process.stdout.write(ruleset);
    return 0;
  }
  const r = spawnSync('nft', ['-f', '-'], { input: ruleset, stdio: ['pipe', 'inherit', 'inherit'] });
  if (r.error) {
    process.stderr.write(`trellis pod-init: cannot run nft (${r.error.message})\n`);
    return 1;
  }
  return r.status ?? 1;
}
