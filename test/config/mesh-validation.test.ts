// Validation of the Mesh kind: schema problems (unknown fields, bad values, the
// health-check shapes) and the cross-field checks (names, upstreams, ports), each
// reported at the right file, field path and line.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { mesh, problemAt, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  tmp = await tempDir();
});
after(() => tmp.cleanup());

let n = 0;
/** Loads a mesh with these services (written to its own file) and returns result and file. */
async function load(services: string, extra = '') {
  const file = await tmp.write(`mesh-${++n}.yaml`, mesh(services, extra));
  return { file, result: await loadConfig([file]) };
}

describe('Mesh schema', () => {
  it('refuses unknown fields, naming the field and what is allowed', async () => {
    const { file, result } = await load('    - name: web\n      comand: node web.js\n');
    const p = problemAt(result, 'spec.services[0].comand', file);
    assert.match(p.message, /^unknown field "comand"; allowed here: name, protocol, command, /);
    assert.deepEqual([p.line, p.column], [8, 7]);
    assert.equal(result.config, undefined);
  });

  it('refuses unknown fields in metadata and at the top level', async () => {
    const file = await tmp.write(
      'meta.yaml',
      'apiVersion: trellis.dev/v1alpha1\nkind: Mesh\nmetadata:\n  name: x\n  uid: abc\nspec:\n  services: []\nstatus: {}\n',
    );
    const result = await loadConfig([file]);
    assert.match(problemAt(result, 'metadata.uid', file).message, /^unknown field "uid"; allowed here: name, namespace, labels, annotations$/);
    assert.match(problemAt(result, 'status', file).message, /^unknown field "status"/);
  });

  it('requires service names to be DNS labels', async () => {
    const { file, result } = await load('    - name: Web_1\n');
    const p = problemAt(result, 'spec.services[0].name', file);
    assert.match(p.message, /^must be a DNS label: .* \(got "Web_1"\)$/);
    assert.equal(p.line, 7);
  });

  it('reports a missing required field at its parent', async () => {
    const { file, result } = await load('    - command: node web.js\n');
    const p = problemAt(result, 'spec.services[0].name', file);
    assert.equal(p.message, 'is required');
    assert.equal(p.line, 7);
  });

  it('lists the allowed values of an enum', async () => {
    const { file, result } = await load('    - name: web\n      protocol: udp\n');
    assert.equal(problemAt(result, 'spec.services[0].protocol', file).message, 'must be one of http, http1, http2, grpc, tcp (got "udp")');
  });

  it('accepts the protocols that name the HTTP an app speaks, and keeps them', async () => {
    const { result } = await load('    - name: a\n      protocol: http1\n    - name: b\n      protocol: http2\n    - name: c\n      protocol: grpc\n');
    assert.deepEqual(result.problems, []);
    assert.deepEqual(
      result.config!.services.map((s) => s.protocol),
      ['http1', 'http2', 'grpc'],
    );
  });

  it('checks numbers: ports and replicas', async () => {
    const { file, result } = await load('    - name: web\n      port: 70000\n      replicas: -1\n      public: { port: "80" }\n');
    assert.equal(problemAt(result, 'spec.services[0].port', file).message, 'must be a TCP port number (1-65535) (got 70000)');
    assert.equal(problemAt(result, 'spec.services[0].replicas', file).message, 'must be at least 0 (got -1)');
    assert.equal(problemAt(result, 'spec.services[0].public.port', file).message, 'must be a TCP port number (1-65535) (got "80")');
  });

  it('checks durations', async () => {
    const { file, result } = await load('    - name: web\n      health: { tcp: {}, interval: 2 seconds, timeout: 100 }\n');
    assert.equal(problemAt(result, 'spec.services[0].health.interval', file).message, 'must be a duration such as 500ms, 2s, 1m or 1.5h (got "2 seconds")');
    assert.match(problemAt(result, 'spec.services[0].health.timeout', file).message, /^must be a duration .* \(got 100\)$/);
  });

  it('requires exactly one health probe', async () => {
    for (const health of ['{ http: { path: /h }, tcp: {} }', '{ interval: 1s }']) {
      const { file, result } = await load(`    - name: web\n      health: ${health}\n`);
      assert.match(
        problemAt(result, 'spec.services[0].health', file).message,
        /^must be a health check with exactly one probe, http: \{ path, status\? \} or tcp: \{\}/,
      );
    }
  });

  it('reports problems inside the probe the author chose', async () => {
    const { file, result } = await load('    - name: web\n      health: { http: { path: healthz, code: 200 } }\n');
    assert.equal(problemAt(result, 'spec.services[0].health.http.path', file).message, 'must be a path starting with / (got "healthz")');
    assert.match(problemAt(result, 'spec.services[0].health.http.code', file).message, /^unknown field "code"; allowed here: path, status$/);
  });

  it('accepts upstreams as names or { service, port } and reports typos inside the object form', async () => {
    const { file, result } = await load('    - name: web\n      upstreams: [api, { service: api, prot: 1 }, 5]\n    - name: api\n');
    assert.match(
      problemAt(result, 'spec.services[0].upstreams[1].prot', file).message,
      /^unknown field "prot"; allowed here: service, port, namespace, servicePort$/,
    );
    assert.equal(
      problemAt(result, 'spec.services[0].upstreams[2]', file).message,
      'must be a service name or name.namespace, or { service, namespace?, port?, servicePort? } (got 5)',
    );
  });

  it('renders odd keys in field paths with brackets', async () => {
    const { file, result } = await load('    - name: web\n      versions: [{ name: v1, labels: { app.kubernetes.io/name: 1 } }]\n');
    assert.equal(problemAt(result, 'spec.services[0].versions[0].labels["app.kubernetes.io/name"]', file).message, 'must be a string (got 1)');
  });
});

describe('Mesh cross-field checks', () => {
  it('refuses duplicate service names', async () => {
    const { file, result } = await load('    - name: web\n    - name: api\n    - name: web\n');
    const p = problemAt(result, 'spec.services[2].name', file);
    assert.equal(p.message, 'duplicate service name "web" (also spec.services[0]); service names must be unique');
    assert.equal(p.line, 9);
  });

  it('refuses an upstream that is not in the mesh, suggesting the closest name', async () => {
    const { file, result } = await load('    - name: frontend\n      upstreams: [bakend]\n    - name: backend\n');
    const p = problemAt(result, 'spec.services[0].upstreams[0]', file);
    assert.equal(p.message, 'names service "bakend", which is not in the mesh (services: frontend, backend); did you mean "backend"?');
    assert.deepEqual([p.line, p.column], [8, 19]);
  });

  it('takes a service that calls itself through the mesh (its own upstream), as a pod calls its own Service', async () => {
    const { result } = await load('    - name: web\n      upstreams: [{ service: web }]\n');
    assert.deepEqual(result.problems, []);
  });

  it('refuses a fixed port on a service with more than one instance', async () => {
    const { file, result } = await load('    - name: web\n      port: 8080\n      versions: [{ name: v1 }, { name: v2 }]\n');
    assert.match(problemAt(result, 'spec.services[0].port', file).message, /^fixes port 8080, but service "web" has 2 instances/);
    const ok = await load('    - name: web\n      port: 8080\n      replicas: 1\n');
    assert.deepEqual(ok.result.problems, []);
  });

  it('refuses the same fixed port twice: app and public ports across services', async () => {
    const { file, result } = await load('    - name: web\n      public: { port: 8080 }\n    - name: api\n      port: 8080\n');
    assert.equal(
      problemAt(result, 'spec.services[1].port', file).message,
      'port 8080 is already used by spec.services[0].public.port (public port of "web"); every fixed port must be different',
    );
  });

  it('refuses the same upstream port twice within one service, or on an app port', async () => {
    const { file, result } = await load(`    - name: web
      port: 7000
      upstreams: [{ service: api, port: 7001 }, { service: db, port: 7001 }]
    - name: api
      upstreams: [{ service: db, port: 7000 }]
    - name: db
`);
    assert.match(
      problemAt(result, 'spec.services[0].upstreams[1].port', file).message,
      /^port 7001 is already used by spec\.services\[0\]\.upstreams\[0\]\.port/,
    );
    assert.match(problemAt(result, 'spec.services[1].upstreams[0].port', file).message, /^port 7000 is already used by spec\.services\[0\]\.port/);
  });

  it('allows the same upstream port in different services', async () => {
    const { result } = await load(`    - name: web
      upstreams: [{ service: db, port: 7001 }]
    - name: api
      upstreams: [{ service: db, port: 7001 }]
    - name: db
`);
    assert.deepEqual(result.problems, []);
  });

  it('refuses duplicate version names', async () => {
    const { file, result } = await load('    - name: web\n      versions: [{ name: v1 }, { name: v2 }, { name: v1 }]\n');
    assert.equal(problemAt(result, 'spec.services[0].versions[2].name', file).message, 'duplicate version name "v1" in service "web" (also versions[0])');
  });

  // As on Kubernetes, where Services echo and echo-v1 are simply distinct: the real service
  // wins the name echo-v1 in backendRefs (issue 12; the compiler's test shows who gets it).
  it("accepts a service named like another service's version backend", async () => {
    const { result } = await load('    - name: web\n      versions: [{ name: v1 }]\n    - name: web-v1\n');
    assert.deepEqual(result.problems, []);
  });

  it('takes upgrade protocols as tokens, in lower case, and refuses h2c and repeats', async () => {
    const ok = await load('    - name: web\n      upgrades: [WebSocket, SPDY/3.1]\n');
    assert.deepEqual(ok.result.problems, []);
    assert.deepEqual(ok.result.config?.services[0]?.upgrades, ['websocket', 'spdy/3.1']);
    const bad = await load('    - name: web\n      upgrades: [websocket, H2C, WebSocket]\n');
    assert.match(problemAt(bad.result, 'spec.services[0].upgrades[1]', bad.file).message, /h2c is never tunnelled/);
    assert.match(problemAt(bad.result, 'spec.services[0].upgrades[2]', bad.file).message, /lists "WebSocket" again/);
    const notToken = await load('    - name: web\n      upgrades: ["web socket"]\n');
    assert.match(problemAt(notToken.result, 'spec.services[0].upgrades[0]', notToken.file).message, /HTTP Upgrade protocol/);
  });
});
