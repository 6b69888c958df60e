// The Mesh's `spec.identity`, checked beyond its schema and filled in: the form the
// control plane's CA takes (src/control/ca/certificate-authority.ts).
import { resolve } from 'node:path';
import { parseDurationMs } from './duration.js';
import type { Problem } from './problems.js';
import type { MeshResource } from './schema.js';
import { IDENTITY_DEFAULTS } from './schema/identity.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** Linkerd's issuance lifetime floor is a minute; below five a renewal storm is likely, above 90 days a stolen key lives too long. */
const MIN_LIFETIME_MS = 5 * 60_000;
const MAX_LIFETIME_MS = 90 * 24 * 3_600_000;

export interface IdentityConfig {
  readonly trustDomain: string;
  readonly certificateLifetimeMs: number;
  /** A CA the user provides, paths absolute; absent: the CA Trellis makes and keeps in the state folder. */
  readonly ca?: { readonly certificate: string; readonly key: string; readonly trustBundle?: string };
}

/** Problems of `spec.identity` the schema cannot express. */
export function checkIdentity(doc: SourceDocument, mesh: MeshResource): Problem[] {
  const lifetime = mesh.spec.identity?.certificateLifetime;
  if (lifetime === undefined) return [];
  const ms = parseDurationMs(lifetime);
  if (ms >= MIN_LIFETIME_MS && ms <= MAX_LIFETIME_MS) return [];
  return [problemAt(doc, ['spec', 'identity', 'certificateLifetime'], `must be between 5m and 2160h (90 days), got ${lifetime}`)];
}

/** The identity settings in force; relative CA paths start at the mesh file's folder. */
export function normalizeIdentity(mesh: MeshResource, meshDir: string): IdentityConfig {
  const spec = mesh.spec.identity;
  const ca = spec?.ca;
  return {
    trustDomain: spec?.trustDomain ?? IDENTITY_DEFAULTS.trustDomain,
    certificateLifetimeMs: parseDurationMs(spec?.certificateLifetime ?? IDENTITY_DEFAULTS.certificateLifetime),
    ...(ca
      ? {
          ca: {
            certificate: resolve(meshDir, ca.certificate),
            key: resolve(meshDir, ca.key),
            ...(ca.trustBundle !== undefined ? { trustBundle: resolve(meshDir, ca.trustBundle) } : {}),
          },
        }
      : {}),
  };
}
