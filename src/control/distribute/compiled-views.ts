// Compile once, share everywhere (issue 17). Each upstream, as the callers of one
// namespace see it, is compiled once per push round and shared, with its JSON, by every
// proxy that calls it; each proxy's own part (its base: config only) once per service.
// Each view carries a version that moves only when its JSON changed, so a proxy is sent
// what changed by comparing versions, never by re-serializing its whole snapshot. As
// istiod's PushContext and xDS cache: one computation per change, keyed by what it
// depends on, shared by the proxies that ask for it.
import type { ProxyInfo, SnapshotBase, UpstreamSnapshot } from '../../api/protocol.js';
import type { ControlConfig } from '../sources/mesh-config.js';
import { compileSnapshot, compileUpstreamFor, endpointsOf, type RoutableInstance } from '../compile/compiler.js';
import { compileExternalServices } from '../compile/external.js';

/** One compiled view: its value, its JSON, and the version of that JSON. */
export interface View<T> {
  readonly value: T;
  readonly json: string;
  readonly version: number;
}

interface Entry<T> {
  view: View<T>;
  /** The round it was last compiled in. */
  round: number;
}

/** Keeps the view when the JSON is the same (its object too: memory stays shared), else the next version. */
function restamp<T>(previous: Entry<T> | undefined, value: T, round: number): Entry<T> {
  const json = JSON.stringify(value);
  if (previous !== undefined && previous.view.json === json) {
    previous.round = round;
    return previous;
  }
  return { view: { value, json, version: (previous?.view.version ?? 0) + 1 }, round };
}

export class CompiledViews {
  #round = 0;
  #config: ControlConfig | undefined;
  #instances: readonly RoutableInstance[] = [];
  /** Upstreams by `<caller namespace>\n<service key>`. */
  readonly #upstreams = new Map<string, Entry<UpstreamSnapshot | undefined>>();
  /** A sidecar's ExternalService upstreams by `<caller namespace>\n<name>`. */
  readonly #externals = new Map<string, Entry<UpstreamSnapshot | undefined>>();
  /** The namespaces whose externals were compiled this round, with their names. */
  readonly #externalNames = new Map<string, { round: number; names: string[] }>();
  /** Sidecars' own parts by service key (they depend on the config alone). */
  readonly #bases = new Map<string, Entry<SnapshotBase>>();
  #basesFor: ControlConfig | undefined;

  /** Starts a round: views asked for from now on are compiled (once) from these inputs. */
  begin(config: ControlConfig, instances: readonly RoutableInstance[]): void {
    this.#round++;
    this.#config = config;
    this.#instances = instances;
  }

  /** The round in progress (each begin() starts the next). */
  get round(): number {
    return this.#round;
  }

  get started(): boolean {
    return this.#config !== undefined;
  }

  get config(): ControlConfig | undefined {
    return this.#config;
  }

  get instances(): readonly RoutableInstance[] {
    return this.#instances;
  }

  /** Drops the views no proxy asked for in this round (a service no longer called, a namespace gone). */
  prune(): void {
    for (const [k, e] of this.#upstreams) if (e.round !== this.#round) this.#upstreams.delete(k);
    for (const [k, e] of this.#externals) if (e.round !== this.#round) this.#externals.delete(k);
  }

  /** The upstream `name` for callers in `namespace` (its value undefined: no such service). */
  upstream(namespace: string, name: string): View<UpstreamSnapshot | undefined> {
    const config = this.#required();
    const key = `${namespace}\n${name}`;
    const entry = this.#upstreams.get(key);
    if (entry !== undefined && entry.round === this.#round) return entry.view;
    const next = restamp(entry, compileUpstreamFor(config, this.#instances, name, namespace), this.#round);
    this.#upstreams.set(key, next);
    return next.view;
  }

  /**
   * The ExternalService upstreams every sidecar in `namespace` gets (egress.ts decides what:
   * the external endpoints, or the egress gateway's instances), each a view of its own,
   * compiled once per round per namespace.
   */
  externals(namespace: string): ReadonlyMap<string, View<UpstreamSnapshot | undefined>> {
    const config = this.#required();
    const out = new Map<string, View<UpstreamSnapshot | undefined>>();
    if ((config.externalServices ?? []).length === 0) return out;
    const known = this.#externalNames.get(namespace);
    if (known !== undefined && known.round === this.#round) {
      for (const name of known.names) out.set(name, this.#externals.get(`${namespace}\n${name}`)!.view);
      return out;
    }
    const gateway = config.egressGateway?.name;
    // What a sidecar gets depends on its namespace alone (not on which service it serves).
    const compiled = compileExternalServices(config, { kind: 'sidecar', service: '' }, namespace, () =>
      gateway === undefined ? [] : endpointsOf(this.#instances, gateway),
    );
    const names = Object.keys(compiled).sort();
    for (const name of names) {
      const key = `${namespace}\n${name}`;
      const next = restamp(this.#externals.get(key), compiled[name], this.#round);
      this.#externals.set(key, next);
      out.set(name, next.view);
    }
    this.#externalNames.set(namespace, { round: this.#round, names });
    return out;
  }

  /** A sidecar's own part: everything of its snapshot but the upstreams, compiled once per service and config. */
  base(proxy: ProxyInfo): View<SnapshotBase> {
    const config = this.#required();
    if (this.#basesFor !== config) {
      // Another config: every base is compiled again (and keeps its version if it came out the same).
      this.#basesFor = config;
      for (const e of this.#bases.values()) e.round = -1;
    }
    const entry = this.#bases.get(proxy.service);
    if (entry !== undefined && entry.round !== -1) return entry.view;
    const { upstreams: _none, ...base } = compileSnapshot({ config, instances: [], proxy, baseOnly: true });
    const next = restamp<SnapshotBase>(entry, base, this.#round);
    this.#bases.set(proxy.service, next);
    return next.view;
  }

  /** How many upstream views are held (metrics, tests). */
  get size(): number {
    return this.#upstreams.size;
  }

  #required(): ControlConfig {
    if (this.#config === undefined) throw new Error('CompiledViews used before begin()');
    return this.#config;
  }
}
