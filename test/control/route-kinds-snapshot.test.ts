// The snapshot a proxy gets for the new route kinds and filters: a tcp upstream
// carries its TCPRoute's weighted backends, and backends that only a RequestMirror
// names still come with their endpoints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileSnapshot, type RoutableInstance } from '../../src/control/compile/compiler.js';
import { config, route, service, sidecar } from './helpers.js';

const instances: RoutableInstance[] = [
  { id: 'postgres-v1-0', service: 'postgres', version: 'v1', status: 'healthy', inbound: { host: '127.0.0.1', port: 41001 } },
  { id: 'postgres-v2-0', service: 'postgres', version: 'v2', status: 'healthy', inbound: { host: '127.0.0.1', port: 41002 } },
  { id: 'shadow-0', service: 'shadow', version: 'default', status: 'healthy', inbound: { host: '127.0.0.1', port: 41003 } },
];

test('a tcp upstream gets its TCPRoute as one entry with the weighted backends, resolved', () => {
  const mesh = config(
    [service('backend', { upstreams: ['postgres'] }), service('postgres', { protocol: 'tcp', versions: ['v1', 'v2'] })],
    [
      {
        file: 'r.yaml',
        resource: {
          kind: 'TCPRoute',
          metadata: { name: 'pg' },
          spec: {
            parentRefs: [{ name: 'postgres' }],
            rules: [
              {
                backendRefs: [
                  { name: 'postgres-v1', weight: 90 },
                  { name: 'postgres-v2', weight: 10 },
                ],
              },
            ],
          },
        },
      },
    ],
  );
  const snap = compileSnapshot({ config: mesh, instances, proxy: sidecar('backend-0', 'backend') });
  const pg = snap.upstreams.postgres!;
  assert.deepEqual(pg.routes, [
    {
      name: 'default/pg/rule/0',
      match: {},
      backends: [
        { backend: 'postgres-v1', weight: 90 },
        { backend: 'postgres-v2', weight: 10 },
      ],
    },
  ]);
  assert.deepEqual(
    pg.backends['postgres-v2']!.endpoints.map((e) => e.id),
    ['postgres-v2-0'],
  );
});

test('a backend named only by a RequestMirror is in the snapshot with its endpoints', () => {
  const mesh = config(
    [service('frontend', { upstreams: ['backend'] }), service('backend'), service('shadow')],
    [
      route('mirror', 'backend', [
        {
          filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow' }, percent: 50 } }],
          backendRefs: [{ name: 'backend' }],
        },
      ]),
    ],
  );
  const snap = compileSnapshot({ config: mesh, instances, proxy: sidecar('frontend-0', 'frontend') });
  assert.deepEqual(
    snap.upstreams.backend!.backends.shadow!.endpoints.map((e) => e.id),
    ['shadow-0'],
  );
  assert.deepEqual(snap.upstreams.backend!.routes[0]!.filters, [{ type: 'RequestMirror', backend: 'shadow', percent: 50 }]);
});
