// Namespaces in the compiler: which routes a caller gets (producer routes, or its own
// namespace's consumer routes: GEP-1294), backendRefs across namespaces with and without
// a ReferenceGrant, a real service that shares a version backend's name, and what the
// snapshot says about the proxy's namespace. Configs go through the real loader.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ProxyInfo } from '../../src/api/protocol.js';
import { compileSnapshot, type RoutableInstance } from '../../src/control/compile/compiler.js';
import { loadConfig, type MeshConfig } from '../../src/config/load.js';
import { FIXTURES, mesh, tempDir } from '../config/helpers.js';

const proxy = (service: string): ProxyInfo => ({
  id: `${service}-0`,
  service,
  version: 'default',
  kind: 'sidecar',
  admin: { host: '127.0.0.1', port: 1 },
  upstreams: [],
  pid: 1,
});

const instance = (id: string, service: string, version: string, port: number): RoutableInstance => ({
  id,
  service,
  version,
  inbound: { host: '127.0.0.1', port },
  status: 'healthy',
});

async function load(files: string[]): Promise<MeshConfig> {
  const r = await loadConfig(files);
  assert.deepEqual(r.problems, []);
  return r.config!;
}

describe('namespaces in snapshots', () => {
  let config: MeshConfig;
  const instances = [
    instance('echo.mesh-v1-0', 'echo.mesh', 'v1', 9001),
    instance('echo.mesh-v2-0', 'echo.mesh', 'v2', 9002),
    instance('echo-v1-0', 'echo-v1', 'default', 9003),
  ];
  before(async () => {
    config = await load([join(FIXTURES, 'namespaces/mesh.yaml')]);
  });

  it('gives a caller in the Service namespace the producer routes', () => {
    const s = compileSnapshot({ config, instances, proxy: proxy('a.mesh') });
    assert.equal(s.namespace, 'mesh');
    assert.deepEqual(Object.keys(s.upstreams), ['echo-v1', 'echo.mesh']);
    const echo = s.upstreams['echo.mesh']!;
    assert.deepEqual(
      echo.routes.map((r) => [r.name, r.backends]),
      [['mesh/echo-producer/rule/0', [{ backend: 'echo-v1.mesh', weight: 1 }]]],
    );
    assert.deepEqual(
      echo.backends['echo-v1.mesh']!.endpoints.map((e) => e.id),
      ['echo.mesh-v1-0'],
    );
  });

  it('gives a caller in the consumer namespace its consumer route instead, across the granted namespace', () => {
    const s = compileSnapshot({ config, instances, proxy: proxy('b.consumer') });
    assert.equal(s.namespace, 'consumer');
    const echo = s.upstreams['echo.mesh']!;
    assert.deepEqual(
      echo.routes.map((r) => r.name),
      ['consumer/echo-consumer/rule/0', 'consumer/echo-consumer/rule/1'],
    );
    // Granted by the ReferenceGrant in mesh: valid, with its endpoints.
    assert.deepEqual(echo.routes[1]!.backends, [{ backend: 'echo-v2.mesh', weight: 1 }]);
    assert.deepEqual(
      echo.backends['echo-v2.mesh']!.endpoints.map((e) => e.id),
      ['echo.mesh-v2-0'],
    );
    // No grant in default: the backendRef is invalid (its share gets 500), the route stays.
    const ungranted = echo.routes[0]!.backends[0]!;
    assert.equal(ungranted.backend, 'echo-v1');
    assert.equal(ungranted.invalid?.reason, 'RefNotPermitted');
    assert.match(ungranted.invalid?.message ?? '', /namespace default, and no ReferenceGrant there lets HTTPRoutes of namespace consumer reach it/);
  });

  it('leaves snapshots of a default-namespace caller without a namespace field', () => {
    const s = compileSnapshot({ config, instances, proxy: proxy('echo-v1') });
    assert.equal(s.namespace, undefined);
    assert.ok(s.meshServices?.includes('echo.mesh'));
    assert.ok(s.meshServices?.includes('echo-v1'));
  });

  describe('a real service named like a version backend', () => {
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    before(async () => {
      tmp = await tempDir();
    });
    after(() => tmp.cleanup());

    it('wins the name in backendRefs, and the version keeps its own backends elsewhere', async () => {
      const file = await tmp.write(
        'mesh.yaml',
        mesh(
          '    - name: echo\n      versions: [{ name: v1 }, { name: v2 }]\n    - name: echo-v1\n    - name: client\n      upstreams: [echo]\n',
          '  include: [r.yaml]\n',
        ),
      );
      await tmp.write(
        'r.yaml',
        'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: r }\nspec:\n  parentRefs: [{ name: echo }]\n  rules:\n    - backendRefs: [{ name: echo-v1 }, { name: echo-v2 }]\n',
      );
      const cfg = await load([file]);
      const s = compileSnapshot({
        config: cfg,
        instances: [
          instance('echo-v1-0', 'echo', 'v1', 9001),
          instance('echo-v2-0', 'echo', 'v2', 9002),
          instance('echo-v1-svc-0', 'echo-v1', 'default', 9003),
        ],
        proxy: proxy('client'),
      });
      const echo = s.upstreams.echo!;
      assert.deepEqual(
        echo.backends['echo-v1']!.endpoints.map((e) => e.id),
        ['echo-v1-svc-0'],
        'the Service echo-v1, not version v1 of echo',
      );
      assert.deepEqual(
        echo.backends['echo-v2']!.endpoints.map((e) => e.id),
        ['echo-v2-0'],
      );
    });
  });
});
