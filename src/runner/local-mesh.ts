// The local runner behind `trellis up`: plans ports for every instance, then starts
// the control plane, a sidecar per instance (and an ingress proxy for public
// services), waits for each sidecar's first snapshot, starts the apps, and waits for
// them to be healthy. Every process is supervised: a crash is restarted with backoff
// (and shows unhealthy meanwhile); stop() ends all of them, apps first.
import { chown, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { findOnPath } from './on-path.js';
import { fileURLToPath } from 'node:url';
import { formatProblem, loadConfig, type MeshConfig, type NormalizedService } from '../config/load.js';
import { DEFAULT_NAMESPACE, serviceKey, splitServiceKey } from '../api/names.js';

/** A service's mesh-wide key (src/api/names.ts). */
const keyOf = (s: NormalizedService): string => serviceKey(s.name, s.namespace);
import type { AccessLogSpec } from '../config/schema.js';
import { INGRESS_SERVICE, type HostPort } from '../api/protocol.js';
import { TrellisError } from '../errors.js';
import { PortAllocator } from './ports.js';
import { Supervised, type ProcessSpec } from './supervisor.js';
import { HeldListeners } from './held-listeners.js';
import { PROXY_NODE_FLAGS } from '../proxy/node-flags.js';
import { BOOTSTRAP_SECRET_ENV, CREDENTIAL_ENV, mintCredential, newBootstrapSecret, type CredentialSubject } from '../security/bootstrap-credential.js';
import { startPrometheus, type RunningPrometheus } from './prometheus.js';
import { ADMIN_TOKEN_ENV, adminHeaders, adminTokenFile, readAdminTokenFile } from '../security/admin-token.js';
import { dashboardLoginUrl, dashboardUrl } from '../security/dashboard-login.js';
import { assertIsolationAvailable } from './isolation/preflight.js';
import { appInNetns, IsolatedNetwork, inNetns } from './isolation/network.js';
import { parseSubnet, SubnetPlan } from './isolation/subnet.js';
import { hostsFile, podRules, POD_PORTS, SIDECAR_PORT_RANGE } from './isolation/pods.js';
import { derivedIngressYaml, gatewayKey, gatewayPublicUrls } from './gateways.js';
import { localhostFiles, localTlsDir } from '../security/local-tls.js';
import type { ExternalServiceConfig } from '../config/check-external-services.js';

const TRELLIS_BIN = fileURLToPath(new URL('../../../bin/trellis.js', import.meta.url));
const LOOPBACK = '127.0.0.1';
/** Name of the edge proxy that serves public services. */
export const INGRESS_NAME = INGRESS_SERVICE;

export interface InstancePlan {
  id: string;
  service: string;
  version: string;
  protocol: 'http' | 'http1' | 'http2' | 'grpc' | 'tcp' | 'detect';
  /** The app's (first) port and the sidecar's inbound listener in front of it. */
  app: HostPort;
  inbound: HostPort;
  /** A multi-port service: every port's app port and inbound listener, the first being `app`, `inbound`. */
  ports?: { name?: string; port: number; app: HostPort; inbound: HostPort }[];
  admin: HostPort;
  httpProxy: HostPort;
  /** `servicePort`: the port of a multi-port service the listener reaches (absent: its first). */
  upstreams: { service: string; port: number; servicePort?: number }[];
  command?: string;
  cwd: string;
  env: Record<string, string>;
}

export interface MeshState {
  meshFile: string;
  control: string;
  /** The dashboard's address, without a credential (the login link is printed, never stored). */
  dashboard: string;
  stateDir: string;
  logDir: string;
  instances: (InstancePlan & { appPid?: number; sidecarPid?: number })[];
  ingress?: { admin: HostPort; pid?: number };
  /**
   * The gateway proxies: one per Gateway of the mesh file, and the derived ingress
   * (`trellis-ingress`) when public services need it; `ports`: a Gateway port → where it is open.
   */
  gateways?: { name: string; admin: HostPort; ports: Record<string, HostPort>; derived: boolean; pid?: number }[];
  /** The CA of the localhost certificate HTTPS listeners serve (`curl --cacert <ca>`); absent: none is served. */
  localCa?: string;
  /** The egress gateway the mesh names (outboundTrafficPolicy.egressGateway): its admin server and mTLS listener. */
  egressGateway?: { name: string; admin: HostPort; listen: HostPort; pid?: number };
  publicUrls: Record<string, string>;
  skipped: { service: string; reason: string }[];
  controlPid?: number;
  /** The Prometheus the runner started (absent: none runs). */
  prometheus?: { url: string; pid?: number; configFile: string; storageDir: string };
  /** `--isolate`: the run's network (absent: every process on loopback). */
  isolation?: IsolationState;
}

export interface IsolationState {
  runId: string;
  subnet: string;
  bridge: string;
  /** The host's address on the bridge. */
  gateway: string;
  /** Each instance's network namespace and address, by instance id. */
  pods: Record<string, { netns: string; address: string }>;
  /** Each service's virtual address and ports (what its name resolves to in every pod). */
  services: Record<string, { vip: string; ports: number[] }>;
  /**
   * Each ExternalService's virtual address, port and hosts (what its hosts resolve to in
   * every pod; the pod's sidecar takes the connection and sends it out through the egress gateway).
   */
  externals: Record<string, { vip: string; port: number; protocol: string; hosts: string[] }>;
  sidecarUid: number;
}

/** `trellis up --isolate`: a network namespace per instance, and transparent interception. */
export interface IsolateOptions {
  /** The private subnet of the pods and virtual addresses (subnet.ts). */
  subnet: string;
  /** The uid and gid the sidecars run as (their traffic is not intercepted). */
  sidecarUid: number;
}

/** The Prometheus `trellis up` starts beside the mesh (prometheus.ts). */
export interface MeshPrometheusOptions {
  /** Where it listens; port 0 picks a free one. */
  listen: HostPort;
  /** Scrape interval in whole seconds. */
  scrapeIntervalS: number;
}

export interface LocalMeshOptions {
  meshFile: string;
  /** Control plane admin address; port 0 picks a free one. */
  admin: HostPort;
  stateDir?: string;
  log: (line: string) => void;
  /** Ignore the fixed ports of the mesh file and pick free ones (tests, or when 8080 is taken). */
  freePorts?: boolean;
  /** How long start() waits for every instance to be healthy. */
  healthyTimeoutMs?: number;
  /** Start Prometheus (when installed) scraping the mesh; false or absent: don't. */
  prometheus?: MeshPrometheusOptions | false;
  /** Run every instance in its own network namespace (Linux, root); absent: on loopback. */
  isolate?: IsolateOptions;
}

/** Where an isolated run is: its network, the address plan and the namespaces by instance id. */
interface Isolation {
  readonly network: IsolatedNetwork;
  readonly plan: SubnetPlan;
  readonly o: IsolateOptions;
  readonly state: IsolationState;
}

export class LocalMesh {
  readonly #o: LocalMeshOptions;
  readonly #ports = new PortAllocator();
  #apps: Supervised[] = [];
  #proxies: Supervised[] = [];
  #control: Supervised | undefined;
  #prometheus: RunningPrometheus | undefined;
  #watch: NodeJS.Timeout | undefined;
  #health = new Map<string, string>();
  #stopped = false;
  /** The control plane's admin token, read from the state folder once it is up. */
  #adminToken: string | undefined;
  #isolation: Isolation | undefined;
  /** The sidecars' outbound listening sockets the runner keeps across their restarts (held-listeners.ts). */
  readonly #held: HeldListeners[] = [];
  state: MeshState | undefined;

  /** The link that opens the dashboard logged in (print it; it is stored nowhere). */
  get dashboardLoginUrl(): string | undefined {
    return this.state && this.#adminToken !== undefined ? dashboardLoginUrl(this.state.control, this.#adminToken) : undefined;
  }

  constructor(o: LocalMeshOptions) {
    this.#o = o;
  }

  async start(): Promise<MeshState> {
    const { log } = this.#o;
    // The state folder first: a Secret may name the localhost certificate made there.
    const stateDir = resolve(this.#o.stateDir ?? join(dirname(resolve(this.#o.meshFile)), '.trellis'));
    const logDir = join(stateDir, 'logs');
    // Made before the local certificate's folder (0700), so the state folder keeps the usual mode.
    await mkdir(logDir, { recursive: true });
    const loaded = await loadConfig([this.#o.meshFile], { stateDir });
    if (!loaded.config) {
      throw new TrellisError('TRELLIS_E_CONFIG_INVALID', { file: this.#o.meshFile, details: `\n${loaded.problems.map(formatProblem).join('\n')}` });
    }
    const config = loaded.config;

    const { running, skipped } = chooseServices(config);
    for (const s of skipped) log(`${s.service}: not started: ${s.reason}`);

    // Checked before anything of an isolated run is made: a refusal leaves nothing behind.
    if (this.#o.isolate !== undefined) assertIsolatedEgress(config);
    const iso = this.#o.isolate === undefined ? undefined : await this.#isolate(this.#o.isolate, logDir);
    // Isolated, the control plane has a namespace of its own, so its port is free there; the
    // sidecars reach it over the bridge, and its health probes come from its own address.
    const admin =
      iso === undefined
        ? { host: this.#o.admin.host, port: await this.#port(this.#o.admin.port, '--admin') }
        : { host: iso.plan.control, port: this.#o.admin.port === 0 ? POD_PORTS.admin : this.#o.admin.port };
    const controlUrl = `http://${admin.host}:${admin.port}`;
    // The edge: the Gateways of the mesh file, and the ingress derived from public services
    // unless a Gateway named trellis-ingress is declared (gateways.ts).
    const ingressDeclared = config.gateways.some((g) => gatewayKey(g) === INGRESS_NAME);
    const publicPorts: Record<string, number> = {};
    const tcpPublicPorts: Record<string, number> = {};
    for (const s of running) {
      if (!s.public) continue;
      if (ingressDeclared) {
        log(`${keyOf(s)}: public.port is not used: the mesh file declares the ${INGRESS_NAME} Gateway, whose routes say what is public`);
        continue;
      }
      // A tcp service keeps a TCP listener on the ingress (a Gateway listener speaks HTTP).
      (s.protocol === 'tcp' ? tcpPublicPorts : publicPorts)[keyOf(s)] = await this.#port(s.public.port ?? 0, `public.port of service ${keyOf(s)}`);
    }
    const gatewayPorts = new Map<string, Map<number, number>>();
    for (const g of config.gateways) {
      const ports = new Map<number, number>();
      for (const l of g.listeners) if (!ports.has(l.port)) ports.set(l.port, await this.#port(l.port, `port ${l.port} of Gateway ${gatewayKey(g)}`));
      gatewayPorts.set(gatewayKey(g), ports);
    }
    const derivedServices = running.filter((s) => publicPorts[keyOf(s)] !== undefined);
    const derived = !ingressDeclared && (derivedServices.length > 0 || Object.keys(tcpPublicPorts).length > 0);
    if (derived) gatewayPorts.set(INGRESS_NAME, new Map(Object.values(publicPorts).map((p) => [p, p])));
    const publicUrls = {
      ...Object.fromEntries(Object.entries({ ...publicPorts, ...tcpPublicPorts }).map(([n, p]) => [n, `http://${LOOPBACK}:${p}`])),
      ...gatewayPublicUrls(config, (g, port) => gatewayPorts.get(g)?.get(port)),
    };
    const derivedFile = join(localTlsDir(stateDir), 'derived-gateway.yaml');
    if (derived) {
      await mkdir(localTlsDir(stateDir), { recursive: true, mode: 0o700 });
      await writeFile(derivedFile, derivedIngressYaml(derivedServices, publicPorts));
    }
    // What an instance's upstream listener may reach: the services running, and the ExternalServices
    // (their calls leave through the sidecar, or the egress gateway).
    const runningNames = new Set([...running.map(keyOf), ...(config.externalServices ?? []).map((e) => serviceKey(e.name, e.namespace))]);
    // Apps that trace (the OpenTelemetry SDK reads these variables) export where the
    // proxies do: the mesh's collector, or the control plane's receiver.
    const tracing = config.tracing;
    const otelEnv: Record<string, string> =
      tracing === undefined
        ? {}
        : { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: tracing.endpoint ?? `${controlUrl}/v1/traces`, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' };
    const instances =
      iso === undefined
        ? await this.#plan(running, runningNames, publicUrls, stateDir, otelEnv)
        : await this.#planIsolated(iso, running, runningNames, config.externalServices ?? [], publicUrls, stateDir, otelEnv);

    const state: MeshState = {
      meshFile: config.meshFile,
      control: controlUrl,
      dashboard: dashboardUrl(controlUrl),
      stateDir,
      logDir,
      instances,
      publicUrls,
      skipped,
    };
    if (iso !== undefined) state.isolation = iso.state;
    const localCa = localhostFiles(localTlsDir(stateDir)).ca;
    if (config.gateways.some((g) => g.listeners.some((l) => l.protocol === 'HTTPS')) && existsSync(localCa)) state.localCa = localCa;
    this.state = state;
    // A bootstrap secret made for this run goes to the control plane alone; each proxy gets
    // only its own instance's credential minted from it (src/security/bootstrap-credential.ts),
    // both in the environment (not on command lines, which `ps` shows). A process that reads
    // one sidecar's environment can act as that one instance, no other.
    const bootstrapSecret = newBootstrapSecret();
    const baseEnv = withoutSecrets(process.env);
    const controlEnv = { ...baseEnv, [BOOTSTRAP_SECRET_ENV]: bootstrapSecret };
    const proxyEnv = (subject: CredentialSubject): NodeJS.ProcessEnv => ({ ...baseEnv, [CREDENTIAL_ENV]: mintCredential(bootstrapSecret, subject) });

    // 1. The control plane, as its own process: it can die and restart without taking the mesh down.
    this.#control = this.#supervise({
      name: 'control',
      command: this.#inPod(
        'cp',
        [
          process.execPath,
          TRELLIS_BIN,
          'control',
          '--config',
          config.meshFile,
          ...(derived && derivedServices.length > 0 ? ['--config', derivedFile] : []),
          '--admin',
          `${admin.host}:${admin.port}`,
          '--state-dir',
          stateDir,
        ],
        false,
      ),
      cwd: process.cwd(),
      env: controlEnv,
      logFile: join(logDir, 'control.log'),
    });
    await waitFor(`${controlUrl}/healthz`, 20_000, 'the control plane');
    state.controlPid = this.#control.pid;
    // The control plane made its admin token (or kept last run's) in the state folder before it
    // listened; the runner reads it there, as the CLI does, for its own polls of the admin API
    // and to print the dashboard's login link.
    this.#adminToken = await readAdminTokenFile(adminTokenFile(stateDir));
    // Prometheus needs only the control plane's discovery URL: it starts while the proxies do.
    const prometheus = this.#startPrometheus(controlUrl, stateDir, logDir);

    // 2. A sidecar per instance, and the ingress; each must have its first snapshot before its app starts.
    const logFlags = accessLogFlags(config.mesh.spec.accessLog);
    const proxyArgs = (i: InstancePlan): string[] => [
      process.execPath,
      ...PROXY_NODE_FLAGS,
      TRELLIS_BIN,
      'proxy',
      '--service',
      i.service,
      '--version',
      i.version,
      '--id',
      i.id,
      '--control',
      controlUrl,
      '--app',
      `${i.app.host}:${i.app.port}`,
      '--inbound',
      `${i.inbound.host}:${i.inbound.port}`,
      ...(i.ports ?? []).flatMap((p) => ['--port', `${p.port}=${p.app.host}:${p.app.port},${p.inbound.host}:${p.inbound.port}`]),
      '--admin',
      `${i.admin.host}:${i.admin.port}`,
      '--http-proxy',
      `${i.httpProxy.host}:${i.httpProxy.port}`,
      '--access-log',
      join(logDir, `${i.id}.access.log`),
      ...logFlags,
      ...i.upstreams.flatMap((u) => ['--upstream', `${u.service}${u.servicePort === undefined ? '' : `:${u.servicePort}`}=${LOOPBACK}:${u.port}`]),
    ];
    const podOf = (i: InstancePlan): string => iso?.state.pods[i.id]?.netns ?? '';
    // The runner holds each sidecar's outbound listeners (the ones its app connects to) and
    // gives them to every start of it: an app's connection made while its sidecar restarts
    // waits for the new one instead of being refused (held-listeners.ts). Isolated, they are
    // opened in the pod as the sidecar's uid. The inbound listener is left to the sidecar: a
    // refusal there is what tells a caller's sidecar to try another replica at once, where a
    // held connection would wait out the restart.
    const held = await Promise.all(
      instances.map((i) =>
        HeldListeners.bind(
          [...i.upstreams.map((u) => ({ host: LOOPBACK, port: u.port })), i.httpProxy],
          `the sidecar of ${i.id}`,
          iso === undefined ? undefined : (argv) => inNetns(podOf(i), argv, iso.o.sidecarUid),
        ),
      ),
    );
    this.#held.push(...held);
    if (this.#stopped) for (const h of held) h.close();
    instances.forEach((i, n) => {
      const listeners = held[n];
      this.#proxies.push(
        this.#supervise({
          name: `${i.id} sidecar`,
          command: iso === undefined ? proxyArgs(i) : inNetns(podOf(i), proxyArgs(i), iso.o.sidecarUid),
          cwd: process.cwd(),
          env: { ...proxyEnv({ kind: 'sidecar', service: i.service, id: i.id }), ...listeners?.env },
          logFile: join(logDir, `${i.id}.sidecar.log`),
          fds: listeners?.fds ?? [],
        }),
      );
    });
    const ready = instances.map((i) => waitFor(`http://${i.admin.host}:${i.admin.port}/ready`, 20_000, `the sidecar of ${i.id}`));
    // 3. A gateway proxy per Gateway (and the derived ingress); the apps wait for its ports.
    state.gateways = [];
    for (const [name, ports] of gatewayPorts) {
      const gatewayAdmin = { host: LOOPBACK, port: await this.#ports.free() };
      const tcp = name === INGRESS_NAME ? Object.entries(tcpPublicPorts) : [];
      const proxy = this.#supervise({
        name,
        command: [
          process.execPath,
          ...PROXY_NODE_FLAGS,
          TRELLIS_BIN,
          'proxy',
          '--gateway',
          '--service',
          name,
          '--id',
          name,
          '--control',
          controlUrl,
          '--admin',
          `${gatewayAdmin.host}:${gatewayAdmin.port}`,
          '--access-log',
          join(logDir, `${name}.access.log`),
          ...logFlags,
          ...[...ports].flatMap(([port, actual]) => ['--gateway-port', `${port}=${LOOPBACK}:${actual}`]),
          ...tcp.flatMap(([svc, port]) => ['--upstream', `${svc}=${LOOPBACK}:${port}`]),
        ],
        cwd: process.cwd(),
        env: proxyEnv({ kind: 'gateway', service: name, id: name }),
        logFile: join(logDir, `${name}.log`),
      });
      this.#proxies.push(proxy);
      const entry = {
        name,
        admin: gatewayAdmin,
        ports: Object.fromEntries([...ports].map(([port, actual]) => [String(port), { host: LOOPBACK, port: actual }])),
        derived: derived && name === INGRESS_NAME,
        pid: proxy.pid,
      };
      state.gateways.push(entry);
      if (name === INGRESS_NAME) state.ingress = { admin: gatewayAdmin, pid: proxy.pid };
      ready.push(
        waitFor(`http://${gatewayAdmin.host}:${gatewayAdmin.port}/ready`, 20_000, `the gateway ${name}`).then(() =>
          Promise.all([...ports.values()].map((p) => waitForPort(LOOPBACK, p, 20_000, `port ${p} of the gateway ${name}`))),
        ) as Promise<void>,
      );
    }
    // The egress gateway the mesh names (outboundTrafficPolicy.egressGateway): sidecars send
    // every ExternalService call to its mutual-TLS listener, and it leaves the mesh from there.
    // Isolated, it stays on the host (where the outside is, loopback servers included) and
    // listens on the host's bridge address, the one address of the host the pods' sidecars
    // reach; their apps cannot (their pods' rules refuse it), and it takes mutual TLS only.
    const egress = config.egressGateway;
    if (egress !== undefined) {
      const egressAdmin = { host: LOOPBACK, port: await this.#ports.free() };
      const egressListen = { host: iso?.plan.gateway ?? LOOPBACK, port: egress.port ?? (await this.#ports.free()) };
      const gateway = this.#supervise({
        name: egress.name,
        command: [
          process.execPath,
          ...PROXY_NODE_FLAGS,
          TRELLIS_BIN,
          'proxy',
          '--gateway',
          '--service',
          egress.name,
          '--id',
          egress.name,
          '--control',
          controlUrl,
          '--admin',
          `${egressAdmin.host}:${egressAdmin.port}`,
          '--egress',
          `${egressListen.host}:${egressListen.port}`,
          '--access-log',
          join(logDir, `${egress.name}.access.log`),
          ...logFlags,
        ],
        cwd: process.cwd(),
        env: proxyEnv({ kind: 'gateway', service: egress.name, id: egress.name }),
        logFile: join(logDir, `${egress.name}.log`),
      });
      this.#proxies.push(gateway);
      state.egressGateway = { name: egress.name, admin: egressAdmin, listen: egressListen, pid: gateway.pid };
      ready.push(waitFor(`http://${egressAdmin.host}:${egressAdmin.port}/ready`, 20_000, 'the egress gateway'));
    }
    await Promise.all(ready);
    instances.forEach((i, n) => {
      (i as MeshState['instances'][number]).sidecarPid = this.#proxies[n]!.pid;
    });

    // 4. The apps.
    for (const i of instances) {
      if (!i.command) continue;
      const command = iso === undefined ? i.command : appInNetns(podOf(i), ['/bin/sh', '-c', i.command]);
      const app = this.#supervise({ name: i.id, command, cwd: i.cwd, env: { ...baseEnv, ...i.env }, logFile: join(logDir, `${i.id}.log`) });
      this.#apps.push(app);
      (i as MeshState['instances'][number]).appPid = app.pid;
    }
    await prometheus;
    await writeFile(join(stateDir, 'state.json'), JSON.stringify(state, null, 2));

    // 5. Healthy, or say who is not.
    await this.#waitHealthy(this.#o.healthyTimeoutMs ?? 60_000);
    // Stopped meanwhile (Ctrl-C while waiting): no health watch, whose interval nothing
    // would clear and which would keep `trellis up` from exiting.
    if (!this.#stopped) this.#watch = setInterval(() => void this.#pollHealth(true), 1000);
    return state;
  }

  /** Starts Prometheus when asked and installed; otherwise (or when it fails) one line says why and the mesh runs on. */
  async #startPrometheus(controlUrl: string, stateDir: string, logDir: string): Promise<void> {
    const o = this.#o.prometheus;
    if (o === undefined || o === false) return;
    try {
      await this.#runPrometheus(o, controlUrl, stateDir, logDir);
    } catch (err) {
      // A folder it could not write, say: the mesh needs none of it.
      this.#o.log(`prometheus: not started: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async #runPrometheus(o: MeshPrometheusOptions, controlUrl: string, stateDir: string, logDir: string): Promise<void> {
    const port = o.listen.port === 0 ? await this.#ports.free() : await this.#port(o.listen.port, '--prometheus');
    const p = await startPrometheus({
      targetsUrl: `${controlUrl}/v1/prometheus/targets`,
      // The discovery endpoint is a map of the mesh, behind the admin token like the rest of the API.
      tokenFile: adminTokenFile(stateDir),
      scrapeIntervalS: o.scrapeIntervalS,
      listen: { host: o.listen.host, port },
      configDir: join(stateDir, 'prometheus'),
      logFile: join(logDir, 'prometheus.log'),
    });
    if (!p.started) {
      this.#o.log(`prometheus: not started: ${p.reason}`);
      return;
    }
    if (this.#stopped) return void (await p.stop());
    this.#prometheus = p;
    this.state!.prometheus = { url: p.url, pid: p.pid, configFile: p.configFile, storageDir: p.storageDir };
  }

  /**
   * Checks the machine, records the run and makes its bridge and the control plane's pod;
   * the instances' pods come with their plan (#planIsolated). A stale run a killed runner
   * left is removed first (network.ts).
   */
  async #isolate(o: IsolateOptions, logDir: string): Promise<Isolation> {
    assertIsolationAvailable();
    const subnet = parseSubnet(o.subnet);
    const plan = new SubnetPlan(subnet);
    const network = new IsolatedNetwork(subnet, plan.gateway);
    const state: IsolationState = {
      runId: network.runId,
      subnet: subnet.cidr,
      bridge: network.bridge,
      gateway: plan.gateway,
      pods: {},
      services: {},
      externals: {},
      sidecarUid: o.sidecarUid,
    };
    // Kept before anything is made, so that stop() (a failed start included) removes what was.
    this.#isolation = { network, plan, o, state };
    await network.create();
    await network.addPod({ key: 'cp', address: plan.control, hosts: hostsFile(new Map(), DEFAULT_NAMESPACE) });
    // The sidecars run as their own uid and write their access logs here.
    await chown(logDir, o.sidecarUid, o.sidecarUid);
    this.#o.log(`isolated network ${subnet.cidr} (run ${network.runId}, bridge ${network.bridge}); the control plane at ${plan.control}`);
    return this.#isolation;
  }

  /** `argv` as run in pod `key`'s namespace (as the sidecar uid when `sidecar`); unchanged without isolation. */
  #inPod(key: string, argv: string[], sidecar: boolean): string[] {
    const iso = this.#isolation;
    return iso === undefined ? argv : inNetns(iso.network.netns(key), argv, sidecar ? iso.o.sidecarUid : undefined);
  }

  /**
   * The isolated plan: every service a virtual address and its ports; every instance a
   * pod (namespace, address, hosts file, interception rules) where the app listens on the
   * service's own port and the sidecar on the same fixed ports in every pod (pods.ts).
   * Apps learn their upstreams by name (`TRELLIS_UPSTREAM_POSTGRES=postgres:5432`), which
   * an unmodified app would have written itself.
   *
   * Every ExternalService gets a virtual address too, which its hosts resolve to in every
   * pod. An HTTP one's (address, port) is redirected in every pod to the sidecar's HTTP
   * proxy listener, which routes by Host as it does for an app that names it as its proxy
   * (so every pod reaches every HTTP ExternalService, as every sidecar gets them all, and
   * REGISTRY_ONLY judges the Host the app sent); a TCP, TLS or HTTPS one has no Host to go
   * by, and gets an upstream listener of its own in the pods whose service lists it among
   * its upstreams, as without --isolate.
   */
  async #planIsolated(
    iso: Isolation,
    running: NormalizedService[],
    runningNames: Set<string>,
    externalServices: readonly ExternalServiceConfig[],
    publicUrls: Record<string, string>,
    stateDir: string,
    otelEnv: Record<string, string>,
  ): Promise<InstancePlan[]> {
    const vips = new Map<string, string>();
    const servicePorts = new Map<string, { port: number; appPort: number; name?: string }[]>();
    for (const s of running) {
      const key = keyOf(s);
      vips.set(key, iso.plan.vip());
      // A service without a port gets one the runner picks (unique in the mesh, outside the sidecar's range).
      let ports = s.ports?.map((p) => ({ port: p.port, appPort: p.appPort ?? p.port, ...(p.name !== undefined ? { name: p.name } : {}) }));
      if (ports === undefined) {
        const port = s.port ?? (await this.#ports.free());
        ports = [{ port, appPort: port }];
      }
      for (const p of ports) {
        if (p.appPort >= SIDECAR_PORT_RANGE.from && p.appPort <= SIDECAR_PORT_RANGE.to) {
          throw new TrellisError('TRELLIS_E_USAGE', {
            reason: `service ${key} listens on port ${p.appPort}, which --isolate keeps for the sidecar (${SIDECAR_PORT_RANGE.from}-${SIDECAR_PORT_RANGE.to}); give it another port`,
          });
        }
      }
      servicePorts.set(key, ports);
      iso.state.services[key] = { vip: vips.get(key) ?? '', ports: ports.map((p) => p.port) };
    }
    const externals = new Map<string, { vip: string; port: number; http: boolean; host: string }>();
    const externalHosts = new Map<string, readonly string[]>();
    for (const e of externalServices) {
      const key = serviceKey(e.name, e.namespace);
      const vip = iso.plan.vip();
      externals.set(key, { vip, port: e.port, http: e.protocol === 'HTTP', host: e.hosts[0] ?? key });
      externalHosts.set(vip, e.hosts);
      iso.state.externals[key] = { vip, port: e.port, protocol: e.protocol, hosts: [...e.hosts] };
    }
    // Every pod: an HTTP ExternalService's address and port → the HTTP proxy listener (it routes by Host).
    const httpExternals = [...externals].flatMap(([service, x]) => (x.http ? [{ service, vip: x.vip, port: x.port, listener: POD_PORTS.httpProxy }] : []));
    const publicEnv = Object.fromEntries(Object.entries(publicUrls).map(([n, u]) => [`TRELLIS_PUBLIC_${envName(n)}`, u]));
    const plans: InstancePlan[] = [];
    let podIndex = 0;
    for (const s of running) {
      const key = keyOf(s);
      const namespace = s.namespace ?? DEFAULT_NAMESPACE;
      const ports = servicePorts.get(key) ?? [];
      const hosts = hostsFile(vips, namespace, externalHosts);
      for (const v of s.versions) {
        for (let r = 0; r < v.replicas; r++) {
          const id = v.name === 'default' ? `${key}-${r}` : `${key}-${v.name}-${r}`;
          const podKey = String(podIndex++);
          const address = iso.plan.pod();
          const inbound = ports.map((p, n) => ({
            ...(p.name !== undefined ? { name: p.name } : {}),
            port: p.port,
            app: { host: address, port: p.appPort },
            inbound: { host: address, port: POD_PORTS.inbound + n },
          }));
          const upstreams: InstancePlan['upstreams'] = [];
          const redirects: { service: string; vip: string; port: number; listener: number }[] = [...httpExternals];
          const upstreamEnvs: [string, string][] = [];
          for (const u of s.upstreams) {
            if (!runningNames.has(u.service)) continue;
            const external = externals.get(u.service);
            if (external !== undefined) {
              // The app calls it by its (first) host; an HTTP one is already redirected to the HTTP proxy listener.
              if (!external.http) {
                const listener = POD_PORTS.upstream + upstreams.length;
                upstreams.push({ service: u.service, port: listener });
                redirects.push({ service: u.service, vip: external.vip, port: external.port, listener });
              }
              upstreamEnvs.push([`TRELLIS_UPSTREAM_${envName(u.service)}`, `${external.host}:${external.port}`]);
              const { name, namespace: ns } = splitServiceKey(u.service);
              if (ns === namespace && name !== u.service) upstreamEnvs.push([`TRELLIS_UPSTREAM_${envName(name)}`, `${external.host}:${external.port}`]);
              continue;
            }
            const listener = POD_PORTS.upstream + upstreams.length;
            upstreams.push({ service: u.service, port: listener, ...(u.servicePort !== undefined ? { servicePort: u.servicePort } : {}) });
            const port = u.servicePort ?? servicePorts.get(u.service)?.[0]?.port ?? 0;
            redirects.push({ service: u.service, vip: vips.get(u.service) ?? '', port, listener });
            // The name resolves in the pod (hosts file); the connection is redirected to the sidecar.
            const { name, namespace: ns } = splitServiceKey(u.service);
            const suffix = u.servicePort === undefined ? '' : `_${u.servicePort}`;
            upstreamEnvs.push([`TRELLIS_UPSTREAM_${envName(u.service)}${suffix}`, `${ns === namespace ? name : u.service}:${port}`]);
            if (ns === namespace && name !== u.service) upstreamEnvs.push([`TRELLIS_UPSTREAM_${envName(name)}${suffix}`, `${name}:${port}`]);
          }
          const netns = await iso.network.addPod({
            key: podKey,
            address,
            hosts,
            rules: podRules({
              podKey,
              sidecarUid: iso.o.sidecarUid,
              inbound: inbound.map((p) => ({ appPort: p.app.port, listener: p.inbound.port })),
              upstreams: redirects,
              probeSource: iso.plan.control,
              // Only the gateways, on the host, call a service from there, and only a public one
              // (public, or a backend of a Gateway's routes: it has a public URL).
              ...(s.public === undefined && publicUrls[key] === undefined ? { closedTo: iso.plan.gateway } : {}),
            }),
          });
          iso.state.pods[id] = { netns, address };
          const dataDir = join(stateDir, 'data', key);
          await mkdir(dataDir, { recursive: true });
          const first = inbound[0];
          const env: Record<string, string> = {
            ...otelEnv,
            OTEL_SERVICE_NAME: key,
            ...v.env,
            ...publicEnv,
            PORT: String(first?.app.port ?? 0),
            ...Object.fromEntries(inbound.flatMap((p) => (p.name === undefined ? [] : [[`PORT_${envName(p.name)}`, String(p.app.port)]]))),
            // Every address of the pod: the sidecar reaches the app at the pod's address, the health probes too.
            HOST: '0.0.0.0',
            TRELLIS_SERVICE: s.name,
            TRELLIS_NAMESPACE: namespace,
            TRELLIS_VERSION: v.name,
            TRELLIS_INSTANCE: id,
            TRELLIS_HTTP_PROXY: `http://${LOOPBACK}:${POD_PORTS.httpProxy}`,
            TRELLIS_DATA_DIR: dataDir,
            ...Object.fromEntries(upstreamEnvs),
          };
          plans.push({
            id,
            service: key,
            version: v.name,
            protocol: s.protocol,
            app: first?.app ?? { host: address, port: 0 },
            inbound: first?.inbound ?? { host: address, port: POD_PORTS.inbound },
            ...(s.ports !== undefined ? { ports: inbound } : {}),
            admin: { host: address, port: POD_PORTS.admin },
            httpProxy: { host: LOOPBACK, port: POD_PORTS.httpProxy },
            upstreams,
            command: v.command,
            cwd: s.cwd,
            env,
          });
        }
      }
    }
    return plans;
  }

  /** Health of every instance as the control plane sees it. */
  get health(): ReadonlyMap<string, string> {
    return this.#health;
  }

  async #plan(
    running: NormalizedService[],
    runningNames: Set<string>,
    publicUrls: Record<string, string>,
    stateDir: string,
    otelEnv: Record<string, string>,
  ): Promise<InstancePlan[]> {
    const plans: InstancePlan[] = [];
    const publicEnv = Object.fromEntries(Object.entries(publicUrls).map(([n, u]) => [`TRELLIS_PUBLIC_${envName(n)}`, u]));
    for (const s of running) {
      const count = s.versions.reduce((n, v) => n + v.replicas, 0);
      // The service's key (`name`, or `name.namespace` outside default) names it to the mesh.
      const key = keyOf(s);
      for (const v of s.versions) {
        for (let r = 0; r < v.replicas; r++) {
          const id = v.name === 'default' ? `${key}-${r}` : `${key}-${v.name}-${r}`;
          const ports = s.ports === undefined ? undefined : await this.#planPorts(s, count);
          const appPort =
            ports?.[0]?.app.port ?? (s.port !== undefined && count === 1 ? await this.#port(s.port, `port of service ${s.name}`) : await this.#ports.free());
          const upstreams: InstancePlan['upstreams'] = [];
          for (const u of s.upstreams) {
            if (!runningNames.has(u.service)) continue;
            upstreams.push({
              service: u.service,
              port: u.port !== undefined && count === 1 ? await this.#port(u.port, `upstream port of ${s.name}`) : await this.#ports.free(),
              ...(u.servicePort !== undefined ? { servicePort: u.servicePort } : {}),
            });
          }
          const inbound = ports?.[0]?.inbound ?? { host: LOOPBACK, port: await this.#ports.free() };
          const admin = { host: LOOPBACK, port: await this.#ports.free() };
          const httpProxy = { host: LOOPBACK, port: await this.#ports.free() };
          const dataDir = join(stateDir, 'data', key);
          await mkdir(dataDir, { recursive: true });
          const env: Record<string, string> = {
            ...otelEnv,
            OTEL_SERVICE_NAME: key,
            ...v.env,
            ...publicEnv,
            PORT: String(appPort),
            // A multi-port app learns each port by name (PORT is its first), as the contract says: PORT_<NAME>.
            ...Object.fromEntries((ports ?? []).flatMap((p) => (p.name === undefined ? [] : [[`PORT_${envName(p.name)}`, String(p.app.port)]]))),
            HOST: LOOPBACK,
            TRELLIS_SERVICE: s.name,
            TRELLIS_NAMESPACE: s.namespace ?? DEFAULT_NAMESPACE,
            TRELLIS_VERSION: v.name,
            TRELLIS_INSTANCE: id,
            TRELLIS_HTTP_PROXY: `http://${LOOPBACK}:${httpProxy.port}`,
            TRELLIS_DATA_DIR: dataDir,
            ...Object.fromEntries(upstreams.flatMap((u) => upstreamEnv(u, s.namespace ?? DEFAULT_NAMESPACE))),
          };
          plans.push({
            id,
            service: key,
            version: v.name,
            protocol: s.protocol,
            app: { host: LOOPBACK, port: appPort },
            inbound,
            ...(ports !== undefined ? { ports } : {}),
            admin,
            httpProxy,
            upstreams,
            command: v.command,
            cwd: s.cwd,
            env,
          });
        }
      }
    }
    return plans;
  }

  /**
   * An app port and an inbound listener per port of a multi-port service: the fixed
   * appPort when there is one instance, else a free one. Two ports that fix the same app
   * port share it (as two Kubernetes Service ports may share a targetPort).
   */
  async #planPorts(s: NormalizedService, count: number): Promise<NonNullable<InstancePlan['ports']>> {
    const fixed = new Map<number, number>();
    const out: NonNullable<InstancePlan['ports']> = [];
    for (const p of s.ports ?? []) {
      let app: number;
      if (p.appPort !== undefined && count === 1) {
        app = fixed.get(p.appPort) ?? (await this.#port(p.appPort, `appPort of port ${p.port} of service ${s.name}`));
        fixed.set(p.appPort, app);
      } else {
        app = await this.#ports.free();
      }
      const inbound = { host: LOOPBACK, port: await this.#ports.free() };
      out.push({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, app: { host: LOOPBACK, port: app }, inbound });
    }
    return out;
  }

  async #port(port: number, what: string): Promise<number> {
    if (port === 0 || (this.#o.freePorts && what !== '--admin')) return this.#ports.free();
    if (await this.#ports.fixed(port)) return port;
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `port ${port} (${what}) is already in use on ${LOOPBACK}: stop what uses it (another \`trellis up\`?) or choose another port (\`trellis up --free-ports\` ignores the fixed ports of the mesh file)`,
    });
  }

  #supervise(spec: ProcessSpec): Supervised {
    const p = new Supervised(spec, {
      onExit: (name, code, signal, restartIn) => {
        if (this.#stopped || restartIn === undefined) return;
        this.#o.log(`${name} exited (${signal ?? `code ${code}`}); restarting in ${(restartIn / 1000).toFixed(1)} s (log: ${spec.logFile})`);
      },
      onStart: (name, pid, restarts) => {
        if (restarts > 0) this.#o.log(`${name} restarted (pid ${pid})`);
      },
    });
    p.start();
    return p;
  }

  async #waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const expected = this.state!.instances.filter((i) => i.command !== undefined);
    while (Date.now() < deadline && !this.#stopped) {
      await this.#pollHealth(false);
      if (expected.every((i) => this.#health.get(i.id) === 'healthy')) return;
      await sleep(250);
    }
    const bad = expected.filter((i) => this.#health.get(i.id) !== 'healthy');
    if (bad.length > 0 && !this.#stopped) {
      this.#o.log(
        `not healthy after ${timeoutMs / 1000} s: ${bad.map((i) => `${i.id} (${this.#health.get(i.id) ?? 'not registered'}; log: ${join(this.state!.logDir, `${i.id}.log`)})`).join(', ')}`,
      );
    }
  }

  async #pollHealth(report: boolean): Promise<void> {
    let body: { instances?: { id: string; health?: { status?: string; lastError?: string } | string }[] } | { id: string }[];
    try {
      const res = await fetch(`${this.state!.control}/v1/instances`, { signal: AbortSignal.timeout(2000), headers: adminHeaders(this.#adminToken) });
      body = (await res.json()) as typeof body;
    } catch {
      return;
    }
    const list = Array.isArray(body) ? body : (body.instances ?? []);
    const seen = new Set<string>();
    for (const raw of list as { id: string; health?: { status?: string; lastError?: string } | string }[]) {
      const status = typeof raw.health === 'string' ? raw.health : (raw.health?.status ?? 'unknown');
      seen.add(raw.id);
      const before = this.#health.get(raw.id);
      if (before !== status) {
        this.#health.set(raw.id, status);
        if (report && !this.#stopped) {
          const why = typeof raw.health === 'object' && raw.health?.lastError && status !== 'healthy' ? ` (${raw.health.lastError})` : '';
          this.#o.log(`${raw.id}: ${status}${why}`);
        }
      }
    }
    for (const id of [...this.#health.keys()]) {
      if (!seen.has(id)) {
        this.#health.delete(id);
        if (report && !this.#stopped) this.#o.log(`${id}: left the mesh`);
      }
    }
  }

  /** Stops every process: apps first, then proxies, then the control plane. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#watch);
    await Promise.all(this.#apps.map((p) => p.stop()));
    await Promise.all([...this.#proxies.map((p) => p.stop()), this.#prometheus?.stop()]);
    for (const h of this.#held) h.close();
    await this.#control?.stop();
    // Last: whatever is still in a namespace (a process that ignored SIGKILL's group) dies with it.
    await this.#isolation?.network.destroy();
  }
}

/**
 * `--isolate` with ExternalServices needs the mesh's egress gateway: a pod has no route out
 * of its namespace (its address is on the run's bridge, nothing more) and the host's
 * 127.0.0.0/8 is not the pod's, so what leaves the mesh leaves from the host, through the
 * gateway. The runner does not start one the mesh file does not name (the control plane
 * would not know it, and `trellis up` without --isolate would then behave otherwise): it
 * refuses, saying what to add.
 */
export function assertIsolatedEgress(config: Pick<MeshConfig, 'externalServices' | 'egressGateway'>): void {
  const externals = config.externalServices ?? [];
  if (externals.length === 0 || config.egressGateway !== undefined) return;
  const names = externals.map((e) => serviceKey(e.name, e.namespace));
  throw new TrellisError('TRELLIS_E_USAGE', {
    reason: `--isolate sends ExternalService calls out through the mesh's egress gateway (a pod has no route out of its namespace, and 127.0.0.1 of the host is not the pod's), and the mesh names none for ${names.slice(0, 5).join(', ')}${names.length > 5 ? ` and ${names.length - 5} more` : ''}: add \`outboundTrafficPolicy: { egressGateway: { name: egress } }\` to the Mesh's spec, or run without --isolate`,
  });
}

/**
 * The env entries that tell an app where an upstream's listener is: by the upstream's key
 * (`TRELLIS_UPSTREAM_ECHO_NS_A` for `echo.ns-a`), and, for a service in the app's own
 * namespace, by its bare name too (`TRELLIS_UPSTREAM_ECHO`), as `echo` resolves there.
 */
function upstreamEnv(u: { service: string; port: number; servicePort?: number }, namespace: string): [string, string][] {
  const address = `${LOOPBACK}:${u.port}`;
  // A listener for one port of a multi-port service: TRELLIS_UPSTREAM_<SVC>_<PORT>.
  const suffix = u.servicePort === undefined ? '' : `_${u.servicePort}`;
  const out: [string, string][] = [[`TRELLIS_UPSTREAM_${envName(u.service)}${suffix}`, address]];
  const { name, namespace: ns } = splitServiceKey(u.service);
  if (ns === namespace && name !== u.service) out.push([`TRELLIS_UPSTREAM_${envName(name)}${suffix}`, address]);
  return out;
}

/** Services whose `requires` are met; optional ones that aren't are skipped with the reason. */
function chooseServices(config: MeshConfig): { running: NormalizedService[]; skipped: { service: string; reason: string }[] } {
  const running: NormalizedService[] = [];
  const skipped: { service: string; reason: string }[] = [];
  for (const s of config.services) {
    const missing = s.requires.filter((exe) => !onPath(exe));
    if (missing.length === 0) {
      running.push(s);
      continue;
    }
    const reason = `${missing.join(', ')} not found on PATH (on Debian: apt-get install ${missing.join(' ')})`;
    if (!s.optional) throw new TrellisError('TRELLIS_E_USAGE', { reason: `service ${s.name} needs ${reason}` });
    skipped.push({ service: s.name, reason: `${reason}; running without it` });
  }
  return { running, skipped };
}

function onPath(exe: string): boolean {
  return findOnPath(exe) !== undefined;
}

/** The `trellis proxy` flags for the Mesh's `spec.accessLog` (none when it has none: the proxies' defaults). */
export function accessLogFlags(spec: AccessLogSpec | undefined): string[] {
  if (spec === undefined) return [];
  return [
    ...(spec.keepQuery === true ? ['--access-log-keep-query'] : []),
    ...(spec.maxFileBytes !== undefined ? ['--access-log-max-bytes', String(spec.maxFileBytes)] : []),
    ...(spec.maxFiles !== undefined ? ['--access-log-max-files', String(spec.maxFiles)] : []),
    ...(spec.fields !== undefined ? ['--access-log-fields', spec.fields.join(',')] : []),
  ];
}

/**
 * The runner's environment without any bootstrap secret, credential or admin token it may
 * itself have been given: apps and proxies get none of them, and the control plane keeps
 * its admin token in the state folder.
 */
function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { [BOOTSTRAP_SECRET_ENV]: _secret, [CREDENTIAL_ENV]: _credential, TRELLIS_TOKEN: _token, [ADMIN_TOKEN_ENV]: _adminToken, ...rest } = env;
  return rest;
}

/** `postgres-main` → `POSTGRES_MAIN`. */
export function envName(service: string): string {
  return service.toUpperCase().replace(/[-.]/g, '_');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once `host:port` takes a TCP connection (a gateway opens its ports after its first snapshot). */
async function waitForPort(host: string, port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await sleep(100);
  }
  throw new TrellisError('TRELLIS_E_USAGE', { reason: `${what} did not open within ${timeoutMs / 1000} s; see its log` });
}

async function waitFor(url: string, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(100);
  }
  throw new TrellisError('TRELLIS_E_USAGE', { reason: `${what} did not become ready within ${timeoutMs / 1000} s (${url}: ${last}); see its log` });
}
