// `trellis install`: prints the manifests that install Trellis on a Kubernetes cluster
// (the build of deploy/kubernetes/, rendered here so printing needs no kubectl), or with
// --apply pipes them to `kubectl apply --server-side -f -`.
import { spawn } from 'node:child_process';
import { installObjects, toYamlStream } from '../k8s/manifests.js';
import { parseFlags } from './args.js';

/** Usage text of `trellis install`. */
export const help = `Usage: trellis install [--apply] [--without-gateway-api]

Prints the manifests that install Trellis on a Kubernetes cluster: the namespace
trellis-system, the trellis.dev CRDs, the Gateway API CRDs (standard channel, v1.6.1),
least-privilege RBAC, the control plane Deployment (2 replicas) with the sidecar-
injection webhook, their Services and the MutatingWebhookConfiguration. The same
objects as \`kubectl kustomize deploy/kubernetes\`.

Options:
  --apply                 pipe them to \`kubectl apply --server-side -f -\` (needs kubectl
                          and a current context)
  --without-gateway-api   leave out the Gateway API CRDs (the cluster has them)

Example:
  trellis install | kubectl apply --server-side -f -
  trellis install --apply
`;

/** Runs the command; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { apply: { type: 'boolean' }, 'without-gateway-api': { type: 'boolean' } }, false, 'install');
  const yaml = toYamlStream(await installObjects({ withoutGatewayApi: values['without-gateway-api'] === true }));
  if (values.apply !== true) {
    process.stdout.write(yaml);
    return 0;
  }
  return await kubectlApply(yaml);
}

// Server-side apply: the Gateway API CRDs are larger than the annotation a client-side
// apply keeps (262144 bytes).
function kubectlApply(yaml: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('kubectl', ['apply', '--server-side', '-f', '-'], { stdio: ['pipe', 'inherit', 'inherit'] });
    child.on('error', (error) => {
      process.stderr.write(`trellis install: cannot run kubectl: ${error.message}\n`);
      resolve(1);
    });
    child.on('close', (code) => resolve(code ?? 1));
    child.stdin.on('error', () => {});
    child.stdin.end(yaml);
  });
}
