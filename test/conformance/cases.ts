// Every Gateway API mesh conformance test (kubernetes-sigs/gateway-api,
// conformance/tests/mesh/*.go and *.yaml), translated to Trellis: its routes as Trellis
// reads them and its requests with the answers upstream expects. Written from the
// upstream tests' expectations, not their code. The suite runs this table
// (gateway-api-mesh.test.ts) and the README's counts are checked against it
// (readme-counts.test.ts): flipping a case's outcome means updating the README.
//
// Translation rules, for every case:
// - Route YAML is upstream's, in MESH_NS (see meshes.ts), with `parentRefs[].port` left
//   out where the parent has one port on main (`port: 80` on the `echo` mesh, whose
//   service has one port: binding to port 80 and to every port are the same); MeshPorts,
//   about that field, keeps it.
// - Checks are upstream's. Upstream's mesh checker (conformance/utils/echo/pod.go)
//   compares only status, request headers, response headers and the backend; the
//   expected path and redirect Location it also writes down are checked here too, as
//   the Gateway checker (conformance/utils/http/http.go) checks them.
import type { ConformanceCase } from './case-types.js';
import { CONSUMER_NS, MESH_NS, PRODUCER_NS } from './meshes.js';

const meta = (name: string, ns = MESH_NS): string => `metadata:
  name: ${name}
  namespace: ${ns}`;

const ROUTE = 'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute';
const GRPC_ROUTE = 'apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute';
const NO_PARENT_PORT = 'parentRefs[].port: 80 left out (the echo service has one port on main)';

const redirectCase = (code: 301 | 302 | 303 | 307 | 308, name: string, file: string, prefix: string): Omit<ConformanceCase, 'outcome'> => ({
  name,
  kind: 'HTTP',
  upstream: file,
  mesh: 'echo',
  routes: `${ROUTE}
${meta(`mesh-${code}-redirect`)}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: ${prefix}
    filters:
    - type: RequestRedirect
      requestRedirect:
        statusCode: ${code}
`,
  deviations: [NO_PARENT_PORT],
  checks: [{ kind: 'request', name: `${prefix} redirects ${code}`, host: 'echo', path: prefix, expect: { status: code, redirect: { path: prefix } } }],
});

const headerModifierChecks = [
  {
    name: 'set: adds the header',
    path: '/set',
    headers: { 'Some-Other-Header': 'val' },
    expect: { path: '/set', requestHeaders: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
  },
  {
    name: 'set: overwrites the header',
    path: '/set',
    headers: { 'Some-Other-Header': 'val', 'X-Header-Set': 'some-other-value' },
    expect: { path: '/set', requestHeaders: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
  },
  {
    name: 'add: adds the header',
    path: '/add',
    headers: { 'Some-Other-Header': 'val' },
    expect: { path: '/add', requestHeaders: { 'Some-Other-Header': 'val', 'X-Header-Add': 'add-appends-values' } },
  },
  {
    name: 'add: appends to the header',
    path: '/add',
    headers: { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value' },
    expect: { path: '/add', requestHeaders: { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value,add-appends-values' } },
  },
  {
    name: 'remove: removes the header',
    path: '/remove',
    headers: { 'X-Header-Remove': 'val' },
    expect: { path: '/remove', absentRequestHeaders: ['X-Header-Remove'] },
  },
  {
    name: 'multiple: set, add and remove',
    path: '/multiple',
    headers: { 'X-Header-Set-2': 'set-val-2', 'X-Header-Add-2': 'add-val-2', 'X-Header-Remove-2': 'remove-val-2', 'Another-Header': 'another-header-val' },
    expect: {
      path: '/multiple',
      requestHeaders: {
        'X-Header-Set-1': 'header-set-1',
        'X-Header-Set-2': 'header-set-2',
        'X-Header-Add-1': 'header-add-1',
        'X-Header-Add-2': 'add-val-2,header-add-2',
        'X-Header-Add-3': 'header-add-3',
        'Another-Header': 'another-header-val',
      },
      absentRequestHeaders: ['X-Header-Remove-1', 'X-Header-Remove-2'],
    },
  },
  {
    name: 'case-insensitivity: canonical names in the filter, lower case in the request',
    path: '/case-insensitivity',
    headers: {
      'x-header-set': 'original-val-set',
      'x-header-add': 'original-val-add',
      'x-header-remove': 'original-val-remove',
      'Another-Header': 'another-header-val',
    },
    expect: {
      path: '/case-insensitivity',
      requestHeaders: { 'X-Header-Set': 'header-set', 'X-Header-Add': 'original-val-add,header-add', 'Another-Header': 'another-header-val' },
      absentRequestHeaders: ['x-header-remove', 'X-Header-Remove'],
    },
  },
].map((c) => ({ kind: 'request' as const, host: 'echo', ...c, expect: { ...c.expect, backend: 'echo-v1' } }));

/** The request header modifier rules, as rule filters (`rule`) or as backendRef filters (`backend`). */
function headerModifierRoutes(at: 'rule' | 'backend'): string {
  const rule = (prefix: string, modifier: string): string => {
    const pad = at === 'rule' ? '    ' : '      ';
    const filter = `${pad}- type: RequestHeaderModifier\n${pad}  requestHeaderModifier:\n${modifier
      .split('\n')
      .filter(Boolean)
      .map((l) => `${pad}    ${l}`)
      .join('\n')}`;
    return at === 'rule'
      ? `  - matches:
    - path:
        type: PathPrefix
        value: ${prefix}
    filters:
${filter}
    backendRefs:
    - name: echo-v1
      port: 8080
`
      : `  - matches:
    - path:
        type: PathPrefix
        value: ${prefix}
    backendRefs:
    - name: echo-v1
      port: 8080
      filters:
${filter}
`;
  };
  return `${ROUTE}
${meta('mesh-request-header-modifier')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
${rule('/set', 'set:\n- name: X-Header-Set\n  value: set-overwrites-values')}${rule('/add', 'add:\n- name: X-Header-Add\n  value: add-appends-values')}${rule(
  '/remove',
  'remove:\n- X-Header-Remove',
)}${rule(
  '/multiple',
  'set:\n- name: X-Header-Set-1\n  value: header-set-1\n- name: X-Header-Set-2\n  value: header-set-2\nadd:\n- name: X-Header-Add-1\n  value: header-add-1\n- name: X-Header-Add-2\n  value: header-add-2\n- name: X-Header-Add-3\n  value: header-add-3\nremove:\n- X-Header-Remove-1\n- X-Header-Remove-2',
)}${rule('/case-insensitivity', 'set:\n- name: X-Header-Set\n  value: header-set\nadd:\n- name: X-Header-Add\n  value: header-add\nremove:\n- X-Header-Remove')}`;
}

const frontendRoute = `${ROUTE}
${meta('mesh-split-v1')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo-v2
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set
          value: set
    backendRefs:
    - name: echo-v2
      port: 80
`;

const path = (p: string, backend: string) => ({ kind: 'request' as const, name: `${p} goes to ${backend}`, host: 'echo', path: p, expect: { backend } });
const notFound = (p: string, headers?: Record<string, string>) => ({
  kind: 'request' as const,
  name: `${p}${headers ? ` ${JSON.stringify(headers)}` : ''} matches nothing: 404`,
  host: 'echo',
  path: p,
  ...(headers ? { headers } : {}),
  expect: { status: 404 },
});

export const CASES: readonly ConformanceCase[] = [
  {
    name: 'MeshBasic',
    kind: 'HTTP',
    upstream: 'mesh-basic.go',
    mesh: 'echo',
    routes: '',
    checks: [{ kind: 'request', name: 'GET echo without any route: 200', host: 'echo', method: 'GET', expect: { status: 200 } }],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshConsumerRoute',
    kind: 'HTTP',
    upstream: 'mesh-consumer-route.go',
    mesh: 'consumer',
    routes: `${ROUTE}
${meta('mesh-echo-add-header', CONSUMER_NS)}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo-v1
    namespace: ${PRODUCER_NS}
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set
          value: set
    backendRefs:
    - name: echo-v1
      namespace: ${PRODUCER_NS}
      port: 80
`,
    deviations: [
      "upstream's consumer namespace has only a Deployment echo-v1 (no Service): here a service echo-v1 in that namespace, which nothing calls",
      'no ReferenceGrant for the cross-namespace backendRef, as upstream has none (GEP-1294: mesh routes may send to any namespace without one)',
    ],
    checks: [
      {
        kind: 'request',
        name: "request from consumer route's namespace modified by HTTPRoute",
        from: 'consumer',
        host: `echo-v1.${PRODUCER_NS}`,
        method: 'GET',
        path: '/',
        expect: { status: 200, responseHeaders: { 'X-Header-Set': 'set' }, backend: 'echo-v1' },
      },
      {
        kind: 'request',
        name: "request not from consumer route's namespace not modified by HTTPRoute",
        host: `echo-v1.${PRODUCER_NS}`,
        method: 'GET',
        path: '/',
        expect: { status: 200, absentResponseHeaders: ['X-Header-Set'], backend: 'echo-v1' },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshFrontend',
    kind: 'HTTP',
    upstream: 'mesh-frontend.go',
    mesh: 'frontends',
    routes: frontendRoute,
    deviations: ["the pod IP is the echo-v2 instance's app address (127.0.0.1:<its app port>), upstream's <pod IP>:8080"],
    checks: [
      {
        kind: 'request',
        name: 'Send to service',
        host: 'echo-v2',
        method: 'GET',
        expect: { status: 200, responseHeaders: { 'X-Header-Set': 'set' }, backend: 'echo-v2' },
      },
      {
        kind: 'request',
        name: 'Send to pod IP',
        host: { podOf: 'echo-v2' },
        method: 'GET',
        expect: { status: 200, absentResponseHeaders: ['X-Header-Set'], backend: 'echo-v2' },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshFrontendHostname',
    kind: 'HTTP',
    upstream: 'mesh-frontend-hostname.go',
    mesh: 'frontends',
    routes: frontendRoute,
    deviations: [
      "upstream connects to one Service's cluster IP with the other's name as Host; here the request goes to the client sidecar's listener for that Service (TRELLIS_UPSTREAM_<NAME>, the Service's address in Trellis) with the other's name as Host",
    ],
    checks: [
      {
        kind: 'request',
        name: 'Send to service with wrong hostname',
        via: { listener: 'upstream', service: 'echo-v2' },
        host: 'echo-v1',
        method: 'GET',
        expect: { status: 200, responseHeaders: { 'X-Header-Set': 'set' }, backend: 'echo-v2' },
      },
      {
        kind: 'request',
        name: 'Send to other service with matching hostname',
        via: { listener: 'upstream', service: 'echo-v1' },
        host: 'echo-v2',
        method: 'GET',
        expect: { status: 200, absentResponseHeaders: ['X-Header-Set'], backend: 'echo-v1' },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshPorts',
    kind: 'HTTP',
    upstream: 'mesh-ports.go',
    mesh: 'ports',
    routes: `${ROUTE}
${meta('mesh-split-v1')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo-v1
    port: 80
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set
          value: v1
    backendRefs:
    - name: echo-v1
      port: 80
---
${ROUTE}
${meta('mesh-split-v2')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo-v2
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set
          value: v2
    backendRefs:
    - name: echo-v2
      port: 80
`,
    checks: [
      {
        kind: 'request',
        name: 'Explicit port set, send to that port',
        host: 'echo-v1',
        method: 'GET',
        expect: { status: 200, responseHeaders: { 'X-Header-Set': 'v1' }, backend: 'echo-v1' },
      },
      {
        kind: 'request',
        name: 'Explicit port, send to an excluded port',
        host: 'echo-v1:8080',
        method: 'GET',
        expect: { status: 200, absentResponseHeaders: ['X-Header-Set'], backend: 'echo-v1' },
      },
      {
        kind: 'request',
        name: 'No port set',
        host: 'echo-v2',
        method: 'GET',
        expect: { status: 200, responseHeaders: { 'X-Header-Set': 'v2' }, backend: 'echo-v2' },
      },
      {
        kind: 'request',
        name: 'No port set, other port',
        host: 'echo-v2:8080',
        method: 'GET',
        expect: { status: 200, responseHeaders: { 'X-Header-Set': 'v2' }, backend: 'echo-v2' },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshTrafficSplit',
    kind: 'HTTP',
    upstream: 'mesh-split.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-split')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: Exact
        value: /v1
    backendRefs:
    - name: echo-v1
      port: 80
  - matches:
    - path:
        type: Exact
        value: /v2
    backendRefs:
    - name: echo-v2
      port: 80
`,
    checks: [
      { kind: 'request', name: '/v1 goes to echo-v1', host: 'echo', method: 'GET', path: '/v1', expect: { status: 200, backend: 'echo-v1' } },
      { kind: 'request', name: '/v2 goes to echo-v2', host: 'echo', method: 'GET', path: '/v2', expect: { status: 200, backend: 'echo-v2' } },
    ],
    outcome: { status: 'pass' },
  },
  {
    ...redirectCase(303, 'MeshHTTPRoute303Redirect', 'httproute-303-redirect.go', '/redirect'),
    outcome: { status: 'pass' },
  },
  {
    ...redirectCase(307, 'MeshHTTPRoute307Redirect', 'httproute-307-redirect.go', '/temporary'),
    outcome: { status: 'pass' },
  },
  {
    ...redirectCase(308, 'MeshHTTPRoute308Redirect', 'httproute-308-redirect.go', '/permanent'),
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteMatching',
    kind: 'HTTP',
    upstream: 'httproute-matching.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-matching')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    - headers:
      - name: version
        value: one
    backendRefs:
    - name: echo-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /v2
    - headers:
      - name: version
        value: two
    backendRefs:
    - name: echo-v2
      port: 8080
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      path('/', 'echo-v1'),
      path('/example', 'echo-v1'),
      { kind: 'request', name: '/ with Version: one goes to echo-v1', host: 'echo', path: '/', headers: { Version: 'one' }, expect: { backend: 'echo-v1' } },
      path('/v2', 'echo-v2'),
      path('/v2/example', 'echo-v2'),
      { kind: 'request', name: '/ with Version: two goes to echo-v2', host: 'echo', path: '/', headers: { Version: 'two' }, expect: { backend: 'echo-v2' } },
      path('/v2/', 'echo-v2'),
      path('/v2example', 'echo-v1'),
      path('/foo/v2/example', 'echo-v1'),
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteNamedRule',
    kind: 'HTTP',
    upstream: 'httproute-named-rule.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-http-named-rules')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - name: named-rule
    matches:
    - path:
        type: PathPrefix
        value: /named
    backendRefs:
    - name: echo-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /unnamed
    backendRefs:
    - name: echo-v2
      port: 8080
`,
    deviations: [
      NO_PARENT_PORT,
      "upstream's second check expects the echo to receive path /named for a request to /unnamed (a copy of the first check's ExpectedRequest; its mesh checker ignores paths, so it passes there); nothing rewrites the path, so /unnamed is expected here",
    ],
    checks: [
      { kind: 'request', name: '/named goes to echo-v1', host: 'echo', path: '/named', expect: { path: '/named', backend: 'echo-v1' } },
      { kind: 'request', name: '/unnamed goes to echo-v2', host: 'echo', path: '/unnamed', expect: { path: '/unnamed', backend: 'echo-v2' } },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteQueryParamMatching',
    kind: 'HTTP',
    upstream: 'httproute-query-param-matching.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-query-param-matching')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - queryParams:
      - name: animal
        value: whale
    backendRefs:
    - name: echo-v1
      port: 8080
  - matches:
    - queryParams:
      - name: animal
        value: dolphin
    backendRefs:
    - name: echo-v2
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /path1
      queryParams:
      - name: animal
        value: whale
    backendRefs:
    - name: echo-v1
      port: 8080
  - matches:
    - headers:
      - name: version
        value: one
      queryParams:
      - name: animal
        value: whale
    backendRefs:
    - name: echo-v2
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /path3
      queryParams:
      - name: animal
        value: shark
    - path:
        type: PathPrefix
        value: /path4
      headers:
      - name: version
        value: three
      queryParams:
      - name: animal
        value: kraken
    backendRefs:
    - name: echo-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /path5
    backendRefs:
    - name: echo-v1
      port: 8080
  - matches:
    - queryParams:
      - name: animal
        value: hydra
    backendRefs:
    - name: echo-v2
      port: 8080
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      path('/?animal=whale', 'echo-v1'),
      path('/?animal=dolphin', 'echo-v2'),
      path('/?animal=whale&otherparam=irrelevant', 'echo-v1'),
      path('/?animal=dolphin&color=yellow', 'echo-v2'),
      notFound('/?color=blue'),
      notFound('/?animal=dog'),
      notFound('/?animal=whaledolphin'),
      notFound('/'),
      path('/path1?animal=whale', 'echo-v1'),
      {
        kind: 'request',
        name: '/?animal=whale with version: one goes to echo-v2',
        host: 'echo',
        path: '/?animal=whale',
        headers: { version: 'one' },
        expect: { backend: 'echo-v2' },
      },
      path('/path3?animal=shark', 'echo-v1'),
      {
        kind: 'request',
        name: '/path4?animal=kraken with version: three goes to echo-v1',
        host: 'echo',
        path: '/path4?animal=kraken',
        headers: { version: 'three' },
        expect: { backend: 'echo-v1' },
      },
      notFound('/?animal=shark'),
      notFound('/path4?animal=kraken'),
      path('/path5?animal=hydra', 'echo-v1'),
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteRedirectHostAndStatus',
    kind: 'HTTP',
    upstream: 'httproute-redirect-host-and-status.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-redirect-host-and-status')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /hostname-redirect
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.org
  - matches:
    - path:
        type: PathPrefix
        value: /host-and-status
    filters:
    - type: RequestRedirect
      requestRedirect:
        statusCode: 301
        hostname: example.org
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      {
        kind: 'request',
        name: '/hostname-redirect: 302 to example.org',
        host: 'echo',
        path: '/hostname-redirect',
        expect: { status: 302, redirect: { host: 'example.org' } },
      },
      {
        kind: 'request',
        name: '/host-and-status: 301 to example.org',
        host: 'echo',
        path: '/host-and-status',
        expect: { status: 301, redirect: { host: 'example.org' } },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteRedirectPath',
    kind: 'HTTP',
    upstream: 'httproute-redirect-path.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-redirect-path')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /original-prefix
    filters:
    - type: RequestRedirect
      requestRedirect:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /replacement-prefix
  - matches:
    - path:
        type: PathPrefix
        value: /full
    filters:
    - type: RequestRedirect
      requestRedirect:
        path:
          type: ReplaceFullPath
          replaceFullPath: /full-path-replacement
  - matches:
    - path:
        type: PathPrefix
        value: /path-and-host
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.org
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /replacement-prefix
  - matches:
    - path:
        type: PathPrefix
        value: /path-and-status
    filters:
    - type: RequestRedirect
      requestRedirect:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /replacement-prefix
        statusCode: 301
  - matches:
    - path:
        type: PathPrefix
        value: /full-path-and-host
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.org
        path:
          type: ReplaceFullPath
          replaceFullPath: /replacement-full
  - matches:
    - path:
        type: PathPrefix
        value: /full-path-and-status
    filters:
    - type: RequestRedirect
      requestRedirect:
        path:
          type: ReplaceFullPath
          replaceFullPath: /replacement-full
        statusCode: 301
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      {
        kind: 'request',
        name: '/original-prefix/lemon: prefix replaced',
        host: 'echo',
        path: '/original-prefix/lemon',
        expect: { status: 302, redirect: { path: '/replacement-prefix/lemon' } },
      },
      {
        kind: 'request',
        name: '/full/path/original: full path replaced',
        host: 'echo',
        path: '/full/path/original',
        expect: { status: 302, redirect: { path: '/full-path-replacement' } },
      },
      {
        kind: 'request',
        name: '/path-and-host: prefix and host',
        host: 'echo',
        path: '/path-and-host',
        expect: { status: 302, redirect: { host: 'example.org', path: '/replacement-prefix' } },
      },
      {
        kind: 'request',
        name: '/path-and-status: prefix and 301',
        host: 'echo',
        path: '/path-and-status',
        expect: { status: 301, redirect: { path: '/replacement-prefix' } },
      },
      {
        kind: 'request',
        name: '/full-path-and-host: full path and host',
        host: 'echo',
        path: '/full-path-and-host',
        expect: { status: 302, redirect: { host: 'example.org', path: '/replacement-full' } },
      },
      {
        kind: 'request',
        name: '/full-path-and-status: full path and 301',
        host: 'echo',
        path: '/full-path-and-status',
        expect: { status: 301, redirect: { path: '/replacement-full' } },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteRedirectPort',
    kind: 'HTTP',
    upstream: 'httproute-redirect-port.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-redirect-port')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /port
    filters:
    - type: RequestRedirect
      requestRedirect:
        port: 8083
  - matches:
    - path:
        type: PathPrefix
        value: /port-and-host
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.org
        port: 8083
  - matches:
    - path:
        type: PathPrefix
        value: /port-and-status
    filters:
    - type: RequestRedirect
      requestRedirect:
        port: 8083
        statusCode: 301
  - matches:
    - path:
        type: PathPrefix
        value: /port-and-host-and-status
    filters:
    - type: RequestRedirect
      requestRedirect:
        port: 8083
        hostname: example.org
        statusCode: 302
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      { kind: 'request', name: '/port: port 8083', host: 'echo', path: '/port', expect: { status: 302, redirect: { port: '8083' } } },
      {
        kind: 'request',
        name: '/port-and-host: host and port',
        host: 'echo',
        path: '/port-and-host',
        expect: { status: 302, redirect: { host: 'example.org', port: '8083' } },
      },
      { kind: 'request', name: '/port-and-status: port and 301', host: 'echo', path: '/port-and-status', expect: { status: 301, redirect: { port: '8083' } } },
      {
        kind: 'request',
        name: '/port-and-host-and-status: port, host and 302',
        host: 'echo',
        path: '/port-and-host-and-status',
        expect: { status: 302, redirect: { port: '8083', host: 'example.org' } },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteSchemeRedirect',
    kind: 'HTTP',
    upstream: 'httproute-redirect-scheme.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-redirect-scheme')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /scheme
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: "https"
  - matches:
    - path:
        type: PathPrefix
        value: /scheme-and-host
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.org
        scheme: "https"
  - matches:
    - path:
        type: PathPrefix
        value: /scheme-and-status
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: "https"
        statusCode: 301
  - matches:
    - path:
        type: PathPrefix
        value: /scheme-and-host-and-status
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: "https"
        statusCode: 302
        hostname: example.org
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      { kind: 'request', name: '/scheme: https', host: 'echo', path: '/scheme', expect: { status: 302, redirect: { scheme: 'https' } } },
      {
        kind: 'request',
        name: '/scheme-and-host: https and host',
        host: 'echo',
        path: '/scheme-and-host',
        expect: { status: 302, redirect: { host: 'example.org', scheme: 'https' } },
      },
      {
        kind: 'request',
        name: '/scheme-and-status: https and 301',
        host: 'echo',
        path: '/scheme-and-status',
        expect: { status: 301, redirect: { scheme: 'https' } },
      },
      {
        kind: 'request',
        name: '/scheme-and-host-and-status: https, host and 302',
        host: 'echo',
        path: '/scheme-and-host-and-status',
        expect: { status: 302, redirect: { scheme: 'https', host: 'example.org' } },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteRequestHeaderModifier',
    kind: 'HTTP',
    upstream: 'httproute-request-header-modifier.go',
    mesh: 'echo',
    routes: headerModifierRoutes('rule'),
    deviations: [NO_PARENT_PORT],
    checks: headerModifierChecks,
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteBackendRequestHeaderModifier',
    kind: 'HTTP',
    upstream: 'httproute-request-header-modifier.go (manifest httproute-request-header-modifier-backend.yaml)',
    mesh: 'echo',
    routes: headerModifierRoutes('backend'),
    deviations: [NO_PARENT_PORT],
    checks: headerModifierChecks,
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteRewritePath',
    kind: 'HTTP',
    upstream: 'httproute-rewrite-path.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-rewrite-path')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /prefix/one
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /one
    backendRefs:
    - name: echo-v1
      port: 80
  - matches:
    - path:
        type: PathPrefix
        value: /strip-prefix
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /
    backendRefs:
    - name: echo-v1
      port: 80
  - matches:
    - path:
        type: PathPrefix
        value: /full/one
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplaceFullPath
          replaceFullPath: /one
    backendRefs:
    - name: echo-v1
      port: 80
  - matches:
    - path:
        type: PathPrefix
        value: /full/rewrite-path-and-modify-headers
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplaceFullPath
          replaceFullPath: /test
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
        add:
        - name: X-Header-Add
          value: header-val-1
        - name: X-Header-Add-Append
          value: header-val-2
        remove:
        - X-Header-Remove
    backendRefs:
    - name: echo-v1
      port: 80
  - matches:
    - path:
        type: PathPrefix
        value: /prefix/rewrite-path-and-modify-headers
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /prefix
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
        add:
        - name: X-Header-Add
          value: header-val-1
        - name: X-Header-Add-Append
          value: header-val-2
        remove:
        - X-Header-Remove
    backendRefs:
    - name: echo-v1
      port: 80
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      { kind: 'request', name: '/prefix/one/two → /one/two', host: 'echo', path: '/prefix/one/two', expect: { path: '/one/two', backend: 'echo-v1' } },
      { kind: 'request', name: '/strip-prefix/three → /three', host: 'echo', path: '/strip-prefix/three', expect: { path: '/three', backend: 'echo-v1' } },
      { kind: 'request', name: '/strip-prefix → /', host: 'echo', path: '/strip-prefix', expect: { path: '/', backend: 'echo-v1' } },
      { kind: 'request', name: '/full/one/two → /one', host: 'echo', path: '/full/one/two', expect: { path: '/one', backend: 'echo-v1' } },
      {
        kind: 'request',
        name: '/full/rewrite-path-and-modify-headers/test → /test, headers modified',
        host: 'echo',
        path: '/full/rewrite-path-and-modify-headers/test',
        headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
        expect: {
          path: '/test',
          requestHeaders: { 'X-Header-Add': 'header-val-1', 'X-Header-Add-Append': 'append-val-1,header-val-2', 'X-Header-Set': 'set-overwrites-values' },
          absentRequestHeaders: ['X-Header-Remove'],
          backend: 'echo-v1',
        },
      },
      {
        kind: 'request',
        name: '/prefix/rewrite-path-and-modify-headers/one → /prefix/one, headers modified',
        host: 'echo',
        path: '/prefix/rewrite-path-and-modify-headers/one',
        headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
        expect: {
          path: '/prefix/one',
          requestHeaders: { 'X-Header-Add': 'header-val-1', 'X-Header-Add-Append': 'append-val-1,header-val-2', 'X-Header-Set': 'set-overwrites-values' },
          absentRequestHeaders: ['X-Header-Remove'],
          backend: 'echo-v1',
        },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteSimpleSameNamespace',
    kind: 'HTTP',
    upstream: 'httproute-simple-same-namespace.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('gateway-conformance-mesh-test')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - backendRefs:
    - name: echo-v1
      port: 8080
`,
    deviations: [NO_PARENT_PORT],
    checks: [{ kind: 'request', name: 'Simple HTTP request should reach infra-backend', host: 'echo', path: '/', expect: { status: 200, backend: 'echo-v1' } }],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshHTTPRouteWeight',
    kind: 'HTTP',
    upstream: 'httproute-weight.go',
    mesh: 'echo',
    routes: `${ROUTE}
${meta('mesh-weighted-backends')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - backendRefs:
    - name: echo-v1
      port: 8080
      weight: 70
    - name: echo-v2
      port: 8080
      weight: 30
`,
    deviations: [NO_PARENT_PORT],
    checks: [
      { kind: 'request', name: 'a request succeeds', host: 'echo', path: '/', expect: { status: 200 } },
      {
        kind: 'weights',
        name: 'Requests should have a distribution that matches the weight',
        protocol: 'http',
        host: 'echo',
        weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshGRPCRouteRequestHeaderModifier',
    kind: 'GRPC',
    upstream: 'grpcroute-request-header-modifier.go',
    mesh: 'echo',
    routes: `${GRPC_ROUTE}
${meta('grpc-request-header-modifier')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - matches:
    - headers:
      - name: x-test-case
        value: set
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-header-set
          value: set-overwrites-values
    backendRefs:
    - name: echo-v1
      port: 7070
  - matches:
    - headers:
      - name: x-test-case
        value: add
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add:
        - name: x-header-add
          value: add-appends-values
    backendRefs:
    - name: echo-v1
      port: 7070
  - matches:
    - headers:
      - name: x-test-case
        value: remove
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        remove:
        - x-header-remove
    backendRefs:
    - name: echo-v1
      port: 7070
  - matches:
    - headers:
      - name: x-test-case
        value: multi
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-header-set-1
          value: header-set-1
        - name: x-header-set-2
          value: header-set-2
        add:
        - name: x-header-add-1
          value: header-add-1
        - name: x-header-add-2
          value: header-add-2
        remove:
        - x-header-remove-1
        - x-header-remove-2
    backendRefs:
    - name: echo-v2
      port: 7070
`,
    deviations: ['parentRefs[].port: 7070 left out (the echo service has one port on main, serving HTTP/1.1, h2c and gRPC alike)'],
    checks: [
      {
        kind: 'request',
        name: 'Set headers -- overwrites existing header',
        protocol: 'grpc',
        host: 'echo:7070',
        headers: { 'x-test-case': 'set', 'some-other-header': 'this-header-should-be-set', 'x-header-set': 'this-value-should-be-overwritten' },
        expect: {
          status: 200,
          requestHeaders: { 'x-test-case': 'set', 'some-other-header': 'this-header-should-be-set', 'x-header-set': 'set-overwrites-values' },
          backend: 'echo-v1',
        },
      },
      {
        kind: 'request',
        name: 'Add headers -- appends to existing header',
        protocol: 'grpc',
        host: 'echo:7070',
        headers: { 'x-test-case': 'add', 'x-header-add': 'this-value-should-be-appended' },
        expect: {
          status: 200,
          requestHeaders: { 'x-test-case': 'add', 'x-header-add': 'this-value-should-be-appended,add-appends-values' },
          backend: 'echo-v1',
        },
      },
      {
        kind: 'request',
        name: 'Remove headers -- removes headers',
        protocol: 'grpc',
        host: 'echo:7070',
        headers: { 'x-test-case': 'remove', 'x-header-remove': 'this-should-be-removed' },
        expect: { status: 200, requestHeaders: { 'x-test-case': 'remove' }, absentRequestHeaders: ['x-header-remove'], backend: 'echo-v1' },
      },
      {
        kind: 'request',
        name: 'Multiple operations -- set, add, and remove headers',
        protocol: 'grpc',
        host: 'echo:7070',
        headers: { 'x-test-case': 'multi', 'x-header-set-2': 'set-header-2', 'x-header-add-2': 'add-header-2', 'x-header-remove-2': 'should-be-removed-2' },
        expect: {
          status: 200,
          requestHeaders: {
            'x-test-case': 'multi',
            'x-header-set-1': 'header-set-1',
            'x-header-set-2': 'header-set-2',
            'x-header-add-1': 'header-add-1',
            'x-header-add-2': 'add-header-2,header-add-2',
          },
          absentRequestHeaders: ['x-header-remove-1', 'x-header-remove-2'],
          backend: 'echo-v2',
        },
      },
    ],
    outcome: { status: 'pass' },
  },
  {
    name: 'MeshGRPCRouteWeight',
    kind: 'GRPC',
    upstream: 'grpcroute-weight.go',
    mesh: 'echo',
    routes: `${GRPC_ROUTE}
${meta('mesh-grpc-weighted-backends')}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
  rules:
  - backendRefs:
    - name: echo-v1
      port: 7070
      weight: 70
    - name: echo-v2
      port: 7070
      weight: 30
    - name: echo-v3
      port: 7070
      weight: 0
`,
    deviations: ['parentRefs[].port: 7070 left out (the echo service has one port on main)'],
    checks: [
      { kind: 'request', name: 'a call succeeds', protocol: 'grpc', host: 'echo:7070', expect: { status: 200 } },
      {
        kind: 'weights',
        name: 'Requests should have a distribution that matches the weight',
        protocol: 'grpc',
        host: 'echo:7070',
        weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 },
      },
    ],
    outcome: { status: 'pass' },
  },
];

/** How many cases of `kind` the table has, and how many of them pass. */
export function tally(kind: 'HTTP' | 'GRPC', cases: readonly ConformanceCase[] = CASES): { pass: number; total: number } {
  const of = cases.filter((c) => c.kind === kind);
  return { pass: of.filter((c) => c.outcome.status === 'pass').length, total: of.length };
}
