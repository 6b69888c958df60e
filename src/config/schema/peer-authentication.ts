// The `PeerAuthentication` kind (trellis.dev/v1alpha1), Istio's shape: how the inbound
// listeners of the Services it targets take connections from other workloads. STRICT
// (mutual TLS only), PERMISSIVE (mutual TLS or plaintext, for a migration), DISABLE
// (plaintext only). The mesh-wide default is `Mesh.spec.mtls.mode` (STRICT).
// Precedence: port-level > Service-targeted > namespace-wide (no targetRefs) > mesh-wide.
import { Type, type Static } from '@sinclair/typebox';
import { Metadata, strict, TRELLIS_API_VERSION } from './common.js';
import { PolicyTargetRef } from './policy-target.js';

export const MTLS_MODES = ['STRICT', 'PERMISSIVE', 'DISABLE'] as const;

/** STRICT, PERMISSIVE or DISABLE. */
export const MtlsModeSchema = Type.Union(
  MTLS_MODES.map((m) => Type.Literal(m)),
  { description: 'STRICT (mutual TLS only), PERMISSIVE (mutual TLS or plaintext) or DISABLE (plaintext only)' },
);

const ModeObject = Type.Object({ mode: MtlsModeSchema }, { ...strict, description: 'an mTLS mode: { mode: STRICT | PERMISSIVE | DISABLE }' });

/** Schema of the `PeerAuthentication` kind. */
export const PeerAuthenticationSchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('PeerAuthentication'),
    metadata: Metadata,
    spec: Type.Object(
      {
        // Absent: every service of the policy's namespace.
        targetRefs: Type.Optional(Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 })),
        mtls: ModeObject,
        portLevelMtls: Type.Optional(
          Type.Record(Type.String({ pattern: '^[0-9]{1,5}$' }), ModeObject, {
            description: 'modes by service port number ("8080": { mode: PERMISSIVE })',
          }),
        ),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'PeerAuthentication',
    description: 'How the targeted services (or every service of the namespace) take connections: mutual TLS only, either, or plaintext.',
  },
);

/** A `PeerAuthentication` as written. */
export type PeerAuthenticationResource = Static<typeof PeerAuthenticationSchema>;
/** STRICT, PERMISSIVE or DISABLE. */
export type MtlsModeSpec = (typeof MTLS_MODES)[number];
