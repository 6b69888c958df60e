// Sidecar injection for Kubernetes: turns a pod (or a workload's pod template) into the
// same pod with Trellis's sidecar, as the mutating webhook (webhook.ts) and
// `trellis inject` (cli/inject.ts) both do. Pure: a pod in, a new pod out, nothing read
// from the cluster. What it adds (names fixed by the Kubernetes contract of issue 18):
//
//   trellis-init   an init container that installs the pod's netfilter rules, the same
//                  ruleset the isolation mode installs (src/interception/nft-rules.ts,
//                  through podInitRuleset below): app ports redirected to the sidecar's
//                  inbound listeners, nothing leaving the pod unless the sidecar's uid sent
//                  it. It needs NET_ADMIN (restricted Pod Security needs a CNI plugin).
//   trellis-proxy  the sidecar as a native sidecar (an initContainers entry with
//                  restartPolicy Always, Kubernetes >= 1.29): uid 1337, non-root, probes on
//                  its admin port 15020, a projected ServiceAccount token (audience trellis)
//                  it joins the control plane with (--credential-file).
//
// Order: trellis-init, then trellis-proxy, then the pod's own init containers. Once the
// rules are in, an app init container can reach nothing except through the sidecar, and
// the kubelet starts the next init container only after a native sidecar's startupProbe
// passes; so the proxy goes before them and they can use the mesh (Istio does the same
// with native sidecars: istio-init, then istio-proxy, then the app's init containers).
//
// The app's HTTP probes are rewritten to the sidecar's /app-health/<container>/<kind> on
// 15020 (Istio's "probe rewrite"): with STRICT mTLS a kubelet's plain-text probe to an app
// port would be redirected to the inbound listener and refused. The original probes go to
// the sidecar in TRELLIS_APP_PROBES, and it calls the app on 127.0.0.1 itself.
import { podRuleset } from '../interception/nft-rules.js';
import { APP_HEALTH_PREFIX, APP_PROBES_ENV } from '../proxy/app-health.js';

// Loose Kubernetes shapes: only the fields injection reads or writes are typed; every other
// field of a pod is kept as it came (an index signature), so nothing a user wrote is lost.
type Obj = Record<string, unknown>;

export interface K8sProbe extends Obj {
  httpGet?: { path?: string; port: number | string; scheme?: string; host?: string; httpHeaders?: { name: string; value: string }[] };
}

export interface K8sContainer extends Obj {
  name: string;
  image?: string;
  ports?: { containerPort: number; name?: string; protocol?: string }[];
  env?: Obj[];
  readinessProbe?: K8sProbe;
  livenessProbe?: K8sProbe;
  startupProbe?: K8sProbe;
  restartPolicy?: string;
}

export interface K8sPodSpec extends Obj {
  containers: K8sContainer[];
  initContainers?: K8sContainer[];
  volumes?: Obj[];
  hostNetwork?: boolean;
  serviceAccountName?: string;
}

export interface K8sPod extends Obj {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } & Obj;
  spec?: K8sPodSpec;
}

/** The label that opts a pod out (`disabled`), and a namespace in (`enabled`, read by the webhook configuration). */
export const INJECT_LABEL = 'trellis.dev/inject';
/** Set on every pod injected: what `trellis inject` and the webhook check to not inject twice. */
export const INJECTED_ANNOTATION = 'trellis.dev/injected';
/** A pod annotation naming the mesh service, when its labels do not. */
export const SERVICE_ANNOTATION = 'trellis.dev/service';

export const SIDECAR_NAME = 'trellis-proxy';
export const INIT_NAME = 'trellis-init';
/** The sidecar's uid and gid (Istio's 1337): its sockets are never redirected. */
export const SIDECAR_UID = 1337;
/** The sidecar's ports in an injected pod (the Kubernetes contract of issue 18). */
export const K8S_POD_PORTS = { inbound: 15006, outbound: 15001, admin: 15020, dns: 15053 } as const;
export const TOKEN_VOLUME = 'trellis-token';
export const TOKEN_DIR = '/var/run/secrets/trellis';
export { APP_PROBES_ENV } from '../proxy/app-health.js';

export interface InjectOptions {
  readonly image: string;
  readonly controlUrl: string;
  /** The audience of the projected token; the control plane checks it with a TokenReview. */
  readonly tokenAudience: string;
  readonly tokenExpirationSeconds: number;
  readonly resources: { requests: Record<string, string>; limits: Record<string, string> };
  /** Set HTTP_PROXY on app containers to the sidecar's 127.0.0.1:15001 (their way out of the pod). */
  readonly httpProxyEnv: boolean;
  /**
   * Intercept the pod's DNS: the init step redirects port 53 to the sidecar's responder
   * (127.0.0.1:15053), which answers mesh service names with a loopback address it listens
   * on, so apps reach services by name without HTTP_PROXY (src/proxy/dns/).
   */
  readonly dns: boolean;
}

export const DEFAULT_INJECT_OPTIONS: InjectOptions = {
  image: 'ghcr.io/trellis-mesh/trellis:0.1.0',
  controlUrl: 'http://trellis-control.trellis-system.svc:15000',
  tokenAudience: 'trellis',
  tokenExpirationSeconds: 3600,
  // Istio's sidecar defaults are 100m / 128Mi requests; a Node proxy idles near 60 MiB RSS.
  resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
  httpProxyEnv: true,
  dns: true,
};

export type InjectResult =
  | { readonly injected: true; readonly pod: K8sPod }
  | { readonly injected: false; readonly reason: 'opted-out' | 'already-injected' | 'host-network' | 'no-containers' };

/** Why a pod is left as it is, or undefined when it is to be injected. */
export function skipReason(pod: K8sPod): Exclude<InjectResult, { injected: true }>['reason'] | undefined {
  if (pod.metadata?.labels?.[INJECT_LABEL] === 'disabled') return 'opted-out';
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) return 'no-containers';
  if (pod.metadata?.annotations?.[INJECTED_ANNOTATION] !== undefined) return 'already-injected';
  if ([...(spec.initContainers ?? []), ...spec.containers].some((c) => c?.name === SIDECAR_NAME || c?.name === INIT_NAME)) return 'already-injected';
  // Rules installed in a hostNetwork pod would be the node's: never.
  if (spec.hostNetwork === true) return 'host-network';
  return undefined;
}

/** The mesh service a pod's sidecar joins as: its annotation, else its app labels, else its ServiceAccount. */
export function meshService(pod: K8sPod): string {
  const labels = pod.metadata?.labels ?? {};
  return (
    pod.metadata?.annotations?.[SERVICE_ANNOTATION] ??
    labels['app.kubernetes.io/name'] ??
    labels.app ??
    pod.spec?.serviceAccountName ??
    pod.metadata?.name ??
    'default'
  );
}

/** The pod's version (the contract: label `version`, else `app.kubernetes.io/version`, else `default`). */
export function meshVersion(pod: K8sPod): string {
  const labels = pod.metadata?.labels ?? {};
  return labels.version ?? labels['app.kubernetes.io/version'] ?? 'default';
}

/** The app's TCP ports, in container order, that the sidecar fronts (each gets inbound listener 15006 + i). */
export function appPorts(pod: K8sPod): number[] {
  const ports: number[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) {
      if ((p.protocol ?? 'TCP') !== 'TCP' || !Number.isInteger(p.containerPort)) continue;
      if (!ports.includes(p.containerPort)) ports.push(p.containerPort);
    }
  }
  return ports;
}

/**
 * The pod's netfilter rules: the isolation mode's ruleset (one function, podRuleset), with
 * each app port redirected to its inbound listener and the admin port open (the kubelet's
 * probes reach it); with `dns`, the app's DNS queries redirected to the sidecar's
 * responder. No outbound redirects per address: the app's way out is the sidecar on
 * loopback (the HTTP proxy, or a mesh name's 127.255.x.y the responder gave it).
 */
export function podInitRuleset(ports: readonly number[], options: { dns?: boolean } = {}): string {
  return podRuleset({
    table: 'trellis',
    sidecarUid: SIDECAR_UID,
    inbound: ports.map((appPort, i) => ({ appPort, listener: K8S_POD_PORTS.inbound + i })),
    outbound: [],
    openPorts: [K8S_POD_PORTS.admin],
    probeSources: [],
    ...(options.dns === true ? { dnsRedirect: K8S_POD_PORTS.dns } : {}),
  });
}

const PROBE_KINDS = [
  ['readinessProbe', 'readiness'],
  ['livenessProbe', 'liveness'],
  ['startupProbe', 'startup'],
] as const;

/** Rewrites one container's HTTP probes to the sidecar's /app-health, returning the originals by their new path. */
function rewriteProbes(c: K8sContainer, originals: Record<string, unknown>): void {
  for (const [field, kind] of PROBE_KINDS) {
    const probe = c[field];
    if (!probe?.httpGet) continue;
    const port = resolvePort(c, probe.httpGet.port);
    if (port === undefined) continue; // a named port the container does not declare: the kubelet would fail it too
    const path = `${APP_HEALTH_PREFIX}${c.name}/${kind}`;
    originals[path] = { httpGet: { path: probe.httpGet.path ?? '/', port, scheme: probe.httpGet.scheme ?? 'HTTP', httpHeaders: probe.httpGet.httpHeaders } };
    const { host: _host, httpHeaders: _h, scheme: _s, ...rest } = probe.httpGet;
    c[field] = { ...probe, httpGet: { ...rest, path, port: K8S_POD_PORTS.admin, scheme: 'HTTP' } };
  }
}

function resolvePort(c: K8sContainer, port: number | string): number | undefined {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

function proxyArgs(pod: K8sPod, ports: readonly number[], o: InjectOptions): string[] {
  const args = ['proxy', '--service', meshService(pod), '--version', meshVersion(pod), '--control', o.controlUrl];
  args.push('--credential-file', `${TOKEN_DIR}/token`);
  args.push('--admin', `0.0.0.0:${K8S_POD_PORTS.admin}`, '--http-proxy', `127.0.0.1:${K8S_POD_PORTS.outbound}`);
  if (o.dns) args.push('--dns-listen', `127.0.0.1:${K8S_POD_PORTS.dns}`);
  // Service port = container port: a Service that maps port 80 to targetPort 8080 is
  // matched by the control plane on its targetPort (k8s-source).
  for (const [i, p] of ports.entries()) args.push('--port', `${p}=127.0.0.1:${p},0.0.0.0:${K8S_POD_PORTS.inbound + i}`);
  return args;
}

function sidecar(pod: K8sPod, ports: readonly number[], probes: Record<string, unknown>, o: InjectOptions): K8sContainer {
  const adminProbe = (path: string, extra: Obj): Obj => ({ httpGet: { path, port: K8S_POD_PORTS.admin }, ...extra });
  return {
    name: SIDECAR_NAME,
    image: o.image,
    args: proxyArgs(pod, ports, o),
    restartPolicy: 'Always',
    ports: [
      { name: 'trellis-admin', containerPort: K8S_POD_PORTS.admin, protocol: 'TCP' },
      ...ports.map((_, i) => ({ name: `trellis-in-${i}`, containerPort: K8S_POD_PORTS.inbound + i, protocol: 'TCP' })),
      // On 127.0.0.1 only (the init step's redirect reaches it); listed so the port is known taken.
      ...(o.dns
        ? [
            { name: 'trellis-dns', containerPort: K8S_POD_PORTS.dns, protocol: 'UDP' },
            { name: 'trellis-dns-tcp', containerPort: K8S_POD_PORTS.dns, protocol: 'TCP' },
          ]
        : []),
    ],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: APP_PROBES_ENV, value: JSON.stringify(probes) },
    ],
    resources: structuredClone(o.resources),
    securityContext: {
      runAsUser: SIDECAR_UID,
      runAsGroup: SIDECAR_UID,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    // Startup: up to 60 s to get its snapshot and certificate; the next init container and
    // the app wait for it. Liveness asks only whether the process answers (/live), so a
    // control plane that is down never restarts a proxy; readiness (/ready) asks for both.
    startupProbe: adminProbe('/ready', { periodSeconds: 1, failureThreshold: 60, timeoutSeconds: 1 }),
    readinessProbe: adminProbe('/ready', { periodSeconds: 5, failureThreshold: 3, timeoutSeconds: 1 }),
    livenessProbe: adminProbe('/live', { periodSeconds: 10, failureThreshold: 3, timeoutSeconds: 2 }),
    volumeMounts: [{ name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true }],
  };
}

function initContainer(ports: readonly number[], o: InjectOptions): K8sContainer {
  return {
    name: INIT_NAME,
    image: o.image,
    args: ['pod-init', '--ports', ports.join(','), ...(o.dns ? ['--dns'] : [])],
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
}

/** The sysctl that lets a non-root process listen below port 1024, in the pod's own network namespace only. */
export const UNPRIVILEGED_PORT_SYSCTL = 'net.ipv4.ip_unprivileged_port_start';

/**
 * The pod's securityContext with ip_unprivileged_port_start=0, unless the pod sets it: the
 * sidecar (uid 1337) listens on a mesh service's own ports at its 127.255.x.y, and a
 * Service's port is often 80. A "safe" sysctl (Kubernetes >= 1.22, allowed by the baseline
 * Pod Security Standard), namespaced to the pod; containerd >= 2.0 and Docker set it anyway.
 */
function withUnprivilegedPorts(sc: unknown): Obj {
  const context: Obj = typeof sc === 'object' && sc !== null && !Array.isArray(sc) ? { ...(sc as Obj) } : {};
  const sysctls = Array.isArray(context.sysctls) ? [...(context.sysctls as Obj[])] : [];
  if (!sysctls.some((s) => s?.name === UNPRIVILEGED_PORT_SYSCTL)) sysctls.push({ name: UNPRIVILEGED_PORT_SYSCTL, value: '0' });
  context.sysctls = sysctls;
  return context;
}

function tokenVolume(o: InjectOptions): Obj {
  return {
    name: TOKEN_VOLUME,
    projected: {
      sources: [{ serviceAccountToken: { audience: o.tokenAudience, expirationSeconds: o.tokenExpirationSeconds, path: 'token' } }],
    },
  };
}

function withProxyEnv(c: K8sContainer): K8sContainer {
  const env = [...(c.env ?? [])];
  const has = (n: string) => env.some((e) => e.name === n);
  const url = `http://127.0.0.1:${K8S_POD_PORTS.outbound}`;
  for (const name of ['HTTP_PROXY', 'http_proxy']) if (!has(name)) env.push({ name, value: url });
  for (const name of ['NO_PROXY', 'no_proxy']) if (!has(name)) env.push({ name, value: 'localhost,127.0.0.1,::1' });
  return { ...c, env };
}

/**
 * The pod with Trellis's sidecar, or why it is left alone. The input is not changed.
 * Injecting an injected pod returns `already-injected`: injection is idempotent.
 */
export function injectPod(input: K8sPod, options: Partial<InjectOptions> = {}): InjectResult {
  const reason = skipReason(input);
  if (reason) return { injected: false, reason };
  const o = { ...DEFAULT_INJECT_OPTIONS, ...options };
  const pod = structuredClone(input);
  const spec = pod.spec as K8sPodSpec;
  const ports = appPorts(pod);
  const probes: Record<string, unknown> = {};
  spec.containers = spec.containers.map((c) => {
    const copy = o.httpProxyEnv ? withProxyEnv(c) : c;
    rewriteProbes(copy, probes);
    return copy;
  });
  // App init containers' HTTP probes are not probed by the kubelet (only sidecars' are), so they stay.
  spec.initContainers = [initContainer(ports, o), sidecar(pod, ports, probes, o), ...(spec.initContainers ?? [])];
  spec.volumes = [...(spec.volumes ?? []), tokenVolume(o)];
  if (o.dns) spec.securityContext = withUnprivilegedPorts(spec.securityContext);
  pod.metadata = { ...(pod.metadata ?? {}) };
  pod.metadata.annotations = { ...(pod.metadata.annotations ?? {}), [INJECTED_ANNOTATION]: SIDECAR_NAME };
  return { injected: true, pod };
}

/** One JSON Patch (RFC 6902) operation. */
export type PatchOperation = { op: 'add' | 'replace'; path: string; value: unknown };

/**
 * The JSON Patch that turns `before` into `after` (an injected pod): each field injection
 * touches is replaced whole, or added where the pod had none. Coarse on purpose: it applies
 * to exactly the object the webhook was sent, and reads as what changed.
 */
export function injectionPatch(before: K8sPod, after: K8sPod): PatchOperation[] {
  const ops: PatchOperation[] = [];
  if (before.metadata === undefined) ops.push({ op: 'add', path: '/metadata', value: {} });
  const field = (parent: string, from: Obj | undefined, to: Obj | undefined, key: string): void => {
    const value = to?.[key];
    if (value === undefined || JSON.stringify(from?.[key]) === JSON.stringify(value)) return;
    ops.push({ op: from?.[key] === undefined ? 'add' : 'replace', path: `${parent}/${key}`, value });
  };
  field('/metadata', before.metadata, after.metadata, 'annotations');
  field('/spec', before.spec, after.spec, 'initContainers');
  field('/spec', before.spec, after.spec, 'containers');
  field('/spec', before.spec, after.spec, 'volumes');
  field('/spec', before.spec, after.spec, 'securityContext');
  return ops;
}

/** Where each workload kind keeps its pod template (apps/v1, batch/v1); a Pod is its own. */
function podTemplateOf(doc: Obj): K8sPod | undefined {
  const spec = doc.spec as Obj | undefined;
  switch (doc.kind) {
    case 'Pod':
      return doc as K8sPod;
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'Job':
      return spec?.template as K8sPod | undefined;
    case 'CronJob':
      return ((spec?.jobTemplate as Obj | undefined)?.spec as Obj | undefined)?.template as K8sPod | undefined;
    default:
      return undefined;
  }
}

/**
 * One manifest with its pod (or pod template) injected, as `trellis inject` prints it; a
 * kind without pods, or a pod left alone, comes back as it was with the reason.
 */
export function injectManifest(doc: unknown, options: Partial<InjectOptions> = {}): { doc: unknown; result: InjectResult | undefined } {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { doc, result: undefined };
  const template = podTemplateOf(doc as Obj);
  if (!template || typeof template !== 'object') return { doc, result: undefined };
  // A template has no namespace of its own: it is the workload's.
  const ns = (doc as K8sPod).metadata?.namespace;
  const pod =
    template.metadata?.namespace === undefined && ns !== undefined && doc !== template
      ? { ...template, metadata: { ...template.metadata, namespace: ns } }
      : template;
  const result = injectPod(pod, options);
  if (!result.injected) return { doc, result };
  if (doc === template) return { doc: result.pod, result };
  const injected = result.pod;
  if (injected.metadata && template.metadata?.namespace === undefined) delete injected.metadata.namespace;
  const copy = structuredClone(doc) as Obj;
  const target = (copy.kind === 'CronJob' ? ((copy.spec as Obj).jobTemplate as Obj).spec : copy.spec) as Obj;
  target.template = injected;
  return { doc: copy, result };
}
