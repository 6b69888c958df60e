// `trellis check --kubernetes`: the cluster half of the checks (the mesh half, proxies
// and certificates, is `trellis check`'s, read from the control plane's admin API):
// the API answers, the trellis.dev CRDs are installed, the sidecar injector's webhook
// configuration is there, and a control plane replica holds a fresh leader Lease.
import type { KubeConfig } from '@kubernetes/client-node';
import type https from 'node:https';
import type { CheckResult } from '../../cli/mesh-checks.js';
import { KubeStatusError, requestJson } from './reflector.js';
import type { Lease } from './leader-election.js';

/** The trellis.dev/v1alpha1 kinds whose CRDs must be installed. */
export const TRELLIS_CRD_KINDS = [
  'AuthorizationPolicy',
  'BackendPolicy',
  'ExternalService',
  'FaultInjection',
  'Mesh',
  'PeerAuthentication',
  'RateLimitPolicy',
  'RequestAuthentication',
  'RetryPolicy',
] as const;

export function crdName(kind: string): string {
  const lower = kind.toLowerCase();
  const plural = lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : lower.endsWith('s') ? `${lower}es` : `${lower}s`;
  return `${plural}.trellis.dev`;
}

export interface ClusterCheckOptions {
  readonly namespace?: string;
  readonly lease?: string;
  readonly webhook?: string;
  readonly now?: () => number;
}

export async function checkCluster(kc: KubeConfig, opts: ClusterCheckOptions = {}): Promise<CheckResult[]> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) return [{ level: 'fail', what: 'the kubeconfig has no current cluster', details: ['--kubeconfig FILE, or run in a pod'] }];
  const get = async (path: string): Promise<unknown> => {
    const o: https.RequestOptions = { method: 'GET', headers: { accept: 'application/json' } };
    await kc.applyToHTTPSOptions(o);
    return requestJson(new URL(cluster.server + path), o);
  };
  const exists = async (path: string): Promise<unknown> => {
    try {
      return await get(path);
    } catch (err) {
      if (err instanceof KubeStatusError && err.statusCode === 404) return undefined;
      throw err;
    }
  };
  try {
    const v = (await get('/version')) as { gitVersion?: unknown };
    const results: CheckResult[] = [
      {
        level: 'ok',
        what: `Kubernetes API answers at ${cluster.server} (${typeof v.gitVersion === 'string' ? v.gitVersion.slice(0, 40) : 'version unknown'})`,
        details: [],
      },
    ];
    const missing: string[] = [];
    for (const kind of TRELLIS_CRD_KINDS)
      if ((await exists(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crdName(kind)}`)) === undefined) missing.push(crdName(kind));
    results.push(
      missing.length === 0
        ? { level: 'ok', what: `the ${TRELLIS_CRD_KINDS.length} trellis.dev CRDs are installed`, details: [] }
        : { level: 'fail', what: `${missing.length} trellis.dev CRD(s) missing`, details: [...missing, 'trellis install | kubectl apply -f -'] },
    );
    const webhook = opts.webhook ?? 'trellis-sidecar-injector';
    results.push(
      (await exists(`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${webhook}`)) !== undefined
        ? { level: 'ok', what: `webhook configuration ${webhook} is installed`, details: [] }
        : { level: 'fail', what: `webhook configuration ${webhook} is missing`, details: ['pods will not get sidecars: trellis install | kubectl apply -f -'] },
    );
    const ns = opts.namespace ?? 'trellis-system';
    const name = opts.lease ?? 'trellis-control';
    const lease = (await exists(`/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`)) as Lease | undefined;
    const renewed = Date.parse(lease?.spec?.renewTime ?? '') || 0;
    const fresh = lease?.spec?.holderIdentity && renewed + (lease.spec.leaseDurationSeconds ?? 15) * 1000 > (opts.now ?? Date.now)();
    results.push(
      fresh
        ? { level: 'ok', what: `control plane ready: ${String(lease?.spec.holderIdentity).slice(0, 63)} holds lease ${ns}/${name}`, details: [] }
        : { level: 'fail', what: `no control plane replica holds a fresh lease ${ns}/${name}`, details: [`kubectl -n ${ns} get deploy trellis-control`] },
    );
    return results;
  } catch (err) {
    return [{ level: 'fail', what: `the Kubernetes API does not answer at ${cluster.server}`, details: [err instanceof Error ? err.message : String(err)] }];
  }
}
