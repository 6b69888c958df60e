// The parts the route kinds (HTTPRoute, GRPCRoute, TCPRoute) share: parents, backends,
// host names, header matches, and the filters HTTPRoute and GRPCRoute both have.
import { Type, type Static } from '@sinclair/typebox';
import { DnsLabel, group, kind, ObjectName, Port, SectionName, strict } from './common.js';

// Unlike the Gateway API, whose parentRef defaults to a Gateway, a mesh route's
// parent is a Service (GAMMA), so that is the default here.
export const ParentRef = Type.Object(
  {
    group: Type.Optional(group()),
    kind: Type.Optional(kind()),
    namespace: Type.Optional(DnsLabel),
    name: ObjectName,
    // The Service port the route binds to (a port of its `ports:` list); absent: every port.
    // For a Gateway: the listener port.
    port: Type.Optional(Port),
    // For a Gateway: the listener the route attaches to; absent: every listener that allows it.
    sectionName: Type.Optional(SectionName),
  },
  strict,
);

export const BackendRef = Type.Object(
  {
    group: Type.Optional(group()),
    kind: Type.Optional(kind()),
    name: ObjectName,
    namespace: Type.Optional(DnsLabel),
    port: Type.Optional(Port),
    weight: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, default: 1 })),
  },
  strict,
);

/** The host names a route answers for (HTTPRoute and GRPCRoute). */
export const RouteHostnames = Type.Optional(
  Type.Array(
    Type.String({
      pattern: '^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
      maxLength: 253,
      description: 'a host name such as shop.example.com or *.example.com',
    }),
    { maxItems: 16 },
  ),
);

export const HeaderMatch = Type.Object(
  {
    type: Type.Optional(Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression')], { default: 'Exact' })),
    name: Type.String({
      pattern: "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$",
      maxLength: 256,
      description: 'an HTTP header name',
    }),
    value: Type.String({ maxLength: 4096 }),
  },
  strict,
);

// ---------------------------------------------------------------------------
// Route filters (Gateway API HTTPRouteFilter / GRPCRouteFilter). As in the Gateway
// API, `type` says which one of the config fields must be set; check-routes.ts checks
// that pairing (the CRD does it with CEL), so each mistake gets its own field path.
// ---------------------------------------------------------------------------

const HeaderName = Type.String({
  pattern: "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$",
  maxLength: 256,
  description: 'an HTTP header name',
});

const HTTPHeader = Type.Object(
  { name: HeaderName, value: Type.String({ maxLength: 4096, pattern: '^[^\\r\\n\\u0000]*$', description: 'a header value without CR, LF or NUL' }) },
  strict,
);

export const HeaderModifier = Type.Object(
  {
    set: Type.Optional(Type.Array(HTTPHeader, { maxItems: 16 })),
    add: Type.Optional(Type.Array(HTTPHeader, { maxItems: 16 })),
    remove: Type.Optional(Type.Array(HeaderName, { maxItems: 16 })),
  },
  strict,
);

export const RequestMirror = Type.Object(
  {
    backendRef: Type.Object(
      { group: Type.Optional(group()), kind: Type.Optional(kind()), name: ObjectName, namespace: Type.Optional(DnsLabel), port: Type.Optional(Port) },
      strict,
    ),
    percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    fraction: Type.Optional(
      Type.Object({ numerator: Type.Integer({ minimum: 0 }), denominator: Type.Optional(Type.Integer({ minimum: 1, default: 100 })) }, strict),
    ),
  },
  strict,
);

/** A backend: a mesh service `S` or one version of it, `S-<version>`. */
export type BackendRef = Static<typeof BackendRef>;
/** A route's parent: in the mesh, a Service (GAMMA). */
export type ParentRef = Static<typeof ParentRef>;
/** A header match (`Exact` or `RegularExpression`, default `Exact`). */
export type HeaderMatch = Static<typeof HeaderMatch>;
