// Gateways and their certificates from the Kubernetes API (`trellis control --kubernetes`):
// the Gateways whose GatewayClass names Trellis's controller (or of class `trellis` when no
// GatewayClass of that name exists; gateway-status.ts gatewayClassOwner) and the TLS Secrets their HTTPS listeners name become
// the same GatewayConfig the mesh file's Gateway and Secret make, through the same checks
// (the Gateway schema, check-gateways.ts), so the gateway proxy gets its listeners and
// certificates in its snapshot exactly as in local mode. Gateway API semantics:
// - a certificateRef into another namespace needs a ReferenceGrant there, from Gateways
//   of the Gateway's namespace to that Secret; without one the listener is refused
//   (ResolvedRefs False, RefNotPermitted) and the Gateway's other listeners serve;
// - a missing Secret, or one whose certificate does not load, refuses its listener too
//   (InvalidCertificateRef), except that a Secret rotated to a bad certificate or key keeps
//   the last good one it held (cert-manager writing half a renewal must not take a site down);
// - an object that fails the checks is skipped and logged, never the end of the process.
// Only a Secret's `tls.crt` and `tls.key` are read: an API object's annotations never name
// a file the control plane would read (the mesh file's certificate-file annotations).
import { Value } from '@sinclair/typebox/value';
import { checkGateways, type GatewayConfig, type SecretSource } from '../../config/check-gateways.js';
import type { Problem } from '../../config/problems.js';
import { checkSchema } from '../../config/schema-errors.js';
import { GATEWAY_API_BETA_VERSION, GATEWAY_API_VERSION, RESOURCE_KINDS, type GatewayResource, type ReferenceGrantResource } from '../../config/schema.js';
import type { SourceDocument } from '../../config/yaml-source.js';
import { gatewayClassOwner } from '../../k8s/source/gateway-status.js';
import { WATCHED_KINDS } from '../../k8s/source/kinds.js';
import { Reflector, type KindPath, type KubeObject, type ListPage, type StartWatch } from '../../k8s/source/reflector.js';
import { servingCertificateProblem } from '../../security/local-tls.js';

/**
 * Where Gateways and TLS Secrets are listed and watched. Secrets with a field selector on
 * their type: the API server sends only TLS Secrets (never a ServiceAccount token or
 * a Docker password), and the RBAC rule stays get/list/watch.
 */
export const GATEWAY_KINDS_READ: readonly KindPath[] = [
  WATCHED_KINDS.Gateway,
  { kind: 'Secret', path: `/api/v1/secrets?fieldSelector=${encodeURIComponent('type=kubernetes.io/tls')}` },
  WATCHED_KINDS.GatewayClass,
];

/** An object skipped, and why (the shape of kubernetes-resources.ts's SkippedObject). */
export interface SkippedGatewayObject {
  /** `kubernetes:<Kind>/<namespace>/<name>`. */
  readonly object: string;
  readonly kind: 'Gateway' | 'Secret';
  readonly problems: readonly Problem[];
}

/** A listener left out, as the Gateway API's listener condition says it (for logs and the Gateway's status). */
export interface RefusedListener {
  /** `<namespace>/<name>` of the Gateway. */
  readonly gateway: string;
  readonly listener: string;
  readonly type: 'ResolvedRefs';
  readonly status: 'False';
  readonly reason: 'RefNotPermitted' | 'InvalidCertificateRef';
  readonly message: string;
}

export interface ClusterGateways {
  readonly gateways: GatewayConfig[];
  readonly skipped: SkippedGatewayObject[];
  readonly refused: RefusedListener[];
}

/** A certificate and key (PEM) last seen good in a Secret, by `<namespace>/<name>`. */
export type LastGoodCertificates = Map<string, { readonly cert: string; readonly key: string }>;

const PREFIX = 'kubernetes:';
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const safe = (v: unknown): string => (typeof v === 'string' && NAME.test(v) ? v : '<invalid>');
const record = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** A ReferenceGrant that only lets Gateways reach Secrets: the gateway source's, not a mesh grant (check-grants.ts opens Services). */
export function isSecretGrant(grant: ReferenceGrantResource): boolean {
  return grant.spec.from.every((f) => f.kind === 'Gateway') && grant.spec.to.every((t) => t.kind === 'Secret');
}

/** Whether a grant in the Secret's namespace lets Gateways of `gatewayNamespace` name it. */
function secretGranted(grants: readonly ReferenceGrantResource[], gatewayNamespace: string, secretNamespace: string, secretName: string): boolean {
  return grants.some(
    (g) =>
      (g.metadata.namespace ?? 'default') === secretNamespace &&
      g.spec.from.some((f) => f.group === GATEWAY_GROUP && f.kind === 'Gateway' && f.namespace === gatewayNamespace) &&
      g.spec.to.some((t) => t.group === '' && t.kind === 'Secret' && (t.name === undefined || t.name === secretName)),
  );
}

/** The document the loader would read of an API object: kind, name, namespace, labels, annotations and spec (not status, uid, managedFields). */
function docOf(kind: string, apiVersion: string, o: KubeObject): { id: string; value: Record<string, unknown> } {
  const m = record(o.metadata);
  return {
    id: `${PREFIX}${kind}/${safe(m.namespace)}/${safe(m.name)}`,
    value: {
      apiVersion,
      kind,
      metadata: {
        name: m.name,
        ...(m.namespace !== undefined ? { namespace: m.namespace } : {}),
        ...(m.labels !== undefined ? { labels: m.labels } : {}),
        ...(m.annotations !== undefined ? { annotations: m.annotations } : {}),
      },
      spec: o.spec,
    },
  };
}

const doc = (file: string, value: unknown): SourceDocument => ({ file, index: 1, value, locate: () => undefined });

/** A Secret's certificate and key, decoded, or what is wrong with it. */
function secretPem(o: KubeObject, now: number): { cert: string; key: string } | string {
  const data = record(o.data);
  const crt = data['tls.crt'];
  const key = data['tls.key'];
  if (typeof crt !== 'string' || typeof key !== 'string') return 'data needs tls.crt and tls.key (base64 PEM), as a kubernetes.io/tls Secret has';
  if (crt.length > 1_000_000 || key.length > 100_000) return 'data: tls.crt is over 1 MB or tls.key over 100 kB';
  const pem = { cert: Buffer.from(crt, 'base64').toString('utf8'), key: Buffer.from(key, 'base64').toString('utf8') };
  return servingCertificateProblem(pem.cert, pem.key, now) ?? pem;
}

/**
 * The Gateways of class `trellis` among `gateways`, checked with the Secrets and the
 * Secret grants as the mesh file's are; `fileGateways` win a name. `lastGood` is kept
 * across calls: a Secret that turns bad serves what it last held that was good; a Secret
 * gone is forgotten. Objects are input like any other: junk is skipped, never thrown on.
 */
export function clusterGateways(input: {
  readonly gateways: readonly KubeObject[];
  readonly secrets: readonly KubeObject[];
  /** The ReferenceGrants of the API (any; only the Secret grants that pass the schema count). */
  readonly grants: readonly KubeObject[];
  /** The GatewayClasses of the API: which Gateways are Trellis's (absent: class `trellis` only). */
  readonly classes?: readonly KubeObject[];
  readonly fileGateways?: readonly GatewayConfig[];
  readonly lastGood: LastGoodCertificates;
  readonly now?: number;
}): ClusterGateways {
  const now = input.now ?? Date.now();
  const skipped: SkippedGatewayObject[] = [];
  const refused: RefusedListener[] = [];
  const out: GatewayConfig[] = [];
  const gatewaySchema = RESOURCE_KINDS[`${GATEWAY_API_VERSION}/Gateway`]!.schema;
  const grantSchema = RESOURCE_KINDS[`${GATEWAY_API_BETA_VERSION}/ReferenceGrant`]!.schema;
  const grants: ReferenceGrantResource[] = [];
  for (const o of input.grants) {
    const d = docOf('ReferenceGrant', GATEWAY_API_BETA_VERSION, record(o));
    if (checkSchema(doc(d.id, d.value), grantSchema).length === 0) grants.push(d.value as unknown as ReferenceGrantResource);
  }
  const secrets = new Map<string, KubeObject>();
  for (const s of input.secrets) {
    const m = record(record(s).metadata);
    if (typeof m.name === 'string' && typeof m.namespace === 'string') secrets.set(`${m.namespace}/${m.name}`, record(s));
  }
  for (const key of input.lastGood.keys()) if (!secrets.has(key)) input.lastGood.delete(key);
  const fileNames = new Set((input.fileGateways ?? []).map((g) => `${g.namespace}/${g.name}`));
  // Each Secret is judged once, however many listeners name it.
  const judged = new Map<string, { cert: string; key: string } | undefined>();
  const judge = (secretKey: string): { cert: string; key: string } | undefined => {
    if (judged.has(secretKey)) return judged.get(secretKey);
    const s = secrets.get(secretKey);
    let pem: { cert: string; key: string } | undefined;
    if (s !== undefined) {
      const got = secretPem(s, now);
      if (typeof got !== 'string') {
        input.lastGood.set(secretKey, got);
        pem = got;
      } else {
        pem = input.lastGood.get(secretKey);
        skipped.push({
          object: `${PREFIX}Secret/${secretKey}`,
          kind: 'Secret',
          problems: [
            {
              file: `${PREFIX}Secret/${secretKey}`,
              path: 'data',
              message: `${got}; ${pem ? 'the last good certificate it held stays in force' : 'the listeners that name it are refused'}`,
            },
          ],
        });
      }
    }
    judged.set(secretKey, pem);
    return pem;
  };

  const ours = gatewayClassOwner(input.classes ?? []);
  const sorted = input.gateways
    .map((g) => record(g))
    .filter((g) => ours(record(g.spec).gatewayClassName))
    .map((g) => ({ g, d: docOf('Gateway', GATEWAY_API_VERSION, g) }))
    .sort((a, b) => (a.d.id < b.d.id ? -1 : a.d.id > b.d.id ? 1 : 0));
  for (const { d } of sorted) {
    const gatewayDoc = doc(d.id, d.value);
    const problems = checkSchema(gatewayDoc, gatewaySchema);
    if (problems.length > 0) {
      skipped.push({ object: d.id, kind: 'Gateway', problems });
      continue;
    }
    const resource = Value.Default(gatewaySchema, structuredClone(d.value)) as GatewayResource;
    const namespace = resource.metadata.namespace ?? 'default';
    const name = `${namespace}/${resource.metadata.name}`;
    if (fileNames.has(name)) {
      skipped.push({
        object: d.id,
        kind: 'Gateway',
        problems: [{ file: d.id, path: 'metadata.name', message: `Gateway "${name}" is also defined in the config files, whose definition is in force` }],
      });
      continue;
    }
    // Certificate references first: a listener whose Secret may not be named, or holds
    // nothing that serves, is left out, and the Gateway's other listeners serve.
    const sources: SecretSource[] = [];
    const listeners = resource.spec.listeners.filter((l) => {
      if (l.protocol !== 'HTTPS') return true;
      for (const ref of l.tls?.certificateRefs ?? []) {
        const secretNamespace = ref.namespace ?? namespace;
        const secretKey = `${secretNamespace}/${ref.name}`;
        const refuse = (reason: RefusedListener['reason'], message: string): false => {
          refused.push({ gateway: name, listener: l.name, type: 'ResolvedRefs', status: 'False', reason, message });
          return false;
        };
        if (secretNamespace !== namespace && !secretGranted(grants, namespace, secretNamespace, ref.name)) {
          return refuse(
            'RefNotPermitted',
            `certificateRef Secret "${secretKey}" is in another namespace, and no ReferenceGrant in ${secretNamespace} lets Gateways of ${namespace} name it`,
          );
        }
        if (!secrets.has(secretKey))
          return refuse('InvalidCertificateRef', `certificateRef Secret "${secretKey}" does not exist (or is not of type kubernetes.io/tls)`);
        const pem = judge(secretKey);
        if (pem === undefined) return refuse('InvalidCertificateRef', `certificateRef Secret "${secretKey}" holds no certificate and key that serve`);
        if (!sources.some((s) => `${s.resource.metadata.namespace}/${s.resource.metadata.name}` === secretKey)) {
          const [ns, n] = [secretNamespace, ref.name];
          const value = {
            apiVersion: 'v1' as const,
            kind: 'Secret' as const,
            type: 'kubernetes.io/tls' as const,
            metadata: { name: n, namespace: ns },
            data: { 'tls.crt': Buffer.from(pem.cert).toString('base64'), 'tls.key': Buffer.from(pem.key).toString('base64') },
          };
          sources.push({ doc: doc(`${PREFIX}Secret/${secretKey}`, value), resource: value });
        }
      }
      return true;
    });
    const checked = checkGateways([{ doc: gatewayDoc, resource: { ...resource, spec: { ...resource.spec, listeners } } }], sources, now, {
      // Only references allowed above reach here.
      secretRefPermitted: () => true,
    });
    if (checked.problems.length > 0) {
      skipped.push({ object: d.id, kind: 'Gateway', problems: checked.problems });
      continue;
    }
    out.push(...checked.gateways);
  }
  skipped.sort((a, b) => (a.object < b.object ? -1 : a.object > b.object ? 1 : 0));
  return { gateways: out, skipped, refused };
}

/**
 * The reflectors of Gateways and TLS Secrets, and the last good certificates: what
 * KubernetesControl asks for the Gateways in force whenever anything it reads changed.
 */
export class GatewaySource {
  readonly reflectors: readonly Reflector[];
  readonly #lastGood: LastGoodCertificates = new Map();
  #refused = '';
  /** The last result and what it was made of: a route or policy change must not parse every certificate again (about 1 ms each). */
  #last?: { readonly inputs: string; readonly fileGateways: readonly GatewayConfig[] | undefined; readonly result: ClusterGateways };
  readonly #log: (line: string) => void;

  constructor(o: {
    list: ListPage;
    watch: StartWatch;
    log: (line: string) => void;
    backoffMs?: { readonly initial: number; readonly max: number };
    onChange: () => void;
  }) {
    this.#log = o.log;
    this.reflectors = GATEWAY_KINDS_READ.map(
      (kind) =>
        new Reflector({
          kind,
          list: o.list,
          watch: o.watch,
          log: o.log,
          ...(o.backoffMs ? { backoffMs: o.backoffMs } : {}),
          onChange: o.onChange,
        }),
    );
  }

  get synced(): boolean {
    return this.reflectors.every((r) => r.synced);
  }

  start(): void {
    for (const r of this.reflectors) r.start();
  }

  stop(): void {
    for (const r of this.reflectors) r.stop();
  }

  /** The Gateways in force now (the Secret grants among `grants`); logs listeners refused when that changes. */
  check(grants: readonly KubeObject[], fileGateways: readonly GatewayConfig[] | undefined): ClusterGateways {
    const [gateways, secrets, classes] = this.reflectors.map((r) => r.list()) as [KubeObject[], KubeObject[], KubeObject[]];
    // Every object's resourceVersion (its content when it has none): what the result depends on.
    const version = (o: KubeObject): string => String(record(o.metadata).resourceVersion ?? JSON.stringify(o));
    const inputs = JSON.stringify([gateways.map(version), secrets.map(version), grants.map(version), classes.map(version)]);
    if (this.#last && this.#last.inputs === inputs && this.#last.fileGateways === fileGateways) return this.#last.result;
    const result = clusterGateways({ gateways, secrets, grants, classes, lastGood: this.#lastGood, ...(fileGateways ? { fileGateways } : {}) });
    this.#last = { inputs, fileGateways, result };
    const refused = JSON.stringify(result.refused);
    if (refused !== this.#refused) {
      this.#refused = refused;
      for (const r of result.refused) {
        this.#log(`control: kubernetes: Gateway ${r.gateway} listener ${r.listener} refused (${r.type} ${r.status}, ${r.reason}): ${r.message.slice(0, 300)}`);
      }
    }
    return result;
  }
}
