// `trellis up [FILE]`: runs a whole mesh on this machine and stops all of it on Ctrl-C.
import { existsSync } from 'node:fs';
import { relative } from 'node:path';
import { TrellisError } from '../errors.js';
import { LocalMesh, type MeshPrometheusOptions, type MeshState } from '../runner/local-mesh.js';
import { parseFlags, parseHostPort } from './args.js';
import { DEFAULT_ISOLATE_SUBNET } from '../runner/isolation/subnet.js';
import { DEFAULT_SIDECAR_UID } from '../runner/isolation/pods.js';
import { assertIsolationAvailable } from '../runner/isolation/preflight.js';
import { cleanStaleRuns } from '../runner/isolation/network.js';

export const help = `Usage: trellis up [FILE] [options]

Starts the control plane, every service instance of the mesh file and a sidecar for
each, on loopback ports chosen without clashes; waits for them to be healthy and
prints what runs where. Ctrl-C (SIGINT) or SIGTERM stops everything.

Arguments:
  FILE                     the mesh file (default: ./mesh.yaml)

Options:
  --admin [HOST:]PORT      control plane admin API (default: 127.0.0.1:15000; 0 picks a free port)
  --state-dir DIR          logs, data and state.json (default: .trellis beside the mesh file)
  --free-ports             ignore the fixed ports of the mesh file and pick free ones
  --prometheus [HOST:]PORT|off
                           start Prometheus (Debian's prometheus package, when installed)
                           scraping every proxy, listening here (default: a free port
                           on 127.0.0.1); off: don't
  --scrape-interval DURATION
                           its scrape interval, whole seconds (default: 5s)
  --isolate                every instance in its own network namespace (a pod) on a
                           bridge, its traffic intercepted by netfilter so that nothing
                           reaches an app but through its sidecar; services resolve by
                           name (http://backend:8080). Linux and root; needs ip
                           (iproute2), nft (nftables) and setpriv (util-linux)
  --isolate-subnet CIDR    the pods' private subnet (default: ${DEFAULT_ISOLATE_SUBNET})
  --isolate-uid UID        the uid and gid sidecars run as (default: ${DEFAULT_SIDECAR_UID})
  --isolate-cleanup        remove what killed \`trellis up --isolate\` runs left (namespaces,
                           links, hosts files) and exit

Example:
  trellis up examples/shop/topology-1.yaml
`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      admin: { type: 'string', default: '127.0.0.1:15000' },
      'state-dir': { type: 'string' },
      'free-ports': { type: 'boolean', default: false },
      prometheus: { type: 'string', default: '127.0.0.1:0' },
      'scrape-interval': { type: 'string', default: '5s' },
      isolate: { type: 'boolean', default: false },
      'isolate-subnet': { type: 'string', default: DEFAULT_ISOLATE_SUBNET },
      'isolate-uid': { type: 'string', default: String(DEFAULT_SIDECAR_UID) },
      'isolate-cleanup': { type: 'boolean', default: false },
    },
    true,
    'up',
  );
  if (values['isolate-cleanup']) {
    assertIsolationAvailable();
    const removed = await cleanStaleRuns();
    process.stdout.write(removed.length === 0 ? 'nothing to clean\n' : `removed runs ${removed.join(', ')}\n`);
    return 0;
  }
  if (positionals.length > 1) throw new TrellisError('TRELLIS_E_USAGE', { reason: 'give one mesh file; see `trellis up --help`' });
  const file = positionals[0] ?? 'mesh.yaml';
  if (!existsSync(file))
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `no mesh file at ${file}; give its path, e.g. \`trellis up examples/shop/topology-1.yaml\`` });

  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  const mesh = new LocalMesh({
    meshFile: file,
    admin: parseHostPort(values.admin, '--admin'),
    stateDir: values['state-dir'],
    freePorts: values['free-ports'],
    prometheus: prometheusOption(values.prometheus, values['scrape-interval']),
    ...(values.isolate ? { isolate: { subnet: values['isolate-subnet'], sidecarUid: isolateUid(values['isolate-uid']) } } : {}),
    log,
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log('stopping the mesh…');
      await mesh.stop();
      log('stopped.');
    })());
  const signalled = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  log(`starting the mesh from ${file}…`);
  try {
    await Promise.race([
      mesh.start(),
      signalled.then(() => {
        throw new Interrupted();
      }),
    ]);
  } catch (err) {
    await stop();
    if (err instanceof Interrupted) return 0;
    throw err;
  }
  log(table(mesh.state!, mesh.health, mesh.dashboardLoginUrl));
  await signalled;
  await stop();
  return 0;
}

class Interrupted extends Error {}

function isolateUid(raw: string): number {
  const uid = Number(raw);
  if (!/^\d+$/.test(raw) || uid < 1 || uid > 2 ** 31 - 1)
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `--isolate-uid expects a uid other than root's (1 to 2^31-1), got "${raw}"` });
  return uid;
}

/** `--prometheus` and `--scrape-interval`: where Prometheus listens and how often it scrapes, or false (off). */
function prometheusOption(listen: string, interval: string): MeshPrometheusOptions | false {
  if (listen === 'off') return false;
  const m = /^(\d+)(s|m)$/.exec(interval);
  const seconds = m ? Number(m[1]) * (m[2] === 'm' ? 60 : 1) : 0;
  if (seconds < 1)
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `--scrape-interval expects whole seconds or minutes such as 1s, 5s or 1m, got "${interval}"` });
  return { listen: parseHostPort(listen, '--prometheus'), scrapeIntervalS: seconds };
}

/** How to trust the localhost certificate of the HTTPS listeners, when one is served. */
function httpsHint(s: MeshState): string[] {
  const https = Object.values(s.publicUrls).find((u) => u.startsWith('https:'));
  if (s.localCa === undefined) return [];
  return [
    `HTTPS: the certificate is for localhost, signed by the local CA ${s.localCa}`,
    `  trust it: curl --cacert ${s.localCa} ${https ?? 'https://localhost:<port>'}/   (or import it into a browser)`,
    '',
  ];
}

function table(s: MeshState, health: ReadonlyMap<string, string>, dashboard: string | undefined): string {
  const rows = [['SERVICE', 'VERSION', 'INSTANCE', 'APP', 'SIDECAR', 'HEALTH']];
  for (const i of s.instances) {
    rows.push([
      i.service,
      i.version,
      i.id,
      `${i.app.host}:${i.app.port}`,
      `${i.inbound.host}:${i.inbound.port}`,
      i.command ? (health.get(i.id) ?? 'unknown') : 'external',
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
  const urls = Object.entries(s.publicUrls).map(([svc, url]) => `  ${svc.padEnd(12)} ${url}`);
  return [
    '',
    ...lines,
    '',
    ...(urls.length ? ['Open:', ...urls, ''] : []),
    ...httpsHint(s),
    ...s.skipped.map((k) => `Not running: ${k.service}: ${k.reason}`),
    ...(dashboard ? [`Dashboard: ${dashboard}   (logs this browser in; keep the link private)`] : []),
    `Control plane: ${s.control}   (try: npx trellis status${s.control === 'http://127.0.0.1:15000' ? '' : ` --control ${s.control}`})`,
    ...(s.prometheus ? [`Prometheus: ${s.prometheus.url}   (scraping every proxy; targets: ${s.control}/v1/prometheus/targets)`] : []),
    `Logs: ${relative(process.cwd(), s.logDir) || '.'}`,
    'Press Ctrl-C to stop.',
    '',
  ].join('\n');
}
