// `trellis control --kubernetes`: the Kubernetes API as one more source of the control
// plane, beside the files. Its Services and EndpointSlices (with pods and
// ServiceAccounts) become the model's discovered services and endpoints
// (kubernetes-discovery.ts); proxies join with their projected ServiceAccount token,
// checked by a TokenReview (audience trellis), and the token's namespace and
// ServiceAccount are the only identity their certificates may name; a Lease elects the
// one replica that may write to the API. Every replica serves proxies.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { serviceKey, splitServiceKey } from '../../api/names.js';
import type { ProxyInfo } from '../../api/protocol.js';
import { kubeCall, kubeTransport, Reflector, type KubeCall, type KubeObject, type ListPage, type StartWatch } from '../../k8s/source/reflector.js';
import { RouteStatusWriter, STATUS_ROUTE_KINDS } from '../../k8s/source/route-status.js';
import { StatusWriter } from '../../k8s/source/status-writer.js';
import { desiredGatewayClassStatus, desiredGatewayStatus, STATUS_GATEWAY_KINDS, type GatewayWorld } from '../../k8s/source/gateway-status.js';
import { gatewayWorld, routeWorld } from './kubernetes-route-status.js';
import { LeaderElector, leaseApiWith, type LeaseApi } from '../../k8s/source/leader-election.js';
import { caSecretApiWith, CA_SECRET, type CaSecretApi } from '../../k8s/source/ca-secret.js';
import { WebhookTlsWriter, type ServingIssuer } from '../../k8s/source/webhook-tls.js';
import { postTokenReviewWith, reviewToken, type PostTokenReview, type TokenReviewResult } from '../../k8s/source/token-review.js';
import type { HelloVerdict } from '../distribute/distributor.js';
import type { Discovered, DiscoveredResources, MeshModel } from '../model.js';
import { discoveredFromCluster } from './kubernetes-discovery.js';
import { GatewaySource, type RefusedListener } from './kubernetes-gateways.js';
import { clusterResources, RESOURCE_KINDS_READ, type SkippedObject } from './kubernetes-resources.js';
import { KubernetesSource } from './kubernetes-source.js';
import { describeUnlisted, unlistedSecurityKinds } from './kubernetes-unlisted.js';
import type { KubernetesUnlistedKind } from '../../api/admin.js';
import type { ControlConfig } from './mesh-config.js';

const NO_RESOURCES: DiscoveredResources = {
  routes: [],
  policies: [],
  rateLimitPolicies: [],
  referenceGrants: [],
  authorizationPolicies: [],
  peerAuthentications: [],
  requestAuthentications: [],
  gateways: [],
};

/** The Lease replicas elect their leader with (the install's Role allows exactly this one). */
export const CONTROL_LEASE = { namespace: 'trellis-system', name: 'trellis-control' } as const;

/** How long a token's review is reused: accepted, refused, and while it is in progress (joined by concurrent hellos). */
const REVIEW_OK_MS = 60_000;
const REVIEW_REFUSED_MS = 5_000;
const REVIEW_PENDING_MS = 30_000;
const MAX_REVIEWS_IN_FLIGHT = 64;
const MAX_CACHED_REVIEWS = 10_000;

export interface KubernetesControlOptions {
  readonly list: ListPage;
  readonly watch: StartWatch;
  readonly postTokenReview: PostTokenReview;
  /** The Lease to elect a leader with; absent: no election (this replica never leads). */
  readonly lease?: LeaseApi;
  /** The Secret the replicas share a generated CA through; absent: each keeps its own. */
  readonly caSecret?: CaSecretApi;
  /** This replica's name in the Lease (default: $POD_NAME, else the host name). */
  readonly replica?: string;
  /** The injected sidecars' first inbound port (default 15006; kubernetes-discovery.ts). */
  readonly inboundPort?: number;
  /** How long a start waits for the first complete list of every kind (default 30 s); then it serves what it has. */
  readonly syncTimeoutMs?: number;
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  /** How often the Lease is tried or renewed (default 2 s). */
  readonly leaseRetryMs?: number;
  /** Requests to the API: the leader writes the routes' Gateway API status with it (absent: no status is written). */
  readonly call?: KubeCall;
  /** How often the leader looks at every route's status anyway (default 10 s; src/k8s/source/route-status.ts). */
  readonly statusResyncMs?: number;
  /** How often the leader looks at the webhook's Secret and caBundle anyway (default 10 min; src/k8s/source/webhook-tls.ts). */
  readonly webhookTlsResyncMs?: number;
  /** The clock the webhook certificate's renewal is judged by (tests). */
  readonly now?: () => number;
}

/** The options of a KubeConfig (`--kubeconfig F`, else in-cluster): its list, watch, TokenReview and Lease. */
export function kubernetesControlOptions(kc: KubeConfig): KubernetesControlOptions {
  const namespace = process.env.POD_NAMESPACE || CONTROL_LEASE.namespace;
  return {
    ...kubeTransport(kc),
    postTokenReview: postTokenReviewWith(kc),
    lease: leaseApiWith(kc, namespace, CONTROL_LEASE.name),
    caSecret: caSecretApiWith(kc, namespace),
    call: kubeCall(kc),
  };
}

export class KubernetesControl {
  readonly #model: MeshModel;
  readonly #log: (line: string) => void;
  readonly #source: KubernetesSource;
  readonly #elector?: LeaderElector;
  readonly #opts: KubernetesControlOptions;
  readonly #trustDomain: string;
  #services?: { readonly json: string; readonly value: Discovered['services'] };
  /** One reflector per route and policy kind read from the API (kubernetes-resources.ts). */
  readonly #resourceReflectors: readonly Reflector[];
  /** Gateways of class trellis and their TLS Secrets (kubernetes-gateways.ts). */
  readonly #gateways: GatewaySource;
  #refused: readonly RefusedListener[] = [];
  /** The routes and policies in force, and what they were checked against (recomputed when any of it changes). */
  #resources?: {
    readonly value: DiscoveredResources;
    readonly json: string;
    readonly files: ControlConfig;
    readonly services: Discovered['services'];
    readonly versions: string;
    readonly generation: number;
  };
  #resourceGeneration = 0;
  #skipped: readonly SkippedObject[] = [];
  readonly #unsubscribe: () => void;
  #started = false;
  /** The routes' Gateway API status, written by the leader (src/k8s/source/route-status.ts). */
  readonly #status?: RouteStatusWriter;
  /** The Gateways' Gateway API status, written by the leader (src/k8s/source/gateway-status.ts). */
  readonly #gatewayStatus?: StatusWriter<GatewayWorld>;
  /** Said in the log that proxies are refused for an unlisted security kind (kubernetes-unlisted.ts). */
  #refusing = false;
  /** The webhook's Secret and caBundle, kept by the leader once the CA is known (serveWebhookTls). */
  #webhookTls?: WebhookTlsWriter;
  readonly #reviews = new Map<string, { until: number; result: Promise<TokenReviewResult> }>();
  #inFlight = 0;

  constructor(o: { model: MeshModel; trustDomain: string; log: (line: string) => void; options: KubernetesControlOptions }) {
    this.#model = o.model;
    this.#log = o.log;
    this.#opts = o.options;
    this.#trustDomain = o.trustDomain;
    this.#source = new KubernetesSource({
      list: o.options.list,
      watch: o.options.watch,
      trustDomain: o.trustDomain,
      log: o.log,
      ...(o.options.backoffMs ? { backoffMs: o.options.backoffMs } : {}),
      kinds: ['Service', 'EndpointSlice', 'Pod'],
      // Not before the routes and policies listed too: a snapshot without the AuthorizationPolicies would allow every caller.
      onView: () => {
        if (this.#serving) this.#publish();
      },
    });
    // Routes and policies: the same reflector per kind; a change recompiles once every kind listed.
    this.#resourceReflectors = RESOURCE_KINDS_READ.map(
      (kind) =>
        new Reflector({
          kind,
          list: o.options.list,
          watch: o.options.watch,
          log: o.log,
          ...(o.options.backoffMs ? { backoffMs: o.options.backoffMs } : {}),
          onChange: () => {
            this.#resourceGeneration++;
            if (this.#serving) this.#publish();
            if (this.#refusing && this.unlisted.length === 0) {
              this.#refusing = false;
              this.#log('control: kubernetes: every security policy kind listed; proxies are served again');
            }
          },
        }),
    );
    this.#gateways = new GatewaySource({
      list: o.options.list,
      watch: o.options.watch,
      log: o.log,
      ...(o.options.backoffMs ? { backoffMs: o.options.backoffMs } : {}),
      onChange: () => {
        this.#resourceGeneration++;
        if (this.#serving) this.#publish();
      },
    });
    // A reload of the files changes what the API's routes and policies are checked against.
    this.#unsubscribe = this.#model.on('change', (reason) => {
      if (reason === 'config' && this.#resources && this.#resources.files !== this.#model.configState.config && this.#serving) this.#publish();
    });
    if (o.options.lease) {
      this.#elector = new LeaderElector({
        api: o.options.lease,
        namespace: process.env.POD_NAMESPACE || CONTROL_LEASE.namespace,
        name: CONTROL_LEASE.name,
        identity: o.options.replica ?? (process.env.POD_NAME || os.hostname()),
        log: o.log,
        ...(o.options.leaseRetryMs !== undefined ? { retryMs: o.options.leaseRetryMs } : {}),
        onChange: () => {
          this.#status?.schedule();
          this.#gatewayStatus?.schedule();
          this.#webhookTls?.schedule();
        },
      });
    }
    if (o.options.call && this.#elector) {
      const routeReflectors = this.#resourceReflectors.filter((r) => STATUS_ROUTE_KINDS[r.kind] !== undefined);
      let world: ReturnType<typeof routeWorld> | undefined;
      // Judged once the routes are in the model (start() done), against what is in force.
      const currentRouteWorld = () => {
        if (!this.#started) return undefined;
        world = routeWorld(this.#model.config, this.#model.discoveredEndpoints(), this.#skipped, world, this.#refused);
        return world.world;
      };
      this.#status = new RouteStatusWriter({
        call: o.options.call,
        leading: () => this.leading,
        routes: () => new Map(routeReflectors.map((r) => [r.kind, r.list()])),
        world: currentRouteWorld,
        log: o.log,
        ...(o.options.statusResyncMs !== undefined ? { resyncMs: o.options.statusResyncMs } : {}),
      });
      // The Gateways' world: the same object while nothing it is made of changed (no route, refusal, skip or route world).
      let gateways: { readonly inputs: readonly unknown[]; readonly world: GatewayWorld } | undefined;
      const gatewayReflector = this.#gateways.reflectors.find((r) => r.kind === 'Gateway');
      const classReflector = this.#gateways.reflectors.find((r) => r.kind === 'GatewayClass');
      this.#gatewayStatus = new StatusWriter<GatewayWorld>({
        call: o.options.call,
        leading: () => this.leading,
        objects: () =>
          new Map([
            ['Gateway', gatewayReflector?.list() ?? []],
            ['GatewayClass', classReflector?.list() ?? []],
          ]),
        paths: STATUS_GATEWAY_KINDS,
        what: 'Gateway',
        desired: (kind, object, gatewaysWorld, now) =>
          kind === 'GatewayClass' ? desiredGatewayClassStatus(object, now) : desiredGatewayStatus(object, gatewaysWorld, now),
        world: () => {
          const routesWorld = currentRouteWorld();
          if (routesWorld === undefined) return undefined;
          const routes = new Map(routeReflectors.map((r) => [r.kind, r.list()]));
          const versions = JSON.stringify([...routes].map(([kind, list]) => [kind, list.map((x) => x.metadata?.resourceVersion ?? null)]));
          const objects = gatewayReflector?.list() ?? [];
          const classes = classReflector?.list() ?? [];
          const gatewayVersions = JSON.stringify([...objects, ...classes].map((x) => x.metadata?.resourceVersion ?? null));
          const inputs = [routesWorld, this.#model.config, this.#skipped, this.#refused, versions, gatewayVersions];
          if (gateways?.inputs.every((x, i) => x === inputs[i])) return gateways.world;
          gateways = { inputs, world: gatewayWorld(this.#model.config, this.#skipped, this.#refused, routes, objects, classes) };
          return gateways.world;
        },
        log: o.log,
        ...(o.options.statusResyncMs !== undefined ? { resyncMs: o.options.statusResyncMs } : {}),
      });
    }
  }

  get #synced(): boolean {
    return this.#source.synced && this.#resourceReflectors.every((r) => r.synced) && this.#gateways.synced;
  }

  /**
   * Whether changes go to the model: once every kind listed (before, a snapshot could lack
   * AuthorizationPolicies that exist), or once start() stopped waiting for a kind that does
   * not list (a CRD not installed): then what is known is served, and kept current.
   */
  get #serving(): boolean {
    return this.#started || this.#synced;
  }

  #publish(): void {
    const next = discoveredFromCluster(this.#source.view(), { inboundPort: this.#opts.inboundPort });
    // Most changes are endpoints (pods come and go): the same services stay the same array.
    const json = JSON.stringify(next.services);
    if (this.#services?.json !== json) this.#services = { json, value: next.services };
    const services = this.#services.value;
    this.#model.setDiscovered({ services, endpoints: next.endpoints, resources: this.#checkedResources(services, next.endpoints) });
    this.#status?.schedule();
    this.#gatewayStatus?.schedule();
  }

  /**
   * The API's routes and policies that pass the loader's checks against the services in
   * force; recomputed only when they, the files or the services (and their versions) changed.
   */
  #checkedResources(services: Discovered['services'], endpoints: Discovered['endpoints']): DiscoveredResources {
    const files = this.#model.configState.config;
    const byService = new Map<string, Set<string>>();
    for (const e of endpoints) byService.set(e.service, (byService.get(e.service) ?? new Set()).add(e.version));
    const versions = JSON.stringify([...byService].map(([k, v]) => [k, [...v].sort()]).sort());
    const r = this.#resources;
    if (r && r.files === files && r.services === services && r.versions === versions && r.generation === this.#resourceGeneration) return r.value;
    const objects = new Map<string, KubeObject[]>(this.#resourceReflectors.map((x) => [x.kind, x.list()]));
    // Checked against the files' services and the cluster's, as the model merges them,
    // and the files' Gateways and the cluster's (routes attach to them).
    const keys = new Set(files.services.map((s) => serviceKey(s.name, s.namespace)));
    let checked: ReturnType<typeof clusterResources>;
    let gateways: ReturnType<GatewaySource['check']>;
    try {
      gateways = this.#gateways.check(objects.get('ReferenceGrant') ?? [], files.gateways);
      const merged: ControlConfig = {
        ...files,
        services: [...files.services, ...services.filter((s) => !keys.has(serviceKey(s.name, s.namespace)))],
        gateways: [...(files.gateways ?? []), ...gateways.gateways],
      };
      checked = clusterResources(objects, merged, byService, gateways.gateways);
    } catch (err) {
      // A defect, not an object's problem (those are skipped): the last routes and policies stay in force.
      this.#log(
        `control: kubernetes: checking the API's routes and policies failed (${err instanceof Error ? err.message : String(err)}); the last ones stay in force`,
      );
      return r?.value ?? NO_RESOURCES;
    }
    const resources = checked.resources;
    const skipped = [...checked.skipped, ...gateways.skipped].sort((a, b) => (a.object < b.object ? -1 : a.object > b.object ? 1 : 0));
    this.#refused = gateways.refused;
    const before = new Map(this.#skipped.map((s) => [s.object, JSON.stringify(s.problems)]));
    for (const s of skipped) {
      if (before.get(s.object) === JSON.stringify(s.problems)) continue;
      const first = s.problems
        .slice(0, 3)
        .map((p) => `${p.path ? `${p.path}: ` : ''}${p.message}`.slice(0, 300))
        .join('; ');
      this.#log(`control: kubernetes: skipping ${s.object}: ${first}${s.problems.length > 3 ? ` (and ${s.problems.length - 3} more)` : ''}`);
    }
    const now = new Set(skipped.map((s) => s.object));
    for (const object of before.keys()) if (!now.has(object)) this.#log(`control: kubernetes: ${object} is no longer skipped (fixed or deleted)`);
    this.#skipped = skipped;
    // The same routes and policies as before (a re-list, a status update, a new pod version): the same
    // object, so the model's config stays the same object and nothing keyed by it is recompiled.
    const json = JSON.stringify(resources);
    const value = r && r.json === json ? r.value : resources;
    this.#resources = { value, json, files, services, versions, generation: this.#resourceGeneration };
    return value;
  }

  /** The route and policy objects of the API left out for their problems (the admin view and tests). */
  get skipped(): readonly SkippedObject[] {
    return this.#skipped;
  }

  /** The listeners of the API's Gateways left out, with their condition (ResolvedRefs False). */
  get refusedListeners(): readonly RefusedListener[] {
    return this.#refused;
  }

  /** The source's reflectors (tests look at their state). */
  get source(): KubernetesSource {
    return this.#source;
  }

  /** The security kinds never listed (proxies are refused at hello meanwhile; kubernetes-unlisted.ts). */
  get unlisted(): KubernetesUnlistedKind[] {
    return unlistedSecurityKinds(this.#resourceReflectors);
  }

  /** The security kinds read from the API (the unlisted gauge's labels). */
  get securityKinds(): string[] {
    return unlistedSecurityKinds(this.#resourceReflectors.map((r) => ({ kind: r.kind, synced: false }))).map((u) => u.kind);
  }

  /** The routes' status writer (absent: no lease or no API calls; tests look at its counters). */
  get routeStatus(): RouteStatusWriter | undefined {
    return this.#status;
  }

  /** The Gateways' status writer (absent: no lease or no API calls; tests look at its counters). */
  get gatewayStatus(): StatusWriter<GatewayWorld> | undefined {
    return this.#gatewayStatus;
  }

  /** Whether this replica holds the Lease: only the leader writes to the API. */
  get leading(): boolean {
    return this.#elector?.leading ?? false;
  }

  /** Starts the watches and the election; resolves once every kind listed (or the sync timeout passed). */
  async start(): Promise<void> {
    this.#source.start();
    for (const r of this.#resourceReflectors) r.start();
    this.#gateways.start();
    this.#elector?.start();
    const timeoutMs = this.#opts.syncTimeoutMs ?? 30_000;
    const synced = await new Promise<boolean>((resolve) => {
      const started = Date.now();
      const poll = setInterval(() => {
        if (this.#synced) resolve(true);
        else if (Date.now() - started >= timeoutMs) resolve(false);
        else return;
        clearInterval(poll);
      }, 20);
      poll.unref();
    });
    this.#started = true;
    // The last list may have changed nothing (an empty kind): publish what the lists hold.
    this.#publish();
    this.#status?.start();
    this.#gatewayStatus?.start();
    if (!synced) {
      const missing = [...this.#source.reflectors.values(), ...this.#resourceReflectors, ...this.#gateways.reflectors]
        .filter((r) => !r.synced)
        .map((r) => r.kind);
      this.#log(
        `control: kubernetes: not every kind listed within ${timeoutMs} ms (not yet: ${missing.join(', ')}; is its CRD installed?); serving proxies with what is known, the watches keep trying`,
      );
      const unlisted = this.unlisted;
      if (unlisted.length > 0) {
        this.#refusing = true;
        this.#log(`control: kubernetes: refusing every proxy until it lists (fail closed): ${unlisted.map(describeUnlisted).join('; ')}`);
      }
    } else this.#log(`control: kubernetes: ${this.#model.discoveredEndpoints().length} endpoints of ${this.#model.config.services.length} services listed`);
  }

  /**
   * Makes the generated CA in `dir` (its ca.json) the one every replica signs with: the
   * Secret's, when there is one (written over this replica's; true: the caller opens the
   * CA again); else the leader stores its own in the Secret (a replica that loses the
   * create to another adopts that one). A follower waits for the leader's Secret up to
   * the sync timeout, then goes on with its own CA and says so.
   */
  async shareCa(dir: string): Promise<boolean> {
    const api = this.#opts.caSecret;
    if (!api) return false;
    const file = path.join(dir, 'ca.json');
    const where = `Secret ${process.env.POD_NAMESPACE || CONTROL_LEASE.namespace}/${CA_SECRET.name}`;
    const deadline = Date.now() + (this.#opts.syncTimeoutMs ?? 30_000);
    for (;;) {
      try {
        const shared = await api.get();
        const local = await readFile(file, 'utf8').catch(() => undefined);
        if (shared !== undefined) {
          if (shared === local) return false;
          await mkdir(dir, { recursive: true, mode: 0o700 });
          await writeFile(`${file}.tmp`, shared, { mode: 0o600 });
          await rename(`${file}.tmp`, file);
          this.#log(`control: kubernetes: signing with the mesh CA shared in ${where}`);
          return true;
        }
        if (local === undefined) {
          this.#log(`control: kubernetes: no generated CA in ${dir} to share`);
          return false;
        }
        if (!this.#elector || (await this.#elector.tick())) {
          if (await api.create(local)) {
            this.#log(`control: kubernetes: stored this replica's mesh CA in ${where} for the others`);
            return false;
          }
          continue; // another replica stored one first: take that one
        }
      } catch (err) {
        this.#log(`control: kubernetes: ${where}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (Date.now() >= deadline) {
        this.#log(`control: kubernetes: no shared CA in ${where} yet; this replica signs with its own, which proxies of the other replicas do not trust`);
        return false;
      }
      await sleep(this.#opts.leaseRetryMs ?? 1000);
    }
  }

  /**
   * Has the leader keep the injection webhook's Secret `trellis-webhook-tls` (a serving
   * certificate signed by `ca`) and its MutatingWebhookConfiguration's caBundle (`ca`'s
   * trust bundle). Needs the API calls and the Lease; without them, nothing is written.
   */
  serveWebhookTls(ca: ServingIssuer): void {
    if (!this.#opts.call || !this.#elector || this.#webhookTls) return;
    this.#webhookTls = new WebhookTlsWriter({
      call: this.#opts.call,
      namespace: process.env.POD_NAMESPACE || CONTROL_LEASE.namespace,
      leading: () => this.leading,
      ca,
      log: this.#log,
      ...(this.#opts.webhookTlsResyncMs !== undefined ? { resyncMs: this.#opts.webhookTlsResyncMs } : {}),
      ...(this.#opts.now ? { now: this.#opts.now } : {}),
    });
    this.#webhookTls.start();
  }

  stop(): void {
    this.#webhookTls?.stop();
    this.#status?.stop();
    this.#gatewayStatus?.stop();
    this.#elector?.stop();
    this.#source.stop();
    for (const r of this.#resourceReflectors) r.stop();
    this.#gateways.stop();
    this.#unsubscribe();
  }

  /**
   * A token's review, cached by its digest: a reconnect storm (every proxy of a restarted
   * replica at once) or a proxy retrying asks the API server once per token and minute,
   * as the API server's own webhook token cache does (2 min); a refusal is kept 5 s.
   * At most {@link MAX_REVIEWS_IN_FLIGHT} distinct reviews run at once; more are refused
   * (the proxies back off and retry), so hellos cannot flood the API server.
   */
  async #review(token: string): Promise<TokenReviewResult> {
    const key = createHash('sha256').update(token).digest('base64');
    const now = Date.now();
    const cached = this.#reviews.get(key);
    if (cached && cached.until > now) return cached.result;
    if (this.#inFlight >= MAX_REVIEWS_IN_FLIGHT) return { ok: false, reason: 'too many token reviews in progress; try again' };
    this.#inFlight++;
    const result = reviewToken(this.#opts.postTokenReview, token).finally(() => this.#inFlight--);
    this.#reviews.set(key, { until: now + REVIEW_PENDING_MS, result });
    const settled = await result;
    if (this.#reviews.size > MAX_CACHED_REVIEWS) {
      for (const [k, v] of this.#reviews) if (v.until <= now) this.#reviews.delete(k);
      if (this.#reviews.size > MAX_CACHED_REVIEWS) this.#reviews.clear();
    }
    this.#reviews.set(key, { until: Date.now() + (settled.ok ? REVIEW_OK_MS : REVIEW_REFUSED_MS), result });
    return settled;
  }

  /**
   * A hello's check: its credential must be a ServiceAccount token for audience trellis
   * (TokenReview), and the service it names is in the token's namespace (`cart` names
   * `cart` there; `cart.shop` must be in shop). The proxy is known by that service's key,
   * and its certificates name the token's ServiceAccount.
   */
  readonly verifyHello = async (proxy: ProxyInfo, credential: string | undefined): Promise<HelloVerdict> => {
    if (credential === undefined) return { ok: false, reason: 'the hello carries no ServiceAccount token (trellis proxy --credential-file)' };
    const review = await this.#review(credential);
    if (!review.ok) return review;
    // Fail closed: without the AuthorizationPolicies (or PeerAuthentications) that exist, a
    // snapshot would allow what they deny. The proxy retries with backoff.
    const unlisted = this.unlisted;
    if (unlisted.length > 0) return { ok: false, code: 'TRELLIS_E_KUBERNETES_UNLISTED', reason: unlisted.map(describeUnlisted).join('; ') };
    const { name, namespace } = splitServiceKey(proxy.service);
    if (proxy.service.includes('.') && namespace !== review.namespace) {
      return { ok: false, reason: `service ${proxy.service} is not in namespace ${review.namespace}, the token's` };
    }
    // A gateway's snapshot carries its Gateway's private keys: only the ServiceAccount named
    // as the Gateway may serve it, not any workload of the namespace (kubernetes-gateways.ts).
    if (proxy.kind === 'gateway' && review.serviceAccount !== name) {
      return {
        ok: false,
        reason: `a gateway proxy for ${name} must run as ServiceAccount ${name} of namespace ${review.namespace} (the token is ${review.serviceAccount}'s)`,
      };
    }
    return {
      ok: true,
      proxy: { ...proxy, service: serviceKey(name, review.namespace) },
      workload: { trustDomain: this.#trustDomain, namespace: review.namespace, serviceAccount: review.serviceAccount },
    };
  };
}
