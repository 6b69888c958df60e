// The whole control plane, assembled: the one place its stages are wired together.
// sources/ (config watcher, last good config, health checker) keep the model current;
// compile/ turns the model into one snapshot per proxy; distribute/ streams snapshots to
// proxies over the proxy stream; admin/ answers the admin API. The admin API and the
// proxy stream share one HTTP server. `trellis control` starts it from here (the local
// runner runs `trellis control` as a child process); tests start it in-process.
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../config/load.js';
import { formatProblem } from '../config/problems.js';
import { TrellisError } from '../errors.js';
import type { HostPort } from '../api/protocol.js';
import { MeshModel, type ConfigProblem } from './model.js';
import { HealthChecker, type HealthCheckerOptions } from './sources/health-checker.js';
import { Distributor } from './distribute/distributor.js';
import { ConfigWatcher, type ConfigLoader } from './sources/config-watcher.js';
import { createAdminHandler } from './admin/admin-api.js';
import { AdminAuth } from './admin/admin-auth.js';
import { newAdminToken } from '../security/admin-token.js';
import { WeightsApi } from './admin/weights-api.js';
import { traceAccess, TracesApi, type TracesApiOptions } from './admin/traces-api.js';
import { LastGoodConfig } from './sources/last-good-config.js';
import { CertificateAuthority, type CertificateAuthorityOptions } from './ca/certificate-authority.js';
import { IdentityService } from './ca/identity-service.js';
import { ControlMetrics } from './control-metrics.js';
import { mintCredential, newBootstrapSecret, type CredentialSubject } from '../security/bootstrap-credential.js';
import { DEFAULT_TRUST_DOMAIN } from '../security/spiffe.js';
import { Dashboard, type DashboardOptions } from './dashboard/dashboard.js';
import { httpTraceSource } from './dashboard/trace-client.js';
import { KubernetesControl, type KubernetesControlOptions } from './sources/kubernetes-control.js';
import { RESOURCE_KINDS_READ } from './sources/kubernetes-resources.js';
import type { TimerClock } from '../api/timer-clock.js';
import { LogLimiter } from '../log-limiter.js';
import { connectionsCheckingIntervalMs, controlServerLimits, type ControlServerLimits } from './server-limits.js';

export interface ControlPlaneOptions {
  /** Mesh and route files (or what `loadConfig` accepts). */
  configPaths: string[];
  /** Where the admin API and proxy stream listen; port 0 picks a free port. */
  admin: HostPort;
  /** Join token proxies must present (`Authorization: Bearer <token>`). */
  token?: string;
  /** One line per event; default: stderr. */
  log?: (line: string) => void;
  /** Replaces `loadConfig` (tests). */
  load?: ConfigLoader;
  /**
   * The control plane's state folder: the last good config is kept in its `control/`
   * folder, and a start whose files do not load serves it (and reports the files'
   * problems) instead of failing. Absent: nothing is kept.
   */
  stateDir?: string;
  /** Quiet time before a changed config file is reloaded (default 100 ms). */
  watchDebounceMs?: number;
  /** How often the config files are checked for changes no watch event reported (default 1000 ms; 0: never). */
  watchPollMs?: number;
  /** How long model changes must be quiet before a push (default 100 ms; src/control/distribute/push-debounce.ts). */
  pushDebounceMs?: number;
  /** The longest a change waits for its push while changes keep coming, as in a registration storm (default 1000 ms). */
  pushDebounceMaxMs?: number;
  /** How long resumed proxies may wait for their instances after a start (see Distributor). */
  resumeWaitMs?: number;
  /** The clock of the global rate limits' quota rebalancing (tests: the one the proxies' buckets run on); absent: the real one. */
  rateQuotaClock?: TimerClock;
  /**
   * The secret proxies' bootstrap credentials are minted from (the local runner makes one
   * per run and mints each instance's). Absent: one is made in memory, and only
   * {@link ControlPlane.credentialFor} can mint credentials for it.
   */
  bootstrapSecret?: string;
  /** The CA's clock and rotation timing (tests); the trust domain and lifetime come from the mesh file. */
  ca?: Pick<CertificateAuthorityOptions, 'now' | 'rootLifetimeMs' | 'issuerLifetimeMs' | 'propagationMs'>;
  /**
   * The admin API's bearer token (src/security/admin-token.ts); every path but /healthz
   * needs it. Absent: one is made in memory ({@link ControlPlane.adminToken} tells it).
   */
  adminToken?: string;
  /** The dashboard's trace store (default: this control plane's /v1/traces), bench folder and stats tuning. */
  dashboard?: Pick<DashboardOptions, 'traces' | 'benchResultsDir' | 'stats'>;
  /** The trace receiver's limits (body size, traces and spans kept). */
  traces?: TracesApiOptions;
  /**
   * `--kubernetes`: services and endpoints from the Kubernetes API too, proxies joined by
   * ServiceAccount token (TokenReview) instead of bootstrap credentials, a Lease for the
   * leader (src/control/sources/kubernetes-control.ts).
   */
  kubernetes?: KubernetesControlOptions;
  /**
   * What the HTTP server holds every client to: open connections, header and request
   * timeouts, the proxy streams' hello deadline (src/control/server-limits.ts; absent
   * fields keep their defaults). A value that is not a positive whole number is refused
   * (TRELLIS_E_USAGE).
   */
  limits?: Partial<ControlServerLimits>;
  /** The clock of the proxy streams' hello deadline, push debounce and slices (tests); absent: the real one. */
  streamClock?: TimerClock;
  /** Health checker tuning (tests). */
  health?: Pick<HealthCheckerOptions, 'probe' | 'timers' | 'schedule' | 'startupIntervalMs' | 'startupWindowMs' | 'probesPerTurn'>;
}

export interface ControlPlane {
  /** Where the HTTP server (admin API and proxy stream) actually listens. */
  readonly address: HostPort;
  /** `http://host:port`, the `--control` URL for proxies and the CLI. */
  readonly url: string;
  readonly model: MeshModel;
  readonly identity: IdentityService;
  readonly metrics: ControlMetrics;
  /** The admin API's token (what `Authorization: Bearer` must carry). */
  readonly adminToken: string;
  /** The dashboard served at /dashboard/ (its own login: a session cookie, or the admin token). */
  readonly dashboard: Dashboard;
  /** The OTLP receiver and recent traces (`/v1/traces`). */
  readonly traces: TracesApi;
  /** The Kubernetes source, with `kubernetes` set. */
  readonly kubernetes?: KubernetesControl;
  /** The bootstrap credential of one proxy (for tests and `trellis identity credential`). */
  credentialFor(subject: CredentialSubject): string;
  /** Reloads the config files now (the watcher also does this on change). */
  reload(): Promise<void>;
  /** Stops checks, watchers and streams, and closes the server. */
  close(): Promise<void>;
}

const stderrLog = (line: string): void => void process.stderr.write(`${line}\n`);

/** The problems of a config that could not be loaded, as one error. */
export function configInvalid(problems: readonly ConfigProblem[]): TrellisError {
  const lines = problems.map((p) => `  ${formatProblem(p)}`).join('\n');
  return new TrellisError('TRELLIS_E_CONFIG_INVALID', {
    file: problems[0]?.file ?? 'config',
    details: `${problems.length} problem(s):\n${lines}`,
    problems,
  });
}

function listen(server: http.Server, admin: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(admin.port, admin.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Loads the config and starts the control plane. When the files do not load, it starts
 * with the last good config kept in `stateDir` (reporting the problems in the log and
 * in /v1/config, as a failed live edit does); with none kept, it rejects with
 * TRELLIS_E_CONFIG_INVALID (its `params.problems` lists every problem). Rejects with
 * the listen error (e.g. EADDRINUSE) when the admin address is taken.
 */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.log ?? stderrLog;
  // Checked before anything starts: a bad limit is the caller's mistake, not a half-started control plane.
  const limits = controlServerLimits(opts.limits);
  const model = new MeshModel();
  const lastGood = opts.stateDir !== undefined ? new LastGoodConfig(path.join(opts.stateDir, 'control'), log) : undefined;
  const watcher = new ConfigWatcher({
    paths: opts.configPaths,
    model,
    // With a state folder, a Secret may name the run's local certificate (check-gateways.ts).
    load: opts.load ?? (opts.stateDir !== undefined ? (paths) => loadConfig(paths, { stateDir: opts.stateDir }) : loadConfig),
    formatProblem,
    log,
    ...(opts.watchDebounceMs !== undefined ? { debounceMs: opts.watchDebounceMs } : {}),
    ...(opts.watchPollMs !== undefined ? { pollMs: opts.watchPollMs } : {}),
    ...(lastGood ? { onAccept: (config, files) => void lastGood.save(config, files) } : {}),
  });
  const problems = await watcher.load();
  if (problems.length > 0) {
    const saved = await lastGood?.read();
    if (!saved) throw configInvalid(problems);
    watcher.restore(saved, problems);
  }

  // The CA reads the identity settings once, at start: a changed trust domain or CA
  // means new certificates for every proxy, which a restart makes explicit.
  const identityConfig = model.config.identity;
  const kubernetes =
    opts.kubernetes && new KubernetesControl({ model, log, trustDomain: identityConfig?.trustDomain ?? DEFAULT_TRUST_DOMAIN, options: opts.kubernetes });
  let ca: CertificateAuthority;
  const openCa = (): Promise<CertificateAuthority> =>
    CertificateAuthority.open({
      trustDomain: identityConfig?.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      ...(identityConfig ? { certificateLifetimeMs: identityConfig.certificateLifetimeMs } : {}),
      ...(identityConfig?.ca ? { files: identityConfig.ca } : {}),
      ...(opts.stateDir !== undefined ? { dir: path.join(opts.stateDir, 'ca') } : {}),
      log,
      ...opts.ca,
    });
  try {
    ca = await openCa();
    // On Kubernetes the replicas sign with one generated CA, shared through a Secret.
    if (kubernetes && !identityConfig?.ca && opts.stateDir !== undefined && (await kubernetes.shareCa(path.join(opts.stateDir, 'ca')))) ca = await openCa();
  } catch (err) {
    kubernetes?.stop();
    watcher.close();
    await lastGood?.flush();
    throw err;
  }
  const metrics = new ControlMetrics();
  if (kubernetes) {
    metrics.countSkipped([...RESOURCE_KINDS_READ.map((k) => k.kind), 'Gateway', 'Secret'], () => kubernetes.skipped);
    metrics.countUnlisted(kubernetes.securityKinds, () => kubernetes.unlisted);
  }
  const identity = new IdentityService({ ca, model, metrics, log, ...(opts.ca?.now ? { now: opts.ca.now } : {}) });
  const bootstrapSecret = opts.bootstrapSecret ?? newBootstrapSecret();
  const caExpiry = (): void => {
    const v = ca.view();
    const soonest = Math.min(Date.parse(v.issuer.notAfter), ...v.roots.map((r) => Date.parse(r.notAfter)));
    metrics.caExpiry.set(Math.round((soonest - (opts.ca?.now ?? Date.now)()) / 1000));
  };
  caExpiry();
  // Issuer renewal, root rotation and retirement happen on issue too; the timer covers a quiet mesh.
  const caTimer = setInterval(() => {
    ca.maintain().then(caExpiry, (err: unknown) => log(`control: ca: maintenance failed: ${err instanceof Error ? err.message : String(err)}`));
  }, 10 * 60_000).unref();

  await kubernetes?.start();
  kubernetes?.serveWebhookTls(ca);
  const checker = new HealthChecker({ model, log, onTransition: (from, to) => metrics.healthTransition(from, to), ...opts.health });
  const distributor = new Distributor({
    model,
    log,
    bootstrapSecret,
    identity,
    metrics,
    ...(opts.token ? { token: opts.token } : {}),
    ...(kubernetes ? { verifyHello: kubernetes.verifyHello, registerSidecars: false } : {}),
    ...(opts.pushDebounceMs !== undefined ? { debounceMs: opts.pushDebounceMs } : {}),
    ...(opts.pushDebounceMaxMs !== undefined ? { debounceMaxMs: opts.pushDebounceMaxMs } : {}),
    ...(opts.resumeWaitMs !== undefined ? { resumeWaitMs: opts.resumeWaitMs } : {}),
    ...(opts.rateQuotaClock ? { quotaClock: opts.rateQuotaClock } : {}),
    ...(opts.streamClock ? { clock: opts.streamClock } : {}),
    helloTimeoutMs: limits.helloTimeoutMs,
  });
  const weights = new WeightsApi({ model, log, reload: () => watcher.reload() });
  const adminToken = opts.adminToken ?? newAdminToken();
  const auth = new AdminAuth({ token: adminToken, metrics, log });
  // The trace reads take the admin token; the receiver also takes spans from processes on
  // this machine (the apps `trellis up` starts export there without a credential of their
  // own) and from proxies anywhere that send their bootstrap credential (isolated sidecars,
  // in their own network namespaces, are not on loopback): what it takes is validated and
  // bounded (traces-api.ts).
  const traces = new TracesApi({
    ...opts.traces,
    authorize: traceAccess({ bootstrapSecret, admin: (req) => auth.check(req, '/v1/traces') === undefined }),
  });
  let url = '';
  const self = (): ReturnType<typeof httpTraceSource> => httpTraceSource(url, adminToken);
  const dashboard = new Dashboard({
    model,
    weights,
    formatProblem,
    adminToken,
    log,
    traces: opts.dashboard?.traces ?? { list: (n) => self().list(n), get: (id) => self().get(id) },
    ...(opts.dashboard?.benchResultsDir !== undefined ? { benchResultsDir: opts.dashboard.benchResultsDir } : {}),
    ...(opts.dashboard?.stats ? { stats: opts.dashboard.stats } : {}),
  });
  // Requests proxies make (not the admin API's users) go before the admin handler, checked by
  // their bootstrap credential, not the admin token (admin-auth.ts says why): the stream's upgrade below.
  // The dashboard checks its own login (a session cookie or the admin token) before the admin API's lock.
  const admin = createAdminHandler({ model, formatProblem, weights, identity, metrics, auth, traces, ...(kubernetes ? { kubernetes } : {}) });
  // Every client is held to the server limits before it shows a credential: a request's
  // head and body must arrive in time (Node answers 408 and closes; an upgraded stream
  // leaves these timers, and the distributor holds it to its hello deadline), and
  // connections over the cap are closed as they arrive ('drop'), so a local flood
  // cannot take the file descriptors the proxies' streams need.
  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: connectionsCheckingIntervalMs(limits),
    },
    (req, res) => dashboard.handle(req, res) || admin(req, res),
  );
  server.maxConnections = limits.maxConnections;
  const refusedLog = new LogLimiter({ perMinute: 5, log, dropped: (n) => `control: ${n} more refused connections not logged in the last minute` });
  server.on('drop', () => {
    metrics.connectionRefused('max-connections');
    refusedLog.write(() => `control: refused a connection: ${limits.maxConnections} are open (--max-connections)`);
  });
  server.on('upgrade', (req, socket, head) => distributor.handleUpgrade(req, socket, head));
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // A head or body that did not arrive in time: 408, as Node answers when no one listens here.
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      metrics.requestTimedOut();
      if (socket.writable) socket.write('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    }
    socket.destroy();
  });
  try {
    await listen(server, opts.admin);
  } catch (err) {
    clearInterval(caTimer);
    kubernetes?.stop();
    watcher.close();
    metrics.close();
    await lastGood?.flush();
    throw err;
  }
  // An accept error (libuv absorbs EMFILE itself, but passes others on) must not end the
  // control plane: a server 'error' with no listener would.
  server.on('error', (err: NodeJS.ErrnoException) => {
    metrics.connectionRefused('accept-error');
    refusedLog.write(() => `control: could not accept a connection: ${err.code ?? err.message}`);
  });
  checker.start();
  distributor.start();
  watcher.watch();

  const addr = server.address() as AddressInfo;
  const address = { host: addr.address, port: addr.port };
  url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  const c = model.config;
  log(`control: admin API and proxy stream on ${url} (${c.services.length} services, ${c.routes.length} routes${opts.token ? ', join token required' : ''})`);

  let closing: Promise<void> | undefined;
  return {
    address,
    url,
    model,
    identity,
    metrics,
    adminToken,
    dashboard,
    traces,
    ...(kubernetes ? { kubernetes } : {}),
    credentialFor: (subject) => mintCredential(bootstrapSecret, subject),
    reload: () => watcher.reload(),
    close() {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(caTimer);
        kubernetes?.stop();
        dashboard.close();
        watcher.close();
        checker.stop();
        distributor.stop();
        metrics.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => lastGood?.flush());
      return closing;
    },
  };
}
