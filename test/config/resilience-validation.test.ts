// Validation and compilation of the resilience config: HTTPRoute rule timeouts and
// retry, FaultInjection, RetryPolicy and XBackendTrafficPolicy. Bad values are refused
// with the file, line, column and field path; good ones reach the proxies' snapshot.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { loadConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { mesh, problemAt, route, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let meshFile: string;
let routeFile: string;
before(async () => {
  tmp = await tempDir();
  meshFile = await tmp.write(
    'mesh.yaml',
    mesh(`    - name: web
      upstreams: [api]
    - name: api
`),
  );
  routeFile = await tmp.write(
    'route.yaml',
    route(
      'api',
      `  parentRefs: [{ name: api }]
  rules:
    - name: reads
      matches: [{ method: GET }]
      backendRefs: [{ name: api }]
      timeouts: { request: 2s, backendRequest: 500ms }
      retry: { codes: [503, 502], attempts: 2, backoff: 50ms }
    - backendRefs: [{ name: api }]
      retry: { codes: [503] }
`,
    ),
  );
});
after(() => tmp.cleanup());

let n = 0;
async function load(text: string) {
  const file = await tmp.write(`extra-${++n}.yaml`, text);
  return { file, result: await loadConfig([meshFile, routeFile, file]) };
}

const policy = (kind: string, spec: string, apiVersion = 'trellis.dev/v1alpha1') =>
  `apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata:\n  name: p${n}\nspec:\n${spec}`;

describe('rule timeouts and retry', () => {
  it('refuses negative attempts and unknown status codes, with line, column and path', async () => {
    const { file, result } = await load(
      route(
        'bad',
        `  parentRefs: [{ name: api }]
  rules:
    - backendRefs: [{ name: api }]
      retry: { codes: [503, 999], attempts: -1, backoff: soon }
`,
      ),
    );
    const attempts = problemAt(result, 'spec.rules[0].retry.attempts', file);
    assert.match(attempts.message, /^must be a number of retries from 0 to 10/);
    assert.equal(attempts.line, 9);
    assert.match(formatProblem(attempts), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:9:\\d+: spec\\.rules\\[0\\]\\.retry\\.attempts: `));
    assert.match(problemAt(result, 'spec.rules[0].retry.codes[1]', file).message, /an HTTP status code from 400 to 599/);
    assert.match(problemAt(result, 'spec.rules[0].retry.backoff', file).message, /Gateway API duration/);
  });

  it('refuses a backendRequest timeout longer than the request timeout', async () => {
    const { file, result } = await load(
      route(
        'slow',
        `  parentRefs: [{ name: api }]
  rules:
    - backendRefs: [{ name: api }]
      timeouts: { request: 1s, backendRequest: 2s }
`,
      ),
    );
    assert.match(problemAt(result, 'spec.rules[0].timeouts.backendRequest', file).message, /longer than timeouts.request/);
  });
});

describe('policies', () => {
  it('refuses a percent out of 0-100', async () => {
    const { file, result } = await load(
      policy(
        'FaultInjection',
        `  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }]
  delay: { fixedDelay: 1s, percent: 150 }
`,
      ),
    );
    assert.match(problemAt(result, 'spec.delay.percent', file).message, /a percentage from 0 to 100/);
  });

  it('refuses an abort with both an HTTP and a gRPC status', async () => {
    const { file, result } = await load(
      policy(
        'FaultInjection',
        `  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }]
  delay: { fixedDelay: 1s, percent: 50 }
  abort: { httpStatus: 503, grpcStatus: UNAVAILABLE, percent: 10 }
`,
      ),
    );
    const both = problemAt(result, 'spec.abort.grpcStatus', file);
    assert.match(both.message, /httpStatus or grpcStatus, not both/);
    assert.equal(both.line, 8);
  });

  it('refuses targets that do not exist: a route, a rule name, a service', async () => {
    const { file, result } = await load(
      policy(
        'FaultInjection',
        `  targetRefs:
    - { group: gateway.networking.k8s.io, kind: HTTPRoute, name: apy }
    - { group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: writes }
    - { group: "", kind: Service, name: ghost }
  abort: { httpStatus: 500, percent: 1 }
`,
      ),
    );
    const route = problemAt(result, 'spec.targetRefs[0].name', file);
    assert.match(route.message, /names HTTPRoute "apy", which does not exist.*did you mean "api"/);
    assert.equal(route.line, 7);
    assert.match(
      problemAt(result, 'spec.targetRefs[1].sectionName', file).message,
      /names rule "writes", which HTTPRoute "api" does not have \(named rules: reads/,
    );
    assert.match(problemAt(result, 'spec.targetRefs[2].name', file).message, /names service "ghost", which is not in the mesh/);
  });

  it('refuses unknown fields in a policy', async () => {
    const { file, result } = await load(
      policy(
        'RetryPolicy',
        `  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }]
  retryPost: true
`,
      ),
    );
    assert.match(problemAt(result, 'spec.retryPost', file).message, /^unknown field "retryPost"/);
  });
});

describe('compiled into the snapshot', () => {
  it('puts timeouts, retry, faults and the budget where the proxy reads them', async () => {
    const { result } = await load(`${policy(
      'FaultInjection',
      `  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api, sectionName: reads }]
  abort: { grpcStatus: UNAVAILABLE, percent: 5 }
`,
    )}
---
${policy(
  'FaultInjection',
  `  targetRefs: [{ group: "", kind: Service, name: api }]
  delay: { fixedDelay: 1m30s, percent: 1 }
`,
)}
---
${policy(
  'RetryPolicy',
  `  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }]
  retryNonIdempotent: true
  maxBufferedBodyBytes: 1024
`,
)}
---
${policy(
  'XBackendTrafficPolicy',
  `  targetRefs: [{ group: "", kind: Service, name: api }]
  retryConstraint:
    budget: { percent: 30, interval: 20s }
    minRetryRate: { count: 5 }
`,
  'gateway.networking.x-k8s.io/v1alpha1',
)}`);
    assert.deepEqual(result.problems, []);
    const snap = compileSnapshot({
      config: result.config!,
      instances: [],
      proxy: { id: 'web-0', service: 'web', version: 'default', kind: 'sidecar', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
    });
    const api = snap.upstreams.api!;
    const reads = api.routes.find((r) => r.name === 'default/api/rule/0')!;
    assert.deepEqual(reads.timeouts, { requestMs: 2000, backendRequestMs: 500 });
    assert.deepEqual(reads.retry, { codes: [502, 503], attempts: 2, backoffMs: 50, nonIdempotent: true, maxBodyBytes: 1024 });
    assert.deepEqual(reads.fault, { policy: 'default/p6', abort: { grpcStatus: 14, percent: 5 } });
    const other = api.routes.find((r) => r.name === 'default/api/rule/1')!;
    assert.equal(other.timeouts, undefined);
    assert.deepEqual(other.retry, { codes: [503], attempts: 1, backoffMs: 25, nonIdempotent: true, maxBodyBytes: 1024 });
    assert.equal(other.fault, undefined, 'the rule-scoped fault stays on its rule');
    assert.deepEqual(api.fault, { policy: 'default/p6', delay: { ms: 90_000, percent: 1 } });
    assert.deepEqual(api.retryBudget, { percent: 30, windowMs: 20_000, minRetries: 5, minIntervalMs: 1000 });
  });
});
