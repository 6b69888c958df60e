// The Mesh's `spec.identity`: the trust domain of its SPIFFE IDs, how long workload
// certificates live, and, optionally, a CA the user provides instead of the one Trellis
// makes on first start (src/control/ca/certificate-authority.ts).
import { Type, type Static } from '@sinclair/typebox';
import { duration, strict } from './common.js';

export const IDENTITY_DEFAULTS = {
  trustDomain: 'cluster.local',
  certificateLifetime: '24h',
} as const;

const File = Type.String({ minLength: 1, description: 'a file path, relative to the mesh file' });

const ProvidedCa = Type.Object(
  {
    certificate: { ...File, description: 'PEM: the issuer certificate that signs workload certificates, then any intermediates up to the root' },
    key: { ...File, description: "PEM: the issuer's ECDSA P-256 private key (PKCS#8); keep the file mode 0600" },
    trustBundle: Type.Optional({
      ...File,
      description:
        'PEM: the roots proxies trust (old and new during a rotation); default: the last certificate of `certificate`, which must then be self-signed',
    }),
  },
  { ...strict, description: 'a CA the user provides: issuer certificate and key, and the trust bundle' },
);

export const Identity = Type.Object(
  {
    trustDomain: Type.Optional(
      Type.String({
        pattern: '^[a-z0-9_-]+(\\.[a-z0-9_-]+)*$',
        maxLength: 255,
        default: IDENTITY_DEFAULTS.trustDomain,
        description: 'the trust domain of the SPIFFE IDs (spiffe://<trust-domain>/ns/<namespace>/sa/<service>); default cluster.local',
      }),
    ),
    certificateLifetime: Type.Optional(
      duration({
        default: IDENTITY_DEFAULTS.certificateLifetime,
        description: 'how long a workload certificate is valid, 5m to 2160h (90 days); default 24h; proxies renew at about two thirds of it',
      }),
    ),
    ca: Type.Optional(ProvidedCa),
  },
  { ...strict, description: 'mesh identity: trust domain, workload certificate lifetime, and optionally a CA of your own' },
);

export type IdentitySpec = Static<typeof Identity>;
