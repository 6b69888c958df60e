// The set-up the tests of `trellis control --kubernetes` share: a control plane in this
// process reading the Kubernetes API stand-in (no config files, no push debounce, quick
// retries), two replicas of it that elect a leader, and proxies that join it with a
// ServiceAccount token; for the end-to-end tests of real processes, the kubeconfig file
// and the pod the injector makes. Each test still applies its own objects and makes its
// own claims.
import { writeFile } from 'node:fs/promises';
import type { ProxyInfo, Snapshot } from '../../src/api/protocol.js';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../src/control/control-plane.js';
import { kubernetesControlOptions, type KubernetesControlOptions } from '../../src/control/sources/kubernetes-control.js';
import { EMPTY_CONFIG } from '../../src/control/sources/mesh-config.js';
import { ControlClient } from '../../src/proxy/control-client.js';
import { eventually } from './eventually.js';
import type { KubeApiStandIn, StandInObject } from './kube-api-stand-in.js';

export interface KubernetesPlaneOptions {
  /** Where the control plane's log lines go (default: nowhere). */
  readonly log?: (line: string) => void;
  /** The token of the control plane's kubeconfig (the stand-in's default: an admin). */
  readonly token?: string;
  /**
   * Options of the Kubernetes source over the defaults (list sync timeout 10 s, watch
   * backoff 10-50 ms, Lease retry 50 ms): a replica name to lead, a status resync, a
   * short sync timeout for a kind that never lists, another `list`.
   */
  readonly kubernetes?: Partial<KubernetesControlOptions>;
  /** Config files the control plane loads and watches as `trellis control` does; absent: none (the API is the only source). */
  readonly configPaths?: string[];
  /** Options of the control plane over the defaults (admin on port 0, push debounce 0). */
  readonly plane?: Partial<ControlPlaneOptions>;
}

/** A control plane on the stand-in `api`: what the API holds, and the config files when `configPaths` names some. */
export function startKubernetesControlPlane(api: KubeApiStandIn, o: KubernetesPlaneOptions = {}): Promise<ControlPlane> {
  return startControlPlane({
    ...(o.configPaths ? { configPaths: o.configPaths } : { configPaths: [], load: async () => ({ config: EMPTY_CONFIG, files: [], problems: [] }) }),
    admin: { host: '127.0.0.1', port: 0 },
    log: o.log ?? (() => {}),
    pushDebounceMs: 0,
    ...o.plane,
    kubernetes: {
      ...kubernetesControlOptions(api.kubeConfig(o.token)),
      leaseRetryMs: 50,
      syncTimeoutMs: 10_000,
      backoffMs: { initial: 10, max: 50 },
      ...o.kubernetes,
    },
  });
}

/**
 * Two replicas that write Gateway API status (resynced every 100 ms): control-a with
 * `leader-token`, started first and awaited until it leads, then control-b with
 * `follower-token`. Log lines are prefixed with the replica's name.
 */
export async function startLeaderAndFollower(api: KubeApiStandIn, log: (line: string) => void): Promise<{ leader: ControlPlane; follower: ControlPlane }> {
  const start = (replica: string, token: string): Promise<ControlPlane> =>
    startKubernetesControlPlane(api, { log: (line) => log(`${replica}: ${line}`), token, kubernetes: { replica, statusResyncMs: 100 } });
  const leader = await start('control-a', 'leader-token');
  await eventually(() => leader.kubernetes?.leading === true, { what: 'control-a to lead' });
  const follower = await start('control-b', 'follower-token');
  return { leader, follower };
}

/** A condition of a Gateway API status (a Gateway's, a listener's, a route's per parent), as the stand-in holds it. */
export interface StatusCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

/** A proxy on the control stream: the snapshots it applied and the refusals it was told (`code: message`). */
export interface JoinedProxy {
  readonly client: ControlClient;
  readonly applied: Snapshot[];
  readonly fatal: string[];
}

/** Instance `<service>-0`, version v1, a sidecar, unless `info` says otherwise. */
export function proxyInfo(service: string, info: Partial<ProxyInfo> = {}): ProxyInfo {
  return { id: `${service}-0`, service, version: 'v1', kind: 'sidecar', upstreams: [], pid: 1, admin: { host: '127.0.0.1', port: 1 }, ...info };
}

/** Starts a proxy's control stream to `plane` with `credential` (a ServiceAccount token); added to `clients`, which the test stops after. */
export function joinControlPlane(plane: ControlPlane, info: ProxyInfo, credential: string, clients: ControlClient[]): JoinedProxy {
  const applied: Snapshot[] = [];
  const fatal: string[] = [];
  const client = new ControlClient({
    url: plane.url,
    info,
    credential,
    apply: (s) => void applied.push(s),
    onFatal: (code, message) => void fatal.push(`${code}: ${message}`),
  });
  clients.push(client);
  client.start();
  return { client, applied, fatal };
}

/** Stops the proxies' streams, then the control planes (in order), then the stand-in: each may be absent (a `before` that failed). */
export async function stopKubernetesTest(
  clients: readonly ControlClient[],
  planes: readonly (ControlPlane | undefined)[],
  api: KubeApiStandIn | undefined,
): Promise<void> {
  for (const c of clients) c.stop();
  for (const p of planes) await p?.close();
  await api?.close();
}

/** Writes a kubeconfig file for `trellis control --kubeconfig`: the stand-in, with `token`. */
export async function writeKubeconfig(api: KubeApiStandIn, file: string, token = 'control-token'): Promise<void> {
  await writeFile(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'stand-in', cluster: { server: api.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'control', user: { token } }],
      contexts: [{ name: 'c', context: { cluster: 'stand-in', user: 'control' } }],
      'current-context': 'c',
    }),
  );
}

/**
 * Pod backend-0 of service backend in namespace shop (ServiceAccount shop-backend), as the
 * injector makes it: its sidecar declares the inbound port it listens on, its app `appPort`.
 */
export function injectedBackendPod(inbound: number, appPort: number): StandInObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'backend-0', namespace: 'shop', labels: { app: 'backend', version: 'v1' } },
    spec: {
      serviceAccountName: 'shop-backend',
      initContainers: [{ name: 'trellis-proxy', restartPolicy: 'Always', ports: [{ name: 'trellis-in-0', containerPort: inbound }] }],
      containers: [{ name: 'app', ports: [{ containerPort: appPort }] }],
    },
  };
}
