// Validation and compilation of the BackendPolicy kind: the balancer, the affinity key,
// outlier detection and the panic threshold of a Service or one version of it. Bad
// values are refused with file, line, column and field path; good ones reach the
// snapshot with durations in ms and Envoy's defaults filled in.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { DEFAULT_OUTLIER_DETECTION } from '../../src/api/protocol.js';
import { loadConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { mesh, problemAt, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let meshFile: string;
before(async () => {
  tmp = await tempDir();
  meshFile = await tmp.write(
    'mesh.yaml',
    mesh(`    - name: web
      upstreams: [api]
    - name: api
      versions: [{ name: v1 }, { name: v2 }]
`),
  );
});
after(() => tmp.cleanup());

let n = 0;
async function load(spec: string) {
  const file = await tmp.write(`policy-${++n}.yaml`, `apiVersion: trellis.dev/v1alpha1\nkind: BackendPolicy\nmetadata:\n  name: p${n}\nspec:\n${spec}`);
  return { file, result: await loadConfig([meshFile, file]) };
}

const toApi = '  targetRefs: [{ group: "", kind: Service, name: api }]\n';

describe('BackendPolicy validation', () => {
  it('refuses an unknown balancer with line, column and path', async () => {
    const { file, result } = await load(`${toApi}  loadBalancer: { type: Fastest }\n`);
    const p = problemAt(result, 'spec.loadBalancer.type', file);
    assert.match(p.message, /PeakEWMA, LeastRequest, RoundRobin, Random, RingHash, Maglev/);
    assert.equal(p.line, 7);
    assert.match(formatProblem(p), /:7:\d+: spec\.loadBalancer\.type: /);
  });

  it('refuses unknown fields, including circuit-breaker and failover fields it does not have', async () => {
    const { file, result } = await load(`${toApi}  outlierDetection: { consecutive5xxErrors: 3 }\n`);
    assert.match(problemAt(result, 'spec.outlierDetection.consecutive5xxErrors', file).message, /^unknown field "consecutive5xxErrors"/);
  });

  it('refuses hashOn with two keys, or on a balancer that does not hash', async () => {
    const two = await load(`${toApi}  loadBalancer: { type: RingHash, hashOn: { header: x-user, cookie: session } }\n`);
    assert.match(problemAt(two.result, 'spec.loadBalancer.hashOn', two.file).message, /exactly one of header, cookie or source \(has header and cookie\)/);
    const ewma = await load(`${toApi}  loadBalancer: { hashOn: { header: x-user } }\n`);
    assert.match(problemAt(ewma.result, 'spec.loadBalancer.hashOn', ewma.file).message, /RingHash and Maglev only; type is PeakEWMA/);
  });

  it('refuses a version the service does not have, and outlier detection on one version', async () => {
    const ghost = await load('  targetRefs: [{ group: "", kind: Service, name: api, sectionName: v3 }]\n');
    assert.match(
      problemAt(ghost.result, 'spec.targetRefs[0].sectionName', ghost.file).message,
      /names version "v3", which service "api" does not have \(versions: v1, v2\)/,
    );
    const od = await load('  targetRefs: [{ group: "", kind: Service, name: api, sectionName: v1 }]\n  outlierDetection: { consecutive5xx: 3 }\n');
    assert.match(problemAt(od.result, 'spec.outlierDetection', od.file).message, /per service/);
    const cb = await load('  targetRefs: [{ group: "", kind: Service, name: api, sectionName: v1 }]\n  circuitBreaker: { maxRequests: 3 }\n');
    assert.match(problemAt(cb.result, 'spec.circuitBreaker', cb.file).message, /per service/);
  });

  it('refuses a route target and a base ejection time over the maximum', async () => {
    const { file, result } = await load(`  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }]
  outlierDetection: { baseEjectionTime: 10m, maxEjectionTime: 5m }
`);
    assert.match(problemAt(result, 'spec.targetRefs[0].kind', file).message, /a BackendPolicy targets a Service/);
    assert.match(problemAt(result, 'spec.outlierDetection.baseEjectionTime', file).message, /longer than maxEjectionTime/);
  });
});

describe('BackendPolicy failover', () => {
  it('refuses a failover version the service does not have', async () => {
    const { file, result } = await load(`${toApi}  failover: { version: v9 }\n`);
    assert.match(problemAt(result, 'spec.failover.version', file).message, /names version "v9", which service "api" does not have \(versions: v1, v2\)/);
  });
});

describe('BackendPolicy compiled into the snapshot', () => {
  const compile = async (spec: string) => {
    const { result } = await load(spec);
    assert.deepEqual(result.problems, []);
    return compileSnapshot({
      config: result.config!,
      instances: [
        { id: 'api-v1-0', service: 'api', version: 'v1', inbound: { host: '127.0.0.1', port: 1001 }, status: 'healthy' },
        { id: 'api-v2-0', service: 'api', version: 'v2', inbound: { host: '127.0.0.1', port: 1002 }, status: 'healthy' },
      ],
      proxy: { id: 'web-0', service: 'web', version: 'default', kind: 'sidecar', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
    }).upstreams.api!;
  };

  it("fills in Envoy's outlier defaults around the fields given, durations in ms", async () => {
    const api = await compile(`${toApi}  loadBalancer: { type: RingHash, hashOn: { header: X-User } }
  outlierDetection: { consecutive5xx: 3, baseEjectionTime: 1s }
  circuitBreaker: { maxRequests: 100 }
  panicThreshold: 30
`);
    assert.deepEqual(api.balancing, {
      policy: `default/p${n}`,
      balancer: 'RingHash',
      panicThreshold: 30,
      hashOn: { header: 'x-user' },
      circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 100, maxRetries: 3 },
      outlierDetection: { ...DEFAULT_OUTLIER_DETECTION, consecutive5xx: 3, baseEjectionTimeMs: 1000 },
    });
    // Each version fails over to the whole service.
    assert.equal(api.backends['api-v1']!.failover, 'api');
  });

  it("turns outlier detection off when asked, and puts a version's policy on that version only", async () => {
    const api = await compile(`${toApi}  outlierDetection: { enabled: false }
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata:
  name: v2-only
spec:
  targetRefs: [{ group: "", kind: Service, name: api, sectionName: v2 }]
  loadBalancer: { type: RoundRobin }
`);
    assert.deepEqual(api.balancing, { policy: `default/p${n}`, balancer: 'PeakEWMA', panicThreshold: 50 });
    assert.deepEqual(api.backends['api-v2']!.balancing, { policy: 'default/v2-only', balancer: 'RoundRobin', panicThreshold: 50 });
    assert.equal(api.backends['api-v1']!.balancing, undefined);
  });

  it('fails a version over to the version its policy names, or nowhere when turned off', async () => {
    const api = await compile(`  targetRefs: [{ group: "", kind: Service, name: api, sectionName: v1 }]
  failover: { version: v2 }
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata:
  name: no-failover
spec:
  targetRefs: [{ group: "", kind: Service, name: api }]
  failover: { enabled: false }
`);
    assert.equal(api.backends['api-v1']!.failover, 'api-v2');
    assert.equal(api.backends['api-v2']!.failover, undefined);
  });
});
