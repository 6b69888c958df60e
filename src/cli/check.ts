// `trellis check`: is the running mesh well? Reads the control plane's admin API with the
// admin token and prints one line per check (mesh-checks.ts judges): the control plane
// answers and takes the credential, every proxy is connected and on its latest
// snapshot, certificates are far from expiry, and the CA's root and issuer are not
// within 30 days of theirs. Exit 1 on any failure; warnings alone exit 0.
import type { KubernetesView, ProxyView, ServiceView } from '../api/admin.js';
import type { CaView } from '../control/ca/certificate-authority.js';
import type { IssuedView } from '../control/ca/identity-service.js';
import { TrellisError } from '../errors.js';
import { parseFlags } from './args.js';
import { ADMIN_TOKEN_FLAGS, adminGetJson, adminTarget, adminTokenHelp, controlUrl, type AdminTarget } from './admin-client.js';
import { checkCa, checkKubernetesKinds, checkCertificates, checkConnected, checkSnapshots, renderChecks, type CheckResult } from './mesh-checks.js';

export const help = `Usage: trellis check [--control URL] [--admin-token-file FILE] [--kubernetes [--kubeconfig FILE]]

Checks a running mesh and prints one line per check:
  - the control plane answers, and takes the admin token
  - every proxy is connected, and every service has its instances
  - every proxy acknowledged its latest snapshot (none stuck on a rejected one)
  - workload certificates are far from expiry (renewed at about 2/3 of their life)
  - the CA's issuer and roots: a warning when one expires within 30 days
Exits 1 when a check fails (warnings alone exit 0).

With --kubernetes, first the cluster: the API answers, the trellis.dev CRDs and the
sidecar injector's webhook configuration are installed, a control plane replica holds
its leader Lease (trellis-system/trellis-control).

Options:
  --control URL   the control plane's admin URL (default: http://127.0.0.1:15000)
  --kubernetes    check the cluster too (in-cluster config, $KUBECONFIG or ~/.kube/config)
  --kubeconfig F  the kubeconfig file to use with --kubernetes
${adminTokenHelp(18)}
`;

const TIMEOUT_MS = 3000;
/** How long a proxy behind its latest snapshot is given to catch up (a push may be in flight). */
const SETTLE_MS = 2000;

async function reachable(target: AdminTarget): Promise<string | undefined> {
  try {
    const res = await fetch(`${target.url}/healthz`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    await res.body?.cancel();
    return res.ok ? undefined : `/healthz answered ${res.status}`;
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
  }
}

async function get<T>(target: AdminTarget, path: string): Promise<T> {
  return (await adminGetJson<T>(target, path, TIMEOUT_MS)) as T;
}

/** Every check of the mesh behind `target`, in order; stops early when the control plane is unreachable or refuses the token. */
export async function checkMesh(target: AdminTarget, now: () => number = Date.now, settleMs = SETTLE_MS): Promise<CheckResult[]> {
  const down = await reachable(target);
  if (down !== undefined)
    return [
      {
        level: 'fail',
        what: `the control plane does not answer at ${target.url}: ${down}`,
        details: ['is `trellis up` or `trellis control` running? (--control URL)'],
      },
    ];
  const results: CheckResult[] = [{ level: 'ok', what: `control plane answers at ${target.url}`, details: [] }];
  let proxies: ProxyView[];
  try {
    proxies = (await get<{ proxies: ProxyView[] }>(target, '/v1/proxies')).proxies;
  } catch (err) {
    if (err instanceof TrellisError && (err.code === 'TRELLIS_E_ADMIN_CREDENTIAL_MISSING' || err.code === 'TRELLIS_E_ADMIN_CREDENTIAL_REFUSED')) {
      return [...results, { level: 'fail', what: 'the admin credential is not accepted', details: [err.message] }];
    }
    throw err;
  }
  results.push({ level: 'ok', what: 'the admin credential is accepted', details: [] });
  const [{ services }, identity] = await Promise.all([
    get<{ services: ServiceView[] }>(target, '/v1/services'),
    get<{ ca: CaView; certificates: IssuedView[] }>(target, '/v1/identity'),
  ]);
  // On Kubernetes: a security kind never listed (RBAC, a CRD missing) keeps every proxy out.
  const kubernetes = await get<KubernetesView>(target, '/v1/kubernetes').catch(() => undefined);
  if (kubernetes?.enabled) results.push(checkKubernetesKinds(kubernetes.unlisted));
  results.push(...checkConnected(proxies, services));
  let snapshots = checkSnapshots(proxies);
  for (const deadline = Date.now() + settleMs; snapshots.level !== 'ok' && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 200));
    proxies = (await get<{ proxies: ProxyView[] }>(target, '/v1/proxies')).proxies;
    snapshots = checkSnapshots(proxies);
  }
  results.push(snapshots);
  results.push(checkCertificates(proxies, identity.certificates, now()));
  results.push(...checkCa(identity.ca, now()));
  return results;
}

/** The cluster checks; client-node is loaded only for them. */
async function checkKubernetes(kubeconfig: string | undefined): Promise<CheckResult[]> {
  const [{ loadKubeConfig }, { checkCluster }] = await Promise.all([import('../k8s/source/kube-config.js'), import('../k8s/source/cluster-checks.js')]);
  let kc: ReturnType<typeof loadKubeConfig>;
  try {
    kc = loadKubeConfig(kubeconfig);
  } catch (err) {
    return [{ level: 'fail', what: 'the kubeconfig could not be loaded', details: [err instanceof Error ? err.message : String(err)] }];
  }
  return checkCluster(kc);
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      kubernetes: { type: 'boolean', default: false },
      kubeconfig: { type: 'string' },
      ...ADMIN_TOKEN_FLAGS,
    },
    false,
    'check',
  );
  const target = await adminTarget(controlUrl(values.control), values);
  const cluster = values.kubernetes ? await checkKubernetes(values.kubeconfig) : [];
  const results = [...cluster, ...(await checkMesh(target))];
  process.stdout.write(renderChecks(target.url, results));
  return results.some((r) => r.level === 'fail') ? 1 : 0;
}
