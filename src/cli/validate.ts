// `trellis validate FILE...`: loads config files and directories exactly as the
// control plane would, and prints every problem (file:line:col: path: message), so
// bad config is caught before it is deployed. Exit 0 when clean, 1 on problems.
import { formatProblem, loadConfig } from '../config/load.js';
import { TrellisError } from '../errors.js';
import { parseFlags } from './args.js';

/** Usage text of `trellis validate`. */
export const help = `Usage: trellis validate FILE|DIR...

Checks Trellis config files (Mesh, HTTPRoute, GRPCRoute, TCPRoute) and prints
every problem with its file, line, column and field path. Directories contribute
their *.yaml and *.yml files; the Mesh's spec.include is followed.

Exit status: 0 when the config is valid, 1 when it has problems, 2 on bad usage.

Example:
  trellis validate examples/shop/topology-1.yaml
  trellis validate config/
`;

/** Runs the command; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, true, 'validate');
  if (positionals.length === 0) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: 'name at least one config file or directory; see `trellis validate --help`' });
  }
  const result = await loadConfig(positionals);
  // Warnings go to stderr after the problems, each line marked; they do not fail the check.
  const warnings = result.warnings.map((p) => `warning: ${formatProblem(p)}\n`).join('');
  if (result.problems.length > 0 || !result.config) {
    process.stderr.write(result.problems.map((p) => `${formatProblem(p)}\n`).join('') + warnings);
    return 1;
  }
  process.stderr.write(warnings);
  const { services, routes, authorizationPolicies } = result.config;
  const warned = result.warnings.length > 0 ? `, ${result.warnings.length} warning${result.warnings.length === 1 ? '' : 's'}` : '';
  const authz =
    authorizationPolicies.length > 0 ? `, ${authorizationPolicies.length} authorization polic${authorizationPolicies.length === 1 ? 'y' : 'ies'}` : '';
  process.stdout.write(`ok: ${result.files.length} files, ${services.length} services, ${routes.length} routes${authz}${warned}\n`);
  return 0;
}
