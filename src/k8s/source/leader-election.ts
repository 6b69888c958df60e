// Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does:
// every replica serves proxies, and only the one holding the Lease does what must run
// once (writing the CA secret, status). The holder renews every `retryMs`; another
// replica takes the Lease over only when it was not renewed for `leaseDurationSeconds`.
// Every write carries the resourceVersion read, so two replicas racing for an expired
// Lease cannot both win (the API server answers the loser 409 Conflict).
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeStatusError, kubeCall } from './reflector.js';

export interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** GET / POST / PUT of one Lease; GET answers undefined when it does not exist. */
export interface LeaseApi {
  get(): Promise<Lease | undefined>;
  create(lease: Lease): Promise<Lease>;
  update(lease: Lease): Promise<Lease>;
}

export function leaseApiWith(kc: KubeConfig, namespace: string, name: string): LeaseApi {
  const call = kubeCall(kc);
  const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  return {
    async get() {
      try {
        return (await call('GET', `${base}/${encodeURIComponent(name)}`)) as Lease;
      } catch (err) {
        if (err instanceof KubeStatusError && err.statusCode === 404) return undefined;
        throw err;
      }
    },
    create: async (lease) => (await call('POST', base, lease)) as Lease,
    update: async (lease) => (await call('PUT', `${base}/${encodeURIComponent(name)}`, lease)) as Lease,
  };
}

export interface LeaderElectorOptions {
  readonly api: LeaseApi;
  readonly namespace: string;
  readonly name: string;
  /** This replica's name (its pod name). */
  readonly identity: string;
  readonly leaseDurationSeconds?: number;
  /** How often to try or renew (default 2 s). */
  readonly retryMs?: number;
  readonly now?: () => number;
  readonly onChange?: (leading: boolean) => void;
  readonly log?: (line: string) => void;
}

export class LeaderElector {
  readonly #o: LeaderElectorOptions;
  #leading = false;
  #timer?: NodeJS.Timeout;
  #busy = false;

  constructor(opts: LeaderElectorOptions) {
    this.#o = opts;
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    if (this.#timer) return;
    void this.tick();
    this.#timer = setInterval(() => void this.tick(), this.#o.retryMs ?? 2000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#set(false);
  }

  /** One try to acquire or renew; true when this replica holds the Lease afterwards. */
  async tick(): Promise<boolean> {
    if (this.#busy) return this.#leading;
    this.#busy = true;
    try {
      this.#set(await this.#tryAcquireOrRenew());
    } catch (err) {
      // A failed renewal is a lost lease: another replica may take it over once it expires.
      this.#o.log?.(`k8s: lease ${this.#o.namespace}/${this.#o.name}: ${err instanceof Error ? err.message : String(err)}`);
      this.#set(false);
    } finally {
      this.#busy = false;
    }
    return this.#leading;
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = (this.#o.now ?? Date.now)();
    const stamp = new Date(now).toISOString();
    const duration = this.#o.leaseDurationSeconds ?? 15;
    const current = await this.#o.api.get();
    if (!current) {
      await this.#write(() =>
        this.#o.api.create({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.#o.name, namespace: this.#o.namespace },
          spec: { holderIdentity: this.#o.identity, leaseDurationSeconds: duration, acquireTime: stamp, renewTime: stamp, leaseTransitions: 0 },
        }),
      );
      return true;
    }
    const spec = current.spec ?? {};
    const mine = spec.holderIdentity === this.#o.identity;
    const renewed = Date.parse(spec.renewTime ?? '') || 0;
    const expired = !spec.holderIdentity || renewed + (spec.leaseDurationSeconds ?? duration) * 1000 <= now;
    if (!mine && !expired) return false;
    const next: Lease = {
      ...current,
      spec: mine
        ? { ...spec, renewTime: stamp, leaseDurationSeconds: duration }
        : {
            holderIdentity: this.#o.identity,
            leaseDurationSeconds: duration,
            acquireTime: stamp,
            renewTime: stamp,
            leaseTransitions: (spec.leaseTransitions ?? 0) + 1,
          },
    };
    await this.#write(() => this.#o.api.update(next));
    return true;
  }

  /** A write; 409 (someone else wrote first) means not leading, any other failure throws. */
  async #write(fn: () => Promise<Lease>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof KubeStatusError && err.statusCode === 409) throw new Error('another replica updated the lease first');
      throw err;
    }
  }

  #set(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#o.log?.(`k8s: lease ${this.#o.namespace}/${this.#o.name}: ${this.#o.identity} ${leading ? 'leads' : 'no longer leads'}`);
    this.#o.onChange?.(leading);
  }
}
