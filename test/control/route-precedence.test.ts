import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileRoutes } from '../../src/control/routes.js';
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
      { matches: [{ headers: [{ name: 'x-a', value: '1' }, { name: 'x-b', value: '2' }] }], backendRefs: to('two') },
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
  const entries = compileRoutes('svc', [
    route('zeta', 'svc', [{ backendRefs: to('first') }]),
    route('alpha', 'svc', [{ backendRefs: to('second') }]),
  ]);
  assert.deepEqual(order(entries), ['first', 'second']);
});

test('with equal timestamps, the route name decides alphabetically (namespace first)', () => {
  const at = { creationTimestamp: '2024-05-01T00:00:00Z' };
  const entries = compileRoutes('svc', [
    route('b', 'svc', [{ backendRefs: to('default/b') }], at),
    route('a', 'svc', [{ backendRefs: to('other/a') }], { ...at, namespace: 'other' }),
    route('a', 'svc', [{ backendRefs: to('default/a') }], at),
  ]);
  assert.deepEqual(order(entries), ['default/a', 'default/b', 'other/a']);
});

test('within a route, rule order and then match order break the remaining ties', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { matches: [{ path: { type: 'PathPrefix', value: '/x' } }, { path: { type: 'PathPrefix', value: '/y' } }], backendRefs: to('rule0') },
      { matches: [{ path: { type: 'PathPrefix', value: '/z' } }], backendRefs: to('rule1') },
    ]),
  ]);
  assert.deepEqual(entries.map((e) => [e.name, e.match.path?.value]), [
    ['default/r/rule/0', '/x'],
    ['default/r/rule/0', '/y'],
    ['default/r/rule/1', '/z'],
  ]);
});

test('a rule without matches matches every path; defaults are filled in', () => {
  const entries = compileRoutes('svc', [
    route('r', 'svc', [
      { backendRefs: [{ name: 'svc-v1', weight: 90 }, { name: 'svc-v2' }] },
      { matches: [{ method: 'get', headers: [{ name: 'X-Canary', value: 'yes' }] }], backendRefs: to('svc-v2') },
    ], { namespace: 'shop' }),
  ]);
  assert.deepEqual(entries, [
    {
      name: 'shop/r/rule/1',
      match: { path: { type: 'PathPrefix', value: '/' }, method: 'GET', headers: [{ name: 'x-canary', type: 'Exact', value: 'yes' }] },
      backends: [{ backend: 'svc-v2', weight: 1 }],
    },
    {
      name: 'shop/r/rule/0',
      match: { path: { type: 'PathPrefix', value: '/' } },
      backends: [{ backend: 'svc-v1', weight: 90 }, { backend: 'svc-v2', weight: 1 }],
    },
  ]);
});

test('only routes whose parentRefs name the service (as a Service) apply', () => {
  const other = route('other', 'elsewhere', [{ backendRefs: to('elsewhere') }]);
  const gatewayParent = route('gw', 'svc', [{ backendRefs: to('gw') }]);
  const gw = { ...gatewayParent, resource: { ...gatewayParent.resource, spec: { ...gatewayParent.resource.spec, parentRefs: [{ name: 'svc', kind: 'Gateway', group: 'gateway.networking.k8s.io' }] } } };
  const mine = route('mine', 'svc', [{ backendRefs: to('svc') }]);
  assert.deepEqual(order(compileRoutes('svc', [other, gw, mine])), ['svc']);
  assert.deepEqual(compileRoutes('nobody', [other, gw, mine]), []);
});
