// The Secret `trellis-system/trellis-ca` that the control plane's replicas share the mesh
// CA through: a proxy joined to one replica must trust the certificates the other signs.
// It holds the generated CA's ca.json (src/control/ca/certificate-authority.ts) under the
// key `ca.json`. Only the leader creates it; create fails with 409 when another replica
// was first, so there is one CA however the replicas race.
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeStatusError, kubeCall } from './reflector.js';

export const CA_SECRET = { name: 'trellis-ca', key: 'ca.json' } as const;

export interface CaSecretApi {
  /** The shared ca.json, or undefined when there is no Secret yet. */
  get(): Promise<string | undefined>;
  /** Stores ca.json; false when the Secret already exists (another replica was first). */
  create(caJson: string): Promise<boolean>;
}

export function caSecretApiWith(kc: KubeConfig, namespace: string): CaSecretApi {
  const call = kubeCall(kc);
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
  return {
    async get() {
      let secret: { data?: Record<string, unknown> };
      try {
        secret = (await call('GET', `${base}/${CA_SECRET.name}`)) as typeof secret;
      } catch (err) {
        if (err instanceof KubeStatusError && err.statusCode === 404) return undefined;
        throw err;
      }
      const data = secret.data?.[CA_SECRET.key];
      if (typeof data !== 'string') throw new Error(`Secret ${namespace}/${CA_SECRET.name} has no ${CA_SECRET.key}`);
      return Buffer.from(data, 'base64').toString('utf8');
    },
    async create(caJson) {
      try {
        await call('POST', base, {
          apiVersion: 'v1',
          kind: 'Secret',
          type: 'Opaque',
          metadata: { name: CA_SECRET.name, namespace, labels: { 'app.kubernetes.io/part-of': 'trellis' } },
          data: { [CA_SECRET.key]: Buffer.from(caJson, 'utf8').toString('base64') },
        });
        return true;
      } catch (err) {
        if (err instanceof KubeStatusError && err.statusCode === 409) return false;
        throw err;
      }
    },
  };
}
