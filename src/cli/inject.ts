// `trellis inject -f FILE`: the webhook's injection done offline on manifests (Pods,
// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs; multi-document
// YAML), printing them injected, as `istioctl kube-inject` and `linkerd inject` do.
import { readFile } from 'node:fs/promises';
import { parseAllDocuments, stringify } from 'yaml';
import { TrellisError } from '../errors.js';
import { DEFAULT_INJECT_OPTIONS, injectManifest } from '../k8s/inject.js';
import { parseFlags } from './args.js';

/** Usage text of `trellis inject`. */
export const help = `Usage: trellis inject -f FILE|- [options]

Adds Trellis's sidecar to every pod in Kubernetes manifests, as the injection webhook
does, and prints them: Pods, and the pod templates of Deployments, StatefulSets,
DaemonSets, ReplicaSets, Jobs and CronJobs. Other documents pass through unchanged;
pods labelled trellis.dev/inject=disabled and pods already injected are left as they are.

Options:
  -f, --filename FILE   the manifests (multi-document YAML or JSON); - reads stdin
  --image IMAGE         the proxy image (default: ${DEFAULT_INJECT_OPTIONS.image})
  --control URL         the control plane URL sidecars join (default: ${DEFAULT_INJECT_OPTIONS.controlUrl})
  --no-http-proxy-env   do not set HTTP_PROXY on app containers
  --no-dns              do not intercept the pod's DNS (by default the init step redirects
                        port 53 to the sidecar, which answers mesh service names)

Example:
  trellis inject -f deployment.yaml | kubectl apply -f -
`;

async function readInput(file: string): Promise<string> {
  if (file !== '-') return readFile(file, 'utf8');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs the command; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      filename: { type: 'string', short: 'f' },
      image: { type: 'string' },
      control: { type: 'string' },
      'no-http-proxy-env': { type: 'boolean', default: false },
      'no-dns': { type: 'boolean', default: false },
    },
    false,
    'inject',
  );
  if (!values.filename)
    throw new TrellisError('TRELLIS_E_USAGE', { reason: 'name the manifests with -f FILE (or -f - for stdin); see `trellis inject --help`' });
  const text = await readInput(values.filename);
  const docs = parseAllDocuments(text);
  const out: string[] = [];
  let problems = 0;
  for (const [i, d] of docs.entries()) {
    if (d.errors.length > 0) {
      process.stderr.write(`trellis inject: document ${i + 1}: ${d.errors[0].message}\n`);
      problems++;
      continue;
    }
    const value = d.toJS();
    if (value === null || value === undefined) continue;
    const { doc, result } = injectManifest(value, {
      ...(values.image ? { image: values.image } : {}),
      ...(values.control ? { controlUrl: values.control } : {}),
      httpProxyEnv: !values['no-http-proxy-env'],
      dns: !values['no-dns'],
    });
    if (result && !result.injected) {
      const meta = value as { kind?: string; metadata?: { name?: string } };
      process.stderr.write(`trellis inject: ${meta.kind ?? 'document'} ${meta.metadata?.name ?? i + 1} left as it is: ${result.reason}\n`);
    }
    out.push(stringify(doc, { lineWidth: 0 }));
  }
  process.stdout.write(out.join('---\n'));
  return problems > 0 ? 1 : 0;
}
