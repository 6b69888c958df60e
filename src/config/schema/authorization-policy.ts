// The Trellis `AuthorizationPolicy` kind: who may call a service, and what, in Istio's
// shape (security.istio.io AuthorizationPolicy), so a policy written here carries to
// Istio and back. The schema fixes the shape; check-authorization.ts checks the values
// (principals, methods, paths, `when` keys) with their field paths.
import { Type, type Static } from '@sinclair/typebox';
import { Metadata, strict, TRELLIS_API_VERSION } from './common.js';
import { PolicyTargetRef } from './policy-target.js';

/** The actions, as Istio's (CUSTOM, an external authorizer, is not built). */
export const AUTHORIZATION_ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;

// Every string list of a rule takes Istio's matches: exact, `abc*` (prefix), `*abc`
// (suffix), `*` (any non-empty value). A list of at most 256 values of at most 1 KiB
// each: a policy is config, and nothing in it may cost a proxy unbounded work.
const values = (description: string) => Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: 256, description }));

// Ports are strings in Istio (`ports: ["8080"]`); YAML writes `[8080]` as numbers, so both are taken.
const ports = (description: string) =>
  Type.Optional(
    Type.Array(Type.Union([Type.Integer({ minimum: 1, maximum: 65535 }), Type.String({ pattern: '^[0-9]{1,5}$' })]), {
      minItems: 1,
      maxItems: 256,
      description,
    }),
  );

const Source = Type.Object(
  {
    principals: values('peer identities, `<trust domain>/ns/<namespace>/sa/<service>` (spiffe:// optional), with * wildcards'),
    notPrincipals: values('peer identities the caller must not have'),
    namespaces: values("namespaces of the caller's identity"),
    notNamespaces: values('namespaces the caller must not be in'),
    requestPrincipals: values('end users, `<issuer>/<subject>` of a verified JWT (RequestAuthentication)'),
    notRequestPrincipals: values('end users the request must not come from'),
  },
  strict,
);

const Operation = Type.Object(
  {
    hosts: values('Host header values (case-insensitive; without a port in the pattern, the port of the request is ignored)'),
    notHosts: values('hosts the request must not name'),
    ports: ports('ports of the service the request came in on'),
    notPorts: ports('ports the request must not come in on'),
    methods: values('HTTP methods (a gRPC call is POST)'),
    notMethods: values('methods the request must not use'),
    paths: values('paths, exact, `/prefix/*` or `*suffix` (without the query string, dot segments resolved)'),
    notPaths: values('paths the request must not have'),
  },
  strict,
);

const Condition = Type.Object(
  {
    key: Type.String({
      minLength: 1,
      maxLength: 256,
      description:
        'request.headers[<name>], source.principal, source.namespace, destination.port, request.auth.principal, request.auth.audiences, request.auth.presenter, or request.auth.claims[<name>] (nested: [a][b])',
    }),
    values: values('the values of which the attribute must have one'),
    notValues: values('the values the attribute must have none of'),
  },
  strict,
);

const Rule = Type.Object(
  {
    from: Type.Optional(Type.Array(Type.Object({ source: Source }, strict), { maxItems: 64, description: 'sources; one of them must match (absent: any)' })),
    to: Type.Optional(
      Type.Array(Type.Object({ operation: Operation }, strict), { maxItems: 64, description: 'operations; one of them must match (absent: any)' }),
    ),
    when: Type.Optional(Type.Array(Condition, { maxItems: 64, description: 'conditions; all of them must hold (absent: none)' })),
  },
  strict,
);

/** Schema of the Trellis `AuthorizationPolicy` kind. */
export const AuthorizationPolicySchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('AuthorizationPolicy'),
    metadata: Metadata,
    spec: Type.Object(
      {
        // Absent: every service of the policy's namespace (Istio's policy without a selector).
        targetRefs: Type.Optional(Type.Array(PolicyTargetRef, { minItems: 1, maxItems: 16 })),
        action: Type.Optional(
          Type.Union(
            AUTHORIZATION_ACTIONS.map((a) => Type.Literal(a)),
            { default: 'ALLOW' },
          ),
        ),
        // Absent or empty: the policy matches nothing (an ALLOW policy without rules denies
        // everything; `rules: [{}]` matches everything), as Istio's.
        rules: Type.Optional(Type.Array(Rule, { maxItems: 256 })),
        // Istio's `istio.io/dry-run` annotation, as a field the schema checks: the policy is
        // evaluated and what it would deny is logged and counted, but nothing is refused.
        dryRun: Type.Optional(Type.Boolean({ default: false })),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'AuthorizationPolicy',
    description:
      "Trellis policy (Istio's AuthorizationPolicy): which callers may reach the services of its namespace (or those it targets), enforced by each service's own sidecar; DENY wins, and a service with any ALLOW policy refuses what none allows.",
  },
);

/** An `AuthorizationPolicy` as written (defaults applied). */
export type AuthorizationPolicyResource = Static<typeof AuthorizationPolicySchema>;
