// The sidecar injection webhook's TLS, from the mesh CA (issue 18): the leader keeps the
// Secret `trellis-webhook-tls` (type kubernetes.io/tls) holding a serving certificate for
// the webhook's Service, signed by the mesh CA and renewed when a third of its life is
// left (or when the trust bundle changed), and sets the MutatingWebhookConfiguration
// `trellis-sidecar-injector`'s caBundle to the mesh CA's trust bundle. Writes happen only
// when what is there differs from what should be (no write loop), each with the
// resourceVersion read, and only while this replica leads; a follower writes nothing.
// The webhook container mounts the Secret (optional) and loads the files when the
// kubelet writes them (src/cli/webhook.ts).
import { KubeStatusError, type KubeCall } from './reflector.js';
import { certificatesOf } from '../../security/x509.js';

export const WEBHOOK_TLS = {
  secret: 'trellis-webhook-tls',
  service: 'trellis-webhook',
  configuration: 'trellis-sidecar-injector',
} as const;

/** A serving certificate lives 90 days and is renewed when 30 are left. */
export const DEFAULT_SERVING_LIFETIME_MS = 90 * 24 * 3_600_000;
/** How often the leader looks at the Secret and the caBundle anyway (10 min). */
export const DEFAULT_WEBHOOK_TLS_RESYNC_MS = 10 * 60_000;

/** What the writer needs of the CA (src/control/ca/certificate-authority.ts). */
export interface ServingIssuer {
  trustBundle(): string[];
  issueServing(dnsNames: readonly string[], lifetimeMs: number): Promise<{ chain: string; key: string; notBefore: string; notAfter: string }>;
}

export interface WebhookTlsOptions {
  readonly call: KubeCall;
  /** The control plane's namespace: the Secret's and the Service's. */
  readonly namespace: string;
  readonly leading: () => boolean;
  readonly ca: ServingIssuer;
  readonly lifetimeMs?: number;
  readonly resyncMs?: number;
  readonly now?: () => number;
  readonly log: (line: string) => void;
}

interface Secret {
  metadata?: { resourceVersion?: string };
  type?: string;
  data?: Record<string, unknown>;
}

interface WebhookConfiguration {
  metadata: { resourceVersion?: string };
  webhooks?: { clientConfig?: { caBundle?: string } }[];
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (v: unknown): string | undefined => (typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : undefined);

/** The webhook Service's DNS names, as the API server calls it. */
export function webhookDnsNames(namespace: string): string[] {
  const svc = `${WEBHOOK_TLS.service}.${namespace}.svc`;
  return [svc, `${svc}.cluster.local`];
}

export class WebhookTlsWriter {
  readonly #o: WebhookTlsOptions;
  #timer?: NodeJS.Timeout;
  #running?: Promise<void>;
  #again = false;

  constructor(o: WebhookTlsOptions) {
    this.#o = o;
  }

  start(): void {
    if (this.#timer) return;
    this.schedule();
    this.#timer = setInterval(() => this.schedule(), this.#o.resyncMs ?? DEFAULT_WEBHOOK_TLS_RESYNC_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** A reconcile soon (one at a time; a request during one runs another after it). */
  schedule(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.reconcile()
      .catch((err: unknown) => this.#o.log(`k8s: webhook tls: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        this.#running = undefined;
        if (this.#again && this.#timer) {
          this.#again = false;
          this.schedule();
        }
      });
  }

  /** One pass: the Secret, then the caBundle; nothing unless this replica leads. */
  async reconcile(): Promise<void> {
    if (!this.#o.leading()) return;
    const bundle = this.#o.ca.trustBundle().join('');
    await this.#secret(bundle);
    if (!this.#o.leading()) return;
    await this.#caBundle(bundle);
  }

  /** Why the Secret's certificate must be (re)issued, or undefined when it is good. */
  #stale(secret: Secret, bundle: string): string | undefined {
    if (secret.type !== 'kubernetes.io/tls') return `it is of type ${secret.type ?? 'none'}`;
    const crt = unb64(secret.data?.['tls.crt']);
    if (!crt || !unb64(secret.data?.['tls.key'])) return 'it has no key pair';
    if (unb64(secret.data?.['ca.crt']) !== bundle) return 'the mesh trust bundle changed';
    let leaf: ReturnType<typeof certificatesOf>[number] | undefined;
    try {
      leaf = certificatesOf(crt)[0];
    } catch {
      leaf = undefined;
    }
    if (!leaf) return 'its certificate does not parse';
    const now = (this.#o.now ?? Date.now)();
    const from = leaf.notBefore.getTime();
    const to = leaf.notAfter.getTime();
    if (now >= to - (to - from) / 3) return `its certificate expires at ${leaf.notAfter.toISOString()}`;
    return undefined;
  }

  async #secret(bundle: string): Promise<void> {
    const { call, namespace } = this.#o;
    const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
    let current: Secret | undefined;
    try {
      current = (await call('GET', `${base}/${WEBHOOK_TLS.secret}`)) as Secret;
    } catch (err) {
      if (!(err instanceof KubeStatusError && err.statusCode === 404)) throw err;
    }
    const why = current ? this.#stale(current, bundle) : 'there is none';
    if (why === undefined) return;
    const issued = await this.#o.ca.issueServing(webhookDnsNames(namespace), this.#o.lifetimeMs ?? DEFAULT_SERVING_LIFETIME_MS);
    if (!this.#o.leading()) return;
    const object = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {
        name: WEBHOOK_TLS.secret,
        namespace,
        labels: { 'app.kubernetes.io/part-of': 'trellis' },
        ...(current?.metadata?.resourceVersion ? { resourceVersion: current.metadata.resourceVersion } : {}),
      },
      data: { 'tls.crt': b64(issued.chain), 'tls.key': b64(issued.key), 'ca.crt': b64(bundle) },
    };
    try {
      if (current) await call('PUT', `${base}/${WEBHOOK_TLS.secret}`, object);
      else await call('POST', base, object);
    } catch (err) {
      // Another writer was first (a leader change mid-write): the next pass reads its Secret.
      if (err instanceof KubeStatusError && err.statusCode === 409) return;
      throw err;
    }
    this.#o.log(`k8s: webhook tls: issued Secret ${namespace}/${WEBHOOK_TLS.secret} (${why}), valid until ${issued.notAfter}`);
  }

  async #caBundle(bundle: string): Promise<void> {
    const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_TLS.configuration}`;
    let config: WebhookConfiguration;
    try {
      config = (await this.#o.call('GET', path)) as WebhookConfiguration;
    } catch (err) {
      if (err instanceof KubeStatusError && err.statusCode === 404) {
        this.#o.log(`k8s: webhook tls: no MutatingWebhookConfiguration ${WEBHOOK_TLS.configuration} to set the caBundle of (not installed?)`);
        return;
      }
      throw err;
    }
    const caBundle = b64(bundle);
    const webhooks = config.webhooks ?? [];
    if (webhooks.every((w) => w.clientConfig?.caBundle === caBundle)) return;
    const next = { ...config, webhooks: webhooks.map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle } })) };
    try {
      await this.#o.call('PUT', path, next);
    } catch (err) {
      if (err instanceof KubeStatusError && err.statusCode === 409) return;
      throw err;
    }
    this.#o.log(`k8s: webhook tls: set the caBundle of MutatingWebhookConfiguration ${WEBHOOK_TLS.configuration} to the mesh trust bundle`);
  }
}
