// The Gateway API `ReferenceGrant` kind (gateway.networking.k8s.io/v1beta1): the owner of
// a namespace lets routes of another namespace send traffic to its Services. Without one
// a backendRef into another namespace is invalid (its share of requests gets 500).
import { Type, type Static } from '@sinclair/typebox';
import { DnsLabel, GATEWAY_API_BETA_VERSION, Metadata, ObjectName, strict } from './common.js';

const group = () =>
  Type.String({
    pattern: '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
    maxLength: 253,
    description: 'an API group: "" (core, for a Service) or gateway.networking.k8s.io (for a route)',
  });
const kind = () => Type.String({ pattern: '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$', maxLength: 63, description: 'a kind such as HTTPRoute or Service' });

// `group` and `kind` are required here, as in the Gateway API (no Service default: a
// grant says exactly what it lets in).
const ReferenceGrantFrom = Type.Object(
  {
    group: group(),
    kind: kind(),
    namespace: DnsLabel,
  },
  strict,
);

const ReferenceGrantTo = Type.Object(
  {
    group: group(),
    kind: kind(),
    // Absent: every object of that kind in the grant's namespace.
    name: Type.Optional(ObjectName),
  },
  strict,
);

/** Schema of the Gateway API `ReferenceGrant` kind (v1beta1). */
export const ReferenceGrantSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_BETA_VERSION),
    kind: Type.Literal('ReferenceGrant'),
    metadata: Metadata,
    spec: Type.Object(
      {
        from: Type.Array(ReferenceGrantFrom, { minItems: 1, maxItems: 16 }),
        to: Type.Array(ReferenceGrantTo, { minItems: 1, maxItems: 16 }),
      },
      strict,
    ),
  },
  {
    ...strict,
    title: 'ReferenceGrant',
    description: "Gateway API ReferenceGrant: lets routes of the `from` namespaces send traffic to Services of the grant's own namespace.",
  },
);

/** A Gateway API `ReferenceGrant` (v1beta1). */
export type ReferenceGrantResource = Static<typeof ReferenceGrantSchema>;
