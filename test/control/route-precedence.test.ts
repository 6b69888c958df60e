import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileRoutes } from '../../src/control/compile/routes.js';
import { route } from './helpers.js';

const to = (name: string) => [{ name }];
const order = (entries: ReturnType<typeof compileRoutes>) => entries.map((e) => e.backends[0]!.backend);

test('an Exact path comes before any PathPrefix, even a longer one', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ path: { type: 'PathPrefix', value: '/api/v1/items' } }], backendRefs: to('prefix') },
      { matches: [{ path: { type: 'Exact', value: '/a' } }], backendRefs: to('exact') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['exact', 'prefix']);
});

test('a longer PathPrefix comes before a shorter one', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: to('root') },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: to('api') },
      { matches: [{ path: { type: 'PathPrefix', value: '/api/admin' } }], backendRefs: to('admin') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['admin', 'api', 'root']);
});

test('with equal paths, a match with a method comes before one without', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: to('any') },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'POST' }], backendRefs: to('post') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['post', 'any']);
});

test('with equal paths and methods, more header matches come first', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ headers: [{ name: 'x-a', value: '1' }] }], backendRefs: to('one') },
      {
        matches: [
          {
            headers: [
              { name: 'x-a', value: '1' },
              { name: 'x-b', value: '2' },
            ],
          },
        ],
        backendRefs: to('two'),
      },
      { matches: [{}], backendRefs: to('none') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['two', 'one', 'none']);
});

test('path outranks method, and method outranks headers', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ path: { type: 'PathPrefix', value: '/a' }, headers: [{ name: 'x', value: '1' }] }], backendRefs: to('headers') },
      { matches: [{ path: { type: 'PathPrefix', value: '/a' }, method: 'GET' }], backendRefs: to('method') },
      { matches: [{ path: { type: 'PathPrefix', value: '/ab' } }], backendRefs: to('longer') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['longer', 'method', 'headers']);
});

test('between equal matches of different routes, the older creationTimestamp wins', () => {
  const entries = compileRoutes('svc', [
    route('young', 'svc', [{ backendRefs: to('young') }], { creationTimestamp: '2024-05-02T00:00:00Z' }),
    route('old', 'svc', [{ backendRefs: to('old') }], { creationTimestamp: '2024-05-01T00:00:00Z' }),
  ]);
  assert.deepEqual(order(entries), ['old', 'young']);
});

test('without timestamps, the route earlier in the files wins', () => {
  const entries = compileRoutes('svc', [route('zeta', 'svc', [{ backendRefs: to('first') }]), route('alpha', 'svc', [{ backendRefs: to('second') }])]);
  assert.deepEqual(order(entries), ['first', 'second']);
});

// Routes of two namespaces never share one table since namespaces (a caller gets the
// producer routes, in the Service's namespace, or its own consumer routes: GEP-1294), so
// the tie-break reads the names of one namespace.
test('with equal timestamps, the route name decides alphabetically (namespace first)', () => {
  const at = { creationTimestamp: '2024-05-01T00:00:00Z' };
  const entries = compileRoutes('svc.other', [
    route('b', 'svc', [{ backendRefs: to('b') }], { ...at, namespace: 'other' }),
    route('c', 'svc', [{ backendRefs: to('c') }], { ...at, namespace: 'other' }),
    route('a', 'svc', [{ backendRefs: to('a') }], { ...at, namespace: 'other' }),
  ]);
  assert.deepEqual(order(entries), ['a.other', 'b.other', 'c.other']);
});

test('within a route, rule order and then match order break the remaining ties', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ path: { type: 'PathPrefix', value: '/x' } }, { path: { type: 'PathPrefix', value: '/y' } }], backendRefs: to('rule0') },
      { matches: [{ path: { type: 'PathPrefix', value: '/z' } }], backendRefs: to('rule1') },
    ]),
  ]);
  assert.deepEqual(
    entries.map((e) => [e.name, e.match.path?.value]),
    [
      ['default/r/rule/0', '/x'],
      ['default/r/rule/0', '/y'],
      ['default/r/rule/1', '/z'],
    ],
  );
});

test('a rule without matches matches every path; defaults are filled in', () => {
  const entries = compileRoutes('svc.shop', [
    route(
      'r',
      'svc',
      [
        { backendRefs: [{ name: 'svc-v1', weight: 90 }, { name: 'svc-v2' }] },
        { matches: [{ method: 'get', headers: [{ name: 'X-Canary', value: 'yes' }] }], backendRefs: to('svc-v2') },
      ],
      { namespace: 'shop' },
    ),
  ]);
  // The route is in namespace shop, so its parentRef and backendRefs are too: it routes
  // service svc.shop, and its backends are keyed in that namespace (src/api/names.ts).
  assert.deepEqual(compileRoutes('svc', [route('r', 'svc', [{ backendRefs: to('x') }], { namespace: 'shop' })]), []);
  assert.deepEqual(entries, [
    {
      name: 'shop/r/rule/1',
      match: { path: { type: 'PathPrefix', value: '/' }, method: 'GET', headers: [{ name: 'x-canary', type: 'Exact', value: 'yes' }] },
      backends: [{ backend: 'svc-v2.shop', weight: 1 }],
    },
    {
      name: 'shop/r/rule/0',
      match: { path: { type: 'PathPrefix', value: '/' } },
      backends: [
        { backend: 'svc-v1.shop', weight: 90 },
        { backend: 'svc-v2.shop', weight: 1 },
      ],
    },
  ]);
});

test('only routes whose parentRefs name the service (as a Service) apply', () => {
  const other = route('other', 'elsewhere', [{ backendRefs: to('elsewhere') }]);
  const gatewayParent = route('gw', 'svc', [{ backendRefs: to('gw') }]);
  const gw = {
    ...gatewayParent,
    resource: {
      ...gatewayParent.resource,
      spec: { ...gatewayParent.resource.spec, parentRefs: [{ name: 'svc', kind: 'Gateway', group: 'gateway.networking.k8s.io' }] },
    },
  };
  const mine = route('mine', 'svc', [{ backendRefs: to('svc') }]);
  assert.deepEqual(order(compileRoutes('svc', [other, gw, mine])), ['svc']);
  assert.deepEqual(compileRoutes('nobody', [other, gw, mine]), []);
});

test('with equal paths, methods and headers, more query param matches come first', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ queryParams: [{ name: 'a', value: '1' }] }], backendRefs: to('one') },
      {
        matches: [
          {
            queryParams: [
              { name: 'a', value: '1' },
              { name: 'b', value: '2' },
            ],
          },
        ],
        backendRefs: to('two'),
      },
      { matches: [{ headers: [{ name: 'x', value: '1' }] }], backendRefs: to('header') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['header', 'two', 'one']);
});

test('Exact, then RegularExpression, then PathPrefix paths; longer regexes first', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ path: { type: 'PathPrefix', value: '/items/long/prefix' } }], backendRefs: to('prefix') },
      { matches: [{ path: { type: 'RegularExpression', value: '/i.*' } }], backendRefs: to('short-regex') },
      { matches: [{ path: { type: 'RegularExpression', value: '/items/[0-9]+' } }], backendRefs: to('long-regex') },
      { matches: [{ path: { type: 'Exact', value: '/x' } }], backendRefs: to('exact') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['exact', 'long-regex', 'short-regex', 'prefix']);
});

test('hostnames come first: exact names (longest first), then wildcards (longest first), then routes without hostnames', () => {
  const withHosts = (name: string, hostnames: string[], rules: Parameters<typeof route>[2]) => {
    const r = route(name, 'svc', rules);
    return { ...r, resource: { ...r.resource, spec: { ...r.resource.spec, hostnames } } };
  };
  const entries = compileRoutes('svc', [
    route('any', 'svc', [{ matches: [{ path: { type: 'Exact', value: '/a' } }], backendRefs: to('any-host') }]),
    withHosts('wild', ['*.example.com', '*.b.example.com'], [{ backendRefs: to('wild') }]),
    withHosts('exact', ['a.example.com', 'svc'], [{ backendRefs: to('exact') }]),
  ]);
  assert.deepEqual(
    entries.map((e) => [e.hostname, e.backends[0]!.backend]),
    [
      ['a.example.com', 'exact'],
      ['svc', 'exact'],
      ['*.b.example.com', 'wild'],
      ['*.example.com', 'wild'],
      [undefined, 'any-host'],
    ],
  );
});

test('GRPCRoute: entries before HTTPRoute ones, by service characters, method characters, then headers; matches become POST paths', () => {
  const grpc = (name: string, rules: unknown[]) => ({
    file: 'routes.yaml',
    resource: { kind: 'GRPCRoute' as const, metadata: { name }, spec: { parentRefs: [{ name: 'svc' }], rules: rules as never } },
  });
  const entries = compileRoutes('svc', [
    route('http', 'svc', [{ matches: [{ path: { type: 'Exact', value: '/shop.Cart/Get' } }], backendRefs: to('http') }]),
    grpc('g', [
      { matches: [{ method: { service: 'shop.Cart' } }], backendRefs: to('service') },
      { matches: [{ method: { service: 'shop.Cart', method: 'Get' } }], backendRefs: to('both') },
      { matches: [{ method: { method: 'Get' }, headers: [{ name: 'x', value: '1' }] }], backendRefs: to('method') },
      { backendRefs: to('all-grpc') },
    ]),
  ]);
  assert.deepEqual(order(entries), ['both', 'service', 'method', 'all-grpc', 'http']);
  assert.deepEqual(entries[0]!.match, {
    path: { type: 'Exact', value: '/shop.Cart/Get' },
    method: 'POST',
    headers: [{ name: 'content-type', type: 'RegularExpression', value: 'application/grpc(?:[+;].*)?' }],
  });
  assert.deepEqual(entries[2]!.match.path, { type: 'RegularExpression', value: '/[^/]+/Get' });
});

test('a tcp service takes the backends of its oldest TCPRoute and ignores HTTP routes', () => {
  const tcp = (name: string, backends: { name: string; weight: number }[], creationTimestamp?: string) => ({
    file: 'routes.yaml',
    resource: { kind: 'TCPRoute' as const, metadata: { name, creationTimestamp }, spec: { parentRefs: [{ name: 'pg' }], rules: [{ backendRefs: backends }] } },
  });
  const entries = compileRoutes(
    'pg',
    [
      route('http', 'pg', [{ backendRefs: to('pg') }]),
      tcp('new', [{ name: 'pg-v3', weight: 1 }], '2024-06-01T00:00:00Z'),
      tcp(
        'old',
        [
          { name: 'pg-v1', weight: 90 },
          { name: 'pg-v2', weight: 10 },
        ],
        '2024-05-01T00:00:00Z',
      ),
    ],
    'tcp',
  );
  assert.deepEqual(entries, [
    {
      name: 'default/old/rule/0',
      match: {},
      backends: [
        { backend: 'pg-v1', weight: 90 },
        { backend: 'pg-v2', weight: 10 },
      ],
    },
  ]);
  assert.deepEqual(compileRoutes('pg', [tcp('t', [{ name: 'pg', weight: 1 }])], 'http'), []);
});

test('filters are normalized: header names lower case, mirror fractions as percent, redirect status 302 by default', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      {
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }], remove: ['X-B'] } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'svc-v2' }, fraction: { numerator: 1, denominator: 8 } } },
          { type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } },
        ],
        backendRefs: [{ name: 'svc', filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'h.example' } }] }],
      },
    ]),
  ]);
  assert.deepEqual(entries[0]!.filters, [
    { type: 'RequestHeaderModifier', edits: { set: [{ name: 'x-a', value: '1' }], remove: ['x-b'] } },
    { type: 'RequestMirror', backend: 'svc-v2', percent: 12.5 },
    { type: 'RequestRedirect', statusCode: 302, path: { type: 'ReplacePrefixMatch', value: '/new' } },
  ]);
  assert.deepEqual(entries[0]!.backends, [{ backend: 'svc', weight: 1, filters: [{ type: 'URLRewrite', hostname: 'h.example' }] }]);
});
