// The control plane's picture of the mesh: the config in force, the instances their
// sidecars registered, each instance's health, and each connected proxy's snapshot
// versions. It only holds state and tells listeners what changed; the health checker,
// compiler and distributor act on it.
import type { HostPort, InstancePort, ProxyInfo, Snapshot } from '../api/protocol.js';
import { EMPTY_CONFIG, keyOf, type ControlConfig, type ServiceConfig } from './sources/mesh-config.js';

import type { ConfigProblem, HealthStatus } from '../api/admin.js';
export type { ConfigProblem, HealthStatus } from '../api/admin.js';

export interface HealthState {
  readonly status: HealthStatus;
  /** Epoch ms of the last check result, if any. */
  readonly lastCheck?: number;
  /** Why the last check failed; absent after a success. */
  readonly lastError?: string;
  readonly consecutiveSuccesses: number;
  readonly consecutiveFailures: number;
  /** Epoch ms of the last status change (registration for `unknown`). */
  readonly since: number;
}

/** One running copy of a service, as its sidecar described it in its hello. */
export interface Instance {
  readonly id: string;
  /** The key of its service (`name`, or `name.namespace` outside default). */
  readonly service: string;
  readonly version: string;
  readonly app?: HostPort;
  readonly inbound?: HostPort;
  /** A multi-port service's instance: each port's app and inbound listener (the first is `app`, `inbound`). */
  readonly ports?: readonly InstancePort[];
  readonly admin: HostPort;
  readonly pid: number;
  readonly registeredAt: number;
  /** Its proxy reconnected while already serving (see ProxyInfo.resumed). */
  readonly resumed?: boolean;
}

export interface NackRecord {
  readonly version: number;
  readonly error: string;
  readonly at: number;
}

export interface ProxyState {
  readonly id: string;
  readonly service: string;
  readonly version: string;
  readonly kind: 'sidecar' | 'gateway';
  readonly info: ProxyInfo;
  connected: boolean;
  connectedAt: number;
  disconnectedAt?: number;
  sentVersion?: number;
  ackedVersion?: number;
  lastNack?: NackRecord;
  /** The snapshot last sent to this proxy. */
  lastSnapshot?: Snapshot;
}

export interface ConfigState {
  readonly config: ControlConfig;
  /** Every file the config in force was read from. */
  readonly files: readonly string[];
  readonly loadedAt?: number;
  /** Set while the latest reload failed; the config above stays in force. */
  readonly failedReload?: { readonly at: number; readonly problems: readonly ConfigProblem[] };
  /**
   * Set when the config in force did not come from the files but from the last good
   * config kept in the state folder (a start with files that do not load).
   */
  readonly restored?: { readonly from: string; readonly savedAt: number };
}

/**
 * An endpoint a discovery source (Kubernetes' EndpointSlices) reports, with its health
 * as that source knows it: it is not registered by a hello nor checked by the health
 * checker (the kubelet's readiness probes are its checks).
 */
export interface DiscoveredEndpoint {
  readonly id: string;
  readonly service: string;
  readonly version: string;
  readonly inbound: HostPort;
  readonly app: HostPort;
  readonly ports?: readonly InstancePort[];
  readonly status: HealthStatus;
}

/** Routes and policies a discovery source read (the Kubernetes API's), appended to the files' lists. */
export type DiscoveredResources = Pick<
  Required<ControlConfig>,
  'routes' | 'policies' | 'rateLimitPolicies' | 'referenceGrants' | 'authorizationPolicies' | 'peerAuthentications' | 'requestAuthentications'
> & {
  /** Gateways with their certificates (kubernetes-gateways.ts); absent: none. */
  readonly gateways?: NonNullable<ControlConfig['gateways']>;
};

/** What a discovery source knows: services (merged into the config's), their endpoints, and routes and policies. */
export interface Discovered {
  readonly services: readonly ServiceConfig[];
  readonly endpoints: readonly DiscoveredEndpoint[];
  /** Checked already (src/control/sources/kubernetes-resources.ts); absent: none. */
  readonly resources?: DiscoveredResources;
}

/** Why snapshots may need recompiling. */
export type ChangeReason = 'config' | 'instance-added' | 'instance-removed' | 'health';

interface ModelEvents {
  /** Something snapshots are compiled from changed. */
  change: [reason: ChangeReason];
  'instance-added': [instance: Instance];
  'instance-removed': [instance: Instance];
}

type Listener<K extends keyof ModelEvents> = (...args: ModelEvents[K]) => void;

/** How many disconnected proxies are kept for the admin API before the oldest go. */
const KEEP_DISCONNECTED = 100;

export class MeshModel {
  readonly #now: () => number;
  #config: ConfigState = { config: EMPTY_CONFIG, files: [] };
  #discovered: Discovered = { services: [], endpoints: [] };
  /** The files' config with the discovered services, made once per change of either. */
  #merged?: {
    readonly from: ControlConfig;
    readonly discovered: Discovered['services'];
    readonly resources: Discovered['resources'];
    readonly config: ControlConfig;
  };
  readonly #instances = new Map<string, Instance>();
  readonly #health = new Map<string, HealthState>();
  readonly #proxies = new Map<string, ProxyState>();
  readonly #listeners: { [K in keyof ModelEvents]: Set<Listener<K>> } = {
    change: new Set(),
    'instance-added': new Set(),
    'instance-removed': new Set(),
  };

  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof ModelEvents>(event: K, fn: Listener<K>): () => void {
    const set = this.#listeners[event] as Set<Listener<K>>;
    set.add(fn);
    return () => set.delete(fn);
  }

  #emit<K extends keyof ModelEvents>(event: K, ...args: ModelEvents[K]): void {
    for (const fn of [...(this.#listeners[event] as Set<Listener<K>>)]) fn(...args);
  }

  now(): number {
    return this.#now();
  }

  // ---- config

  get configState(): ConfigState {
    return this.#config;
  }

  /**
   * The config in force: the files' config, plus the services a discovery source found
   * that the files do not name (a service in both keeps the files' settings and takes
   * the source's workload identities), and the source's routes and policies after the files'.
   */
  get config(): ControlConfig {
    const files = this.#config.config;
    const discovered = this.#discovered;
    const res = discovered.resources;
    if (discovered.services.length === 0 && res === undefined) return files;
    // Keyed by the services array: a source that hands the same one again (only endpoints
    // changed) keeps the config the same object, so nothing keyed by it is recomputed.
    if (this.#merged?.from !== files || this.#merged.discovered !== discovered.services || this.#merged.resources !== res) {
      const found = new Map(discovered.services.map((s) => [keyOf(s), s]));
      const services = files.services.map((s) => {
        const d = found.get(keyOf(s));
        found.delete(keyOf(s));
        return d?.identities ? { ...s, identities: d.identities } : s;
      });
      const added = res && {
        routes: [...files.routes, ...res.routes],
        policies: [...(files.policies ?? []), ...res.policies],
        rateLimitPolicies: [...(files.rateLimitPolicies ?? []), ...res.rateLimitPolicies],
        referenceGrants: [...(files.referenceGrants ?? []), ...res.referenceGrants],
        authorizationPolicies: [...(files.authorizationPolicies ?? []), ...res.authorizationPolicies],
        peerAuthentications: [...(files.peerAuthentications ?? []), ...res.peerAuthentications],
        requestAuthentications: [...(files.requestAuthentications ?? []), ...res.requestAuthentications],
        ...(res.gateways?.length ? { gateways: [...(files.gateways ?? []), ...res.gateways] } : {}),
      };
      const config = { ...files, ...added, services: [...services, ...found.values()] };
      this.#merged = { from: files, discovered: discovered.services, resources: res, config };
    }
    return this.#merged.config;
  }

  /** Replaces what the discovery source knows (services and endpoints); snapshots recompile. */
  setDiscovered(discovered: Discovered): void {
    this.#discovered = discovered;
    this.#emit('change', 'config');
  }

  /** The discovery source's endpoints. */
  discoveredEndpoints(): readonly DiscoveredEndpoint[] {
    return this.#discovered.endpoints;
  }

  /** Whether `id` is a registered instance or a discovered endpoint. */
  hasEndpoint(id: string): boolean {
    return this.#instances.has(id) || this.#discovered.endpoints.some((e) => e.id === id);
  }

  /** The service whose key is `key`: `name`, or `name.namespace` outside default (src/api/names.ts). */
  service(key: string): ServiceConfig | undefined {
    return this.config.services.find((s) => keyOf(s) === key);
  }

  /** Puts a freshly loaded (or restored) config in force and clears any failed-reload problems. */
  setConfig(config: ControlConfig, files: readonly string[], restored?: ConfigState['restored']): void {
    this.#config = { config, files: [...files], loadedAt: this.#now(), ...(restored ? { restored } : {}) };
    this.#emit('change', 'config');
  }

  /** Records that the latest reload failed; the config in force does not change. */
  setReloadProblems(problems: readonly ConfigProblem[]): void {
    this.#config = { ...this.#config, failedReload: { at: this.#now(), problems: [...problems] } };
  }

  // ---- instances and health

  instances(): Instance[] {
    return [...this.#instances.values()];
  }

  instance(id: string): Instance | undefined {
    return this.#instances.get(id);
  }

  /** Registers (or re-registers) an instance; its health starts `unknown`. */
  addInstance(init: Omit<Instance, 'registeredAt'>): Instance {
    const previous = this.#instances.get(init.id);
    if (previous) this.removeInstance(init.id);
    const now = this.#now();
    const instance: Instance = { ...init, registeredAt: now };
    this.#instances.set(instance.id, instance);
    this.#health.set(instance.id, { status: 'unknown', consecutiveSuccesses: 0, consecutiveFailures: 0, since: now });
    this.#emit('instance-added', instance);
    this.#emit('change', 'instance-added');
    return instance;
  }

  removeInstance(id: string): boolean {
    const instance = this.#instances.get(id);
    if (!instance) return false;
    this.#instances.delete(id);
    this.#health.delete(id);
    this.#emit('instance-removed', instance);
    this.#emit('change', 'instance-removed');
    return true;
  }

  health(id: string): HealthState | undefined {
    return this.#health.get(id);
  }

  /** Stores a check outcome; only a status change makes snapshots recompile. */
  setHealth(id: string, state: HealthState): void {
    const previous = this.#health.get(id);
    if (!previous) return; // the instance went away while its check ran
    this.#health.set(id, state);
    if (previous.status !== state.status) this.#emit('change', 'health');
  }

  // ---- proxies

  proxies(): ProxyState[] {
    return [...this.#proxies.values()];
  }

  proxy(id: string): ProxyState | undefined {
    return this.#proxies.get(id);
  }

  /** Marks a proxy connected; a proxy that reconnects keeps its version history. */
  connectProxy(info: ProxyInfo): ProxyState {
    const previous = this.#proxies.get(info.id);
    const state: ProxyState = {
      id: info.id,
      service: info.service,
      version: info.version,
      kind: info.kind,
      info,
      connected: true,
      connectedAt: this.#now(),
      sentVersion: previous?.sentVersion,
      ackedVersion: previous?.ackedVersion,
      lastNack: previous?.lastNack,
      lastSnapshot: previous?.lastSnapshot,
    };
    this.#proxies.delete(info.id); // re-insert so the map stays in connection order
    this.#proxies.set(info.id, state);
    this.#pruneDisconnected();
    return state;
  }

  disconnectProxy(id: string): void {
    const state = this.#proxies.get(id);
    if (!state?.connected) return;
    state.connected = false;
    state.disconnectedAt = this.#now();
  }

  recordSent(id: string, snapshot: Snapshot): void {
    const state = this.#proxies.get(id);
    if (!state) return;
    state.sentVersion = snapshot.version;
    state.lastSnapshot = snapshot;
  }

  recordAck(id: string, version: number): void {
    const state = this.#proxies.get(id);
    if (state) state.ackedVersion = version;
  }

  /** A NACK leaves the acked version alone: the proxy stays on its last good snapshot. */
  recordNack(id: string, version: number, error: string): void {
    const state = this.#proxies.get(id);
    if (state) state.lastNack = { version, error, at: this.#now() };
  }

  #pruneDisconnected(): void {
    const gone = [...this.#proxies.values()].filter((p) => !p.connected);
    for (const p of gone.slice(0, Math.max(0, gone.length - KEEP_DISCONNECTED))) this.#proxies.delete(p.id);
  }
}
