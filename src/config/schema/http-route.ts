// The Gateway API `HTTPRoute` kind (gateway.networking.k8s.io/v1), the subset Trellis
// implements, the GAMMA way: its parentRefs name a mesh Service.
import { Type, type Static } from '@sinclair/typebox';
import { DNS_SUBDOMAIN, GATEWAY_API_VERSION, gatewayDuration, httpPath, Metadata, Port, SectionName, strict } from './common.js';
import { BackendRef, HeaderMatch, HeaderModifier, ParentRef, RequestMirror, RouteHostnames } from './route-common.js';

const PathModifier = Type.Object(
  {
    type: Type.Union([Type.Literal('ReplaceFullPath'), Type.Literal('ReplacePrefixMatch')]),
    replaceFullPath: Type.Optional(httpPath()),
    replacePrefixMatch: Type.Optional(httpPath()),
  },
  strict,
);

const PreciseHostname = Type.String({
  pattern: DNS_SUBDOMAIN,
  maxLength: 253,
  description: 'a host name such as shop.example.com (no wildcard)',
});

const RequestRedirect = Type.Object(
  {
    scheme: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('https')])),
    hostname: Type.Optional(PreciseHostname),
    path: Type.Optional(PathModifier),
    port: Type.Optional(Port),
    // The Gateway API's codes: 301 and 302 (core), 303, 307 and 308 (extended; 307 and 308 keep the method and body).
    statusCode: Type.Optional(Type.Union([Type.Literal(301), Type.Literal(302), Type.Literal(303), Type.Literal(307), Type.Literal(308)], { default: 302 })),
  },
  strict,
);

const URLRewrite = Type.Object({ hostname: Type.Optional(PreciseHostname), path: Type.Optional(PathModifier) }, strict);

const HTTPRouteFilter = Type.Object(
  {
    type: Type.Union([
      Type.Literal('RequestHeaderModifier'),
      Type.Literal('ResponseHeaderModifier'),
      Type.Literal('RequestRedirect'),
      Type.Literal('URLRewrite'),
      Type.Literal('RequestMirror'),
    ]),
    requestHeaderModifier: Type.Optional(HeaderModifier),
    responseHeaderModifier: Type.Optional(HeaderModifier),
    requestRedirect: Type.Optional(RequestRedirect),
    urlRewrite: Type.Optional(URLRewrite),
    requestMirror: Type.Optional(RequestMirror),
  },
  strict,
);

const HTTPBackendRef = Type.Object({ ...BackendRef.properties, filters: Type.Optional(Type.Array(HTTPRouteFilter, { maxItems: 16 })) }, strict);

const PathMatch = Type.Object(
  {
    type: Type.Optional(Type.Union([Type.Literal('Exact'), Type.Literal('PathPrefix'), Type.Literal('RegularExpression')], { default: 'PathPrefix' })),
    // A regular expression need not start with '/', so the value is checked by type in check-routes.ts.
    value: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, default: '/' })),
  },
  { ...strict, default: { type: 'PathPrefix', value: '/' } },
);

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

const QueryParamMatch = Type.Object(
  {
    type: Type.Optional(Type.Union([Type.Literal('Exact'), Type.Literal('RegularExpression')], { default: 'Exact' })),
    name: Type.String({ minLength: 1, maxLength: 256, pattern: '^[^&=#\\s]+$', description: 'a query parameter name (no &, =, # or spaces)' }),
    value: Type.String({ maxLength: 1024 }),
  },
  strict,
);

const HTTPRouteMatch = Type.Object(
  {
    path: Type.Optional(PathMatch),
    method: Type.Optional(Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)))),
    headers: Type.Optional(Type.Array(HeaderMatch, { maxItems: 16 })),
    queryParams: Type.Optional(Type.Array(QueryParamMatch, { maxItems: 16 })),
  },
  strict,
);

// Gateway API HTTPRouteTimeouts: `request` bounds the whole exchange, retries included;
// `backendRequest` bounds each attempt. "0s" disables a timeout.
const HTTPRouteTimeouts = Type.Object(
  {
    request: Type.Optional(gatewayDuration('the whole request, retries included')),
    backendRequest: Type.Optional(gatewayDuration('each attempt')),
  },
  strict,
);

// Gateway API HTTPRouteRetry (GEP-1731).
const HTTPRouteRetry = Type.Object(
  {
    codes: Type.Optional(Type.Array(Type.Integer({ minimum: 400, maximum: 599, description: 'an HTTP status code from 400 to 599' }), { maxItems: 32 })),
    attempts: Type.Optional(Type.Integer({ minimum: 0, maximum: 10, description: 'a number of retries from 0 to 10' })),
    backoff: Type.Optional(gatewayDuration('the base of the exponential backoff')),
  },
  strict,
);

// A mesh route without parents or a rule without backends can only fail requests,
// so Trellis asks for them where the Gateway API leaves them optional.
// (A rule whose only job is a RequestRedirect needs none; check-routes.ts allows that.)
const HTTPRouteRule = Type.Object(
  {
    // Named so that policies can target one rule (targetRefs[].sectionName).
    name: Type.Optional(SectionName),
    matches: Type.Optional(Type.Array(HTTPRouteMatch, { maxItems: 64, default: [{ path: { type: 'PathPrefix', value: '/' } }] })),
    filters: Type.Optional(Type.Array(HTTPRouteFilter, { maxItems: 16 })),
    backendRefs: Type.Optional(Type.Array(HTTPBackendRef, { maxItems: 16 })),
    timeouts: Type.Optional(HTTPRouteTimeouts),
    retry: Type.Optional(HTTPRouteRetry),
  },
  strict,
);

/** Schema of the Gateway API `HTTPRoute` kind (the subset Trellis implements). */
export const HTTPRouteSchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_VERSION),
    kind: Type.Literal('HTTPRoute'),
    metadata: Metadata,
    spec: Type.Object(
      {
        parentRefs: Type.Array(ParentRef, { minItems: 1, maxItems: 32 }),
        hostnames: RouteHostnames,
        rules: Type.Array(HTTPRouteRule, { minItems: 1, maxItems: 16 }),
      },
      strict,
    ),
  },
  { ...strict, title: 'HTTPRoute', description: 'Gateway API HTTPRoute; in the mesh its parentRefs name a Service.' },
);

/** A Gateway API `HTTPRoute` (the subset Trellis implements). */
export type HTTPRouteResource = Static<typeof HTTPRouteSchema>;
/** The spec of an HTTPRoute: parentRefs, hostnames, rules. */
export type HTTPRouteSpec = HTTPRouteResource['spec'];
/** One rule: matches (ORed) and the weighted backends. */
export type HTTPRouteRule = Static<typeof HTTPRouteRule>;
/** One match: path, method and headers, all of which must hold. */
export type HTTPRouteMatch = Static<typeof HTTPRouteMatch>;
/** A path match (`Exact` or `PathPrefix`, default `PathPrefix /`). */
export type PathMatch = Static<typeof PathMatch>;
/** The HTTP methods a match may name. */
export type HTTPMethod = (typeof HTTP_METHODS)[number];
/** A query parameter match (`Exact` or `RegularExpression`, default `Exact`). */
export type QueryParamMatch = Static<typeof QueryParamMatch>;
/** An HTTPRoute filter as written: `type` plus the one config field it names. */
export type HTTPRouteFilter = Static<typeof HTTPRouteFilter>;
