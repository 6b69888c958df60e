// The `RequestAuthentication` kind (trellis.dev/v1alpha1): which end-user JWTs the
// sidecars of a namespace's Services accept, in Istio's shape (security.istio.io
// RequestAuthentication, JWTRule), trimmed to what Trellis builds and with the limits
// Istio leaves to Envoy written down (clock skew, algorithms, token size, JWKS refresh).
// A request with no token passes; one with a token no rule verifies is refused 401; a
// verified one carries `iss/sub` to authorization (AuthorizationPolicy requestPrincipals).
import { Type, type Static } from '@sinclair/typebox';
import { duration, Metadata, strict, TRELLIS_API_VERSION } from './common.js';
import { PolicyTargetRef } from './policy-target.js';

/**
 * The signature algorithms a rule may accept (RFC 7518 §3.1, and EdDSA from RFC 8037):
 * asymmetric ones only, and never `none`. HMAC (HS256...) is left out on purpose: its key
 * is a shared secret that would sit in every proxy's snapshot, and refusing it rules out
 * the key-confusion attack (an RSA public key taken as an HMAC secret). A rule's
 * `algorithms` narrows this list; the default is all of it.
 */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** The default allow-list: every asymmetric algorithm. */
export const DEFAULT_JWT_ALGORITHMS: readonly string[] = JWT_ALGORITHMS;

const HeaderName = Type.String({
  pattern: "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$",
  maxLength: 256,
  description: 'an HTTP header name',
});

const JwtHeader = Type.Object(
  {
    name: HeaderName,
    // Istio's: stripped before the token is read ("Bearer " for Authorization).
    prefix: Type.Optional(Type.String({ maxLength: 64, pattern: '^[\\x20-\\x7e]*$', description: 'printable ASCII, such as "Bearer "' })),
  },
  strict,
);

const ClaimToHeader = Type.Object(
  {
    header: HeaderName,
    claim: Type.String({
      pattern: '^[A-Za-z0-9_.:\\-]+$',
      maxLength: 256,
      description: 'a claim name (letters, digits, "_", ".", ":", "-"); a nested claim as a.b',
    }),
  },
  strict,
);

const JwtRule = Type.Object(
  {
    issuer: Type.String({ minLength: 1, maxLength: 1024, pattern: '^[\\x21-\\x7e]+$', description: 'the `iss` claim tokens of this rule carry' }),
    audiences: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 1024, pattern: '^[\\x21-\\x7e]+$', description: 'an audience (`aud`) value' }), { maxItems: 32 }),
    ),
    jwks: Type.Optional(Type.String({ minLength: 2, maxLength: 262_144, description: 'a JSON Web Key Set, as JSON text' })),
    jwksFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'a file holding a JSON Web Key Set (relative to this file)' })),
    jwksUri: Type.Optional(
      Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2048, description: 'an http:// or https:// URL serving a JSON Web Key Set' }),
    ),
    fromHeaders: Type.Optional(Type.Array(JwtHeader, { minItems: 1, maxItems: 8 })),
    fromParams: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.\\-~]+$', maxLength: 128, description: 'a query parameter name' }), { minItems: 1, maxItems: 8 }),
    ),
    forwardOriginalToken: Type.Optional(Type.Boolean({ default: false })),
    outputClaimToHeaders: Type.Optional(Type.Array(ClaimToHeader, { maxItems: 16 })),
    algorithms: Type.Optional(
      Type.Array(Type.Union(JWT_ALGORITHMS.map((a) => Type.Literal(a))), { minItems: 1, maxItems: JWT_ALGORITHMS.length, uniqueItems: true }),
    ),
    clockSkew: Type.Optional(duration({ description: 'the clock skew allowed on exp and nbf, such as 60s (default 60s, as Envoy)' })),
    maxTokenBytes: Type.Optional(Type.Integer({ minimum: 128, maximum: 65_536, description: 'a size in bytes from 128 to 65536 (default 8192)' })),
    jwksRefreshInterval: Type.Optional(duration({ description: 'how often a jwksUri is fetched again, such as 5m (default 5m, as Envoy)' })),
    jwksMaxStale: Type.Optional(duration({ description: 'how long the last keys of an unreachable jwksUri stay in use, such as 24h (default 24h)' })),
  },
  strict,
);

/** Schema of the Trellis `RequestAuthentication` kind. */
export const RequestAuthenticationSchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('RequestAuthentication'),
    metadata: Metadata,
    spec: Type.Object(
      {
        // Absent: every Service of the policy's namespace.
        targetRefs: Type.Optional(Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 })),
        jwtRules: Type.Array(JwtRule, { minItems: 1, maxItems: 16 }),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'RequestAuthentication',
    description: "End-user JWT authentication for a namespace's Services (Istio's RequestAuthentication): issuers, audiences, keys.",
  },
);

/** A `RequestAuthentication` as written. */
export type RequestAuthenticationResource = Static<typeof RequestAuthenticationSchema>;
/** One of its `jwtRules`. */
export type JwtRuleSpec = Static<typeof JwtRule>;
