// The `trellis` command: picks the subcommand and hands it the rest of argv.
// Each subcommand is one thin file exporting `help` and `run(argv)` → exit code.
import { TrellisError } from '../errors.js';

interface Command {
  summary: string;
  load: () => Promise<{ help: string; run: (argv: string[]) => Promise<number> }>;
}

const COMMANDS: Record<string, Command> = {
  up: { summary: 'run a whole mesh on this machine from a mesh file', load: () => import('./up.js') },
  control: { summary: 'run the control plane', load: () => import('./control.js') },
  proxy: { summary: 'run a sidecar proxy beside one service instance', load: () => import('./proxy.js') },
  validate: { summary: 'check config files and print every problem', load: () => import('./validate.js') },
  status: { summary: 'show services, instances, versions and health of a running mesh', load: () => import('./status.js') },
  load: { summary: 'send constant-rate HTTP load to a URL or a mesh service and report latency', load: () => import('./load.js') },
  bench: { summary: 'sweep the request rate to find where a URL or a mesh service stops meeting its SLO', load: () => import('./bench.js') },
  route: { summary: 'shift traffic between the versions of a service live: route weights SERVICE v1=90 v2=10', load: () => import('./route.js') },
  identity: { summary: "show the mesh CA and a proxy's SPIFFE identity, certificate chain and expiry", load: () => import('./identity.js') },
  check: { summary: 'check a running mesh: proxies connected and current, certificates and CA far from expiry', load: () => import('./check.js') },
  top: { summary: 'a live table of services (or routes) by request rate, success rate, p50 and p99', load: () => import('./top.js') },
  tap: { summary: "stream the requests through a service's sidecars as they happen, with filters", load: () => import('./tap.js') },
  routes: { summary: "show the routes a service's sidecar holds now, with weights and policies", load: () => import('./routes.js') },
  explain: { summary: "show which route a request from a service would take and why the others don't, and its endpoints", load: () => import('./explain.js') },
  logs: { summary: "print (or follow) a service's app, sidecar and access logs, interleaved by time", load: () => import('./logs.js') },
  trace: { summary: 'list recent traces, or show one as a tree of spans with per-hop timings', load: () => import('./trace.js') },
  inject: { summary: 'add the sidecar to Kubernetes manifests offline, as the injection webhook does', load: () => import('./inject.js') },
  webhook: { summary: 'serve the Kubernetes sidecar injection webhook (AdmissionReview at /inject)', load: () => import('./webhook.js') },
  'pod-init': { summary: "install a Kubernetes pod's interception rules (the injected init container runs it)", load: () => import('./pod-init.js') },
  canary: { summary: 'move traffic to a new version step by step, watching its errors and p99; roll back on a breach', load: () => import('./canary.js') },
  install: { summary: 'print (or --apply) the manifests that install Trellis on Kubernetes', load: () => import('./install.js') },
};

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `trellis: a service mesh that runs on one machine with one command

Usage: trellis <command> [options]

Commands:
${rows.join('\n')}

Run \`trellis <command> --help\` for the options of a command.
`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`trellis: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const mod = await command.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(mod.help);
    return 0;
  }
  try {
    return await mod.run(rest);
  } catch (err) {
    if (err instanceof TrellisError) {
      process.stderr.write(`trellis ${name}: ${err.message}\n`);
      return err.code === 'TRELLIS_E_USAGE' ? 2 : 1;
    }
    throw err;
  }
}

process.exitCode = await main(process.argv.slice(2));
