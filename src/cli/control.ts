// `trellis control`: runs the control plane until SIGINT or SIGTERM.
import { statSync } from 'node:fs';
import path from 'node:path';
import { TrellisError } from '../errors.js';
import { formatProblem } from '../config/problems.js';
import { startControlPlane, type ControlPlane } from '../control/control-plane.js';
import type { ConfigProblem } from '../api/admin.js';
import { parseCount, parseDuration, parseFlags, parseHostPort } from './args.js';
import { CONTROL_LIMIT_FLAGS, controlServerLimits, DEFAULT_CONTROL_SERVER_LIMITS, type ControlServerLimits } from '../control/server-limits.js';
import { loadBootstrapSecret } from '../control/ca/bootstrap-secret.js';
import { ADMIN_TOKEN_ENV, adminTokenFile, loadOrCreateAdminToken, readAdminTokenFile, registerControl, unregisterControl } from '../security/admin-token.js';
import { dashboardLoginUrl } from '../security/dashboard-login.js';
import { EMPTY_CONFIG } from '../control/sources/mesh-config.js';
import { kubernetesControlOptions } from '../control/sources/kubernetes-control.js';
import { loadKubeConfig } from '../k8s/source/kube-config.js';

export const help = `Usage: trellis control [--config PATH]... [PATH...] [options]

Runs the control plane: loads the mesh config, health-checks every instance, streams
one snapshot to each proxy, and serves the admin API. Config files are watched; a
change that has problems is reported and the last good config stays in force. The
last good config is also kept in the state folder: a start whose files have problems
serves it and reports them (as a live edit does) until the files are fixed; with none
kept (a first start), it exits with the problems listed.

Options:
  --config PATH          a mesh or route file (repeatable; positional paths work too)
  --admin [HOST:]PORT    admin API and proxy stream address (default: 127.0.0.1:15000)
  --token T              join token proxies must present (Authorization: Bearer T);
                         default: the TRELLIS_TOKEN environment variable, if set
  --admin-token-file F   the admin API's token, from this file (see below)
  --kubernetes           also take services and endpoints from the Kubernetes API (Services,
                         EndpointSlices, pods), routes and policies (HTTPRoute,
                         GRPCRoute, TCPRoute, TLSRoute, ReferenceGrant, trellis.dev
                         policies) and Gateways whose GatewayClass names the controller
                         trellis.dev/gateway-controller (or of class trellis when no
                         such GatewayClass exists) with their TLS Secrets (an object that
                         fails the checks is skipped and logged), join proxies
                         by their ServiceAccount token (TokenReview, audience trellis) and
                         elect a leader with the Lease trellis-system/trellis-control;
                         config files are then optional (they add to the API's)
  --kubeconfig F         with --kubernetes: the cluster and credentials from this file
                         (default: in-cluster, else $KUBECONFIG or ~/.kube/config)
  --state-dir DIR        where the last good config (DIR/control/), the mesh CA (DIR/ca/,
                         key files mode 0600) and the bootstrap secret are kept;
                         default: .trellis beside the first config path, as \`trellis up\`
                         (with --kubernetes and no config: .trellis here)

Limits every client of the admin API, dashboard and proxy stream is held to:
  --max-connections N    open connections; more are closed as they arrive and counted in
                         trellis_control_connections_refused_total (default: ${DEFAULT_CONTROL_SERVER_LIMITS.maxConnections})
  --header-timeout D     a request's head must arrive within D (else 408; default: ${DEFAULT_CONTROL_SERVER_LIMITS.headersTimeoutMs / 1000}s)
  --request-timeout D    a whole request, body included, within D (default: ${DEFAULT_CONTROL_SERVER_LIMITS.requestTimeoutMs / 1000}s;
                         not less than --header-timeout; answers and proxy streams may last longer)
  --hello-timeout D      a proxy stream must say an accepted hello within D of its upgrade,
                         else it is ended and counted in trellis_control_hello_timeouts_total
                         (default: ${DEFAULT_CONTROL_SERVER_LIMITS.helloTimeoutMs / 1000}s)
  (durations: 500ms, 30s, 2m)

The admin API (everything but /healthz) needs the admin token as Authorization: Bearer:
--admin-token-file FILE, else $TRELLIS_ADMIN_TOKEN, else DIR/control/admin-token (0600,
made on first start). With a token file, the control plane leaves a pointer to it in
~/.trellis/controls/ ($TRELLIS_HOME) so that \`trellis status\` and the other commands
find it for this address with no flag; the pointer goes when it stops.

Proxies must say which instance they are with a bootstrap credential minted from the
bootstrap secret ($TRELLIS_BOOTSTRAP_SECRET, else DIR/control/bootstrap-secret, made on
first start). \`trellis up\` does this for every instance; for a proxy you start yourself,
mint one with \`trellis identity credential\` and give it as $TRELLIS_CREDENTIAL.

Example:
  trellis control --config examples/shop/topology-1.yaml --admin 15000
`;

/** `.trellis` beside the mesh file (or in the folder given), where `trellis up` keeps its state too. */
function defaultStateDir(configPath: string): string {
  let dir = path.dirname(path.resolve(configPath));
  try {
    if (statSync(configPath).isDirectory()) dir = path.resolve(configPath);
  } catch {
    // Missing: the loader reports it; the folder it would be in is as good a place as any.
  }
  return path.join(dir, '.trellis');
}

/** The duration flags and the limit each sets. */
const DURATION_FLAGS = [
  ['header-timeout', 'headersTimeoutMs'],
  ['request-timeout', 'requestTimeoutMs'],
  ['hello-timeout', 'helloTimeoutMs'],
] as const;

/**
 * The server limits the flags give (the defaults for those absent). Throws
 * TRELLIS_E_USAGE naming the flag of a value that is not a positive count or duration
 * of whole milliseconds, and when --header-timeout is longer than --request-timeout.
 */
export function limitsFromFlags(values: {
  readonly 'max-connections'?: string | undefined;
  readonly 'header-timeout'?: string | undefined;
  readonly 'request-timeout'?: string | undefined;
  readonly 'hello-timeout'?: string | undefined;
}): ControlServerLimits {
  const out: { -readonly [K in keyof ControlServerLimits]?: number } = {};
  const max = values['max-connections'];
  if (max !== undefined) out.maxConnections = parseCount(max, CONTROL_LIMIT_FLAGS.maxConnections);
  for (const [flag, key] of DURATION_FLAGS) {
    const v = values[flag];
    if (v === undefined) continue;
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch {
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `--${flag} expects a duration such as 500ms, 30s or 2m, got "${v}"` });
    }
    if (!Number.isSafeInteger(ms) || ms <= 0)
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `--${flag} expects a duration of at least 1ms in whole milliseconds, got "${v}"` });
    out[key] = ms;
  }
  return controlServerLimits(out);
}

function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && 'code' in err;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      config: { type: 'string', multiple: true, default: [] },
      admin: { type: 'string', default: '127.0.0.1:15000' },
      token: { type: 'string' },
      'state-dir': { type: 'string' },
      'admin-token-file': { type: 'string' },
      kubernetes: { type: 'boolean', default: false },
      kubeconfig: { type: 'string' },
      'max-connections': { type: 'string' },
      'header-timeout': { type: 'string' },
      'request-timeout': { type: 'string' },
      'hello-timeout': { type: 'string' },
    },
    true,
    'control',
  );
  const configPaths = [...values.config, ...positionals];
  if (values.kubeconfig !== undefined && !values.kubernetes) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: '--kubeconfig goes with --kubernetes' });
  }
  if (configPaths.length === 0 && !values.kubernetes) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: 'no config given: pass the mesh file, e.g. `trellis control --config mesh.yaml`' });
  }
  const admin = parseHostPort(values.admin, '--admin');
  const limits = limitsFromFlags(values);
  const stateDir = values['state-dir'] ?? (configPaths[0] !== undefined ? defaultStateDir(configPaths[0]) : path.resolve('.trellis'));
  let kubernetes: ReturnType<typeof kubernetesControlOptions> | undefined;
  if (values.kubernetes) {
    try {
      kubernetes = kubernetesControlOptions(loadKubeConfig(values.kubeconfig));
    } catch (err) {
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `--kubernetes: no usable kubeconfig (${err instanceof Error ? err.message : String(err)})` });
    }
  }

  let plane: ControlPlane;
  // The admin token's file, when it is in one: the CLI is pointed at it.
  let tokenFile: string | undefined;
  try {
    const token = values.token ?? process.env.TRELLIS_TOKEN;
    const bootstrapSecret = await loadBootstrapSecret(stateDir);
    let adminToken: string;
    const fromEnv = process.env[ADMIN_TOKEN_ENV]?.trim();
    if (values['admin-token-file'] !== undefined) {
      tokenFile = values['admin-token-file'];
      adminToken = await readAdminTokenFile(tokenFile).catch((err: unknown) => {
        throw new TrellisError('TRELLIS_E_USAGE', { reason: `--admin-token-file: ${err instanceof Error ? err.message : String(err)}` });
      });
    } else if (fromEnv) {
      adminToken = fromEnv;
    } else {
      adminToken = await loadOrCreateAdminToken(stateDir);
      tokenFile = adminTokenFile(stateDir);
    }
    plane = await startControlPlane({
      configPaths,
      admin,
      stateDir,
      bootstrapSecret,
      adminToken,
      limits,
      ...(token ? { token } : {}),
      ...(kubernetes ? { kubernetes } : {}),
      // On Kubernetes with no files: no routes or policies, every Service with its defaults.
      ...(kubernetes && configPaths.length === 0 ? { load: async () => ({ config: EMPTY_CONFIG, files: [], problems: [] }) } : {}),
    });
  } catch (err) {
    if (err instanceof TrellisError && err.code === 'TRELLIS_E_CONFIG_INVALID') {
      const problems = (err.params.problems ?? []) as ConfigProblem[];
      process.stderr.write(
        `trellis control: the config has ${problems.length} problem(s), and no last good config is kept in ${stateDir}; nothing was started:\n`,
      );
      for (const p of problems) process.stderr.write(`  ${formatProblem(p)}\n`);
      return 1;
    }
    if (err instanceof TrellisError && err.code === 'TRELLIS_E_CA_INVALID') {
      process.stderr.write(`trellis control: ${err.message}; nothing was started\n`);
      return 1;
    }
    if (isErrnoException(err) && (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL')) {
      process.stderr.write(
        `trellis control: cannot listen on ${admin.host}:${admin.port} (${err.code}); is another control plane running? Pick another address with --admin\n`,
      );
      return 1;
    }
    throw err;
  }

  if (tokenFile !== undefined) {
    await registerControl(plane.url, tokenFile).catch((err: unknown) =>
      process.stderr.write(
        `trellis control: could not leave the admin token's location for the CLI (${err instanceof Error ? err.message : String(err)}); give it --admin-token-file ${tokenFile}\n`,
      ),
    );
  }
  process.stdout.write(`trellis control: listening on ${plane.url} (proxies: --control ${plane.url}; admin token: ${tokenFile ?? `$${ADMIN_TOKEN_ENV}`})\n`);
  process.stdout.write(`trellis control: dashboard: ${dashboardLoginUrl(plane.url, plane.adminToken)}   (this link logs a browser in: keep it private)\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await plane.close();
  if (tokenFile !== undefined) await unregisterControl(plane.url);
  return 0;
}
