// A Gateway in the config files: validated with its Secret's certificate files (an
// expired or mismatched file refused with the file and field), and compiled into the
// gateway proxy's snapshot: ports, certificates, and per-port route tables from the
// HTTPRoutes attached with parentRefs (kind Gateway, sectionName the listener).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { issueServerCertificate, makeLocalCa } from '../../src/security/local-tls.js';

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  services:
    - { name: web, protocol: http }
---
apiVersion: v1
kind: Secret
metadata:
  name: site
  annotations: { trellis.dev/certificate-file: site.pem, trellis.dev/key-file: site.key }
type: kubernetes.io/tls
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  listeners:
    - { name: https, port: 8443, protocol: HTTPS, hostname: shop.example.test, tls: { certificateRefs: [{ name: site }] } }
    - { name: http, port: 8080, protocol: HTTP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop }
spec:
  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: https }]
  rules: [{ backendRefs: [{ name: web }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: to-https }
spec:
  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: http }]
  rules: [{ filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, port: 8443, statusCode: 301 } }] }]
`;

test('a Gateway with a Secret from files compiles into the gateway proxy snapshot', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-gw-'));
  try {
    const ca = await makeLocalCa('ca');
    const cert = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    await writeFile(join(dir, 'site.pem'), cert.cert);
    await writeFile(join(dir, 'site.key'), cert.key);
    await writeFile(join(dir, 'mesh.yaml'), MESH);
    const loaded = await loadConfig([join(dir, 'mesh.yaml')]);
    assert.deepEqual(loaded.problems, []);
    assert.ok(
      loaded.files.some((f) => f.endsWith('site.pem')),
      'certificate files are watched with the config',
    );
    const snap = compileSnapshot({
      config: loaded.config!,
      instances: [{ id: 'web-0', service: 'web', version: 'default', inbound: { host: '127.0.0.1', port: 9001 }, status: 'healthy' }],
      proxy: { id: 'edge-0', service: 'edge', version: 'default', kind: 'gateway', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
    });
    assert.equal(snap.gateway?.name, 'default/edge');
    assert.deepEqual(
      snap.gateway?.ports.map((p) => [p.port, p.protocol, p.upstream, p.certificates?.length]),
      [
        [8080, 'HTTP', 'default/edge/8080', undefined],
        [8443, 'HTTPS', 'default/edge/8443', 1],
      ],
    );
    const https = snap.upstreams['default/edge/8443']!;
    assert.equal(https.routes[0]?.hostname, 'shop.example.test');
    assert.deepEqual(
      https.backends.web?.endpoints.map((e) => e.port),
      [9001],
    );
    assert.equal(snap.upstreams['default/edge/8080']!.routes[0]?.filters?.[0]?.type, 'RequestRedirect');
    assert.ok(snap.meshServices?.includes('edge'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an expired certificate file and a key of another certificate are refused at load, naming the Secret', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-gw-'));
  try {
    const ca = await makeLocalCa('ca');
    const expired = await issueServerCertificate(ca, {
      dnsNames: ['shop.example.test'],
      notBefore: Date.now() - 10 * 86_400_000,
      notAfter: Date.now() - 86_400_000,
    });
    await writeFile(join(dir, 'site.pem'), expired.cert);
    await writeFile(join(dir, 'site.key'), expired.key);
    await writeFile(join(dir, 'mesh.yaml'), MESH);
    const old = await loadConfig([join(dir, 'mesh.yaml')]);
    assert.match(old.problems.map((p) => p.message).join('\n'), /Secret "default\/site".*expired/);
    const other = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    const mine = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    await writeFile(join(dir, 'site.pem'), mine.cert);
    await writeFile(join(dir, 'site.key'), other.key);
    const mismatched = await loadConfig([join(dir, 'mesh.yaml')]);
    assert.match(mismatched.problems.map((p) => p.message).join('\n'), /not the private key of the certificate/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a route naming a listener the Gateway does not have is refused at its sectionName', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-gw-'));
  try {
    const ca = await makeLocalCa('ca');
    const cert = await issueServerCertificate(ca, { dnsNames: ['shop.example.test'] });
    await writeFile(join(dir, 'site.pem'), cert.cert);
    await writeFile(join(dir, 'site.key'), cert.key);
    await writeFile(join(dir, 'mesh.yaml'), MESH.replace('sectionName: https }', 'sectionName: htps }'));
    const loaded = await loadConfig([join(dir, 'mesh.yaml')]);
    const p = loaded.problems.find((x) => x.path === 'spec.parentRefs[0].sectionName');
    assert.match(p?.message ?? '', /names listener "htps", which Gateway "default\/edge" does not have \(its listeners: https, http\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

const PASSTHROUGH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  services:
    - { name: db, protocol: tcp }
    - name: web
      protocol: tcp
      versions: [{ name: v1 }, { name: v2 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  listeners:
    - { name: pass, port: 9443, protocol: TLS, hostname: "*.example.test", tls: { mode: Passthrough } }
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: { name: web }
spec:
  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: pass }]
  hostnames: [web.example.test, other.test]
  rules: [{ backendRefs: [{ name: web-v1, weight: 3 }, { name: web-v2, weight: 1 }] }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: { name: rest }
spec:
  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]
  rules: [{ backendRefs: [{ name: db }] }]
`;

test('a TLS listener in Passthrough mode with TLSRoutes compiles into an SNI table (hostnames narrowed to the listener’s)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-gw-'));
  try {
    await writeFile(join(dir, 'mesh.yaml'), PASSTHROUGH);
    const loaded = await loadConfig([join(dir, 'mesh.yaml')]);
    assert.deepEqual(loaded.problems, []);
    const snap = compileSnapshot({
      config: loaded.config!,
      instances: [
        { id: 'web-v1-0', service: 'web', version: 'v1', inbound: { host: '127.0.0.1', port: 9001 }, status: 'healthy' },
        { id: 'web-v2-0', service: 'web', version: 'v2', inbound: { host: '127.0.0.1', port: 9002 }, status: 'healthy' },
        { id: 'db-0', service: 'db', version: 'default', inbound: { host: '127.0.0.1', port: 9003 }, status: 'healthy' },
      ],
      proxy: { id: 'edge-0', service: 'edge', version: 'default', kind: 'gateway', admin: { host: '127.0.0.1', port: 1 }, upstreams: [], pid: 1 },
    });
    assert.deepEqual(snap.gateway?.ports, [{ port: 9443, protocol: 'TLS', listeners: ['pass'], upstream: 'default/edge/9443' }]);
    const table = snap.upstreams['default/edge/9443']!;
    assert.equal(table.protocol, 'tcp');
    assert.equal(table.explicitRoutes, true);
    // other.test is outside *.example.test: not attached; a route without hostnames takes the listener's.
    assert.deepEqual(
      table.routes.map((r) => [r.hostname, r.backends.map((b) => `${b.backend}:${b.weight}`).join(',')]),
      [
        ['web.example.test', 'web-v1:3,web-v2:1'],
        ['*.example.test', 'db:1'],
      ],
    );
    assert.deepEqual(Object.keys(table.backends).sort(), ['db', 'web-v1', 'web-v2']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('Passthrough mistakes are refused at their field: a TLS listener without Passthrough or with certificates, a TLSRoute to no TLS listener', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-gw-'));
  try {
    const bad = PASSTHROUGH.replace('tls: { mode: Passthrough }', 'tls: { mode: Terminate, certificateRefs: [{ name: site }] }').replace(
      'sectionName: pass',
      'sectionName: nope',
    );
    await writeFile(join(dir, 'mesh.yaml'), bad);
    const loaded = await loadConfig([join(dir, 'mesh.yaml')]);
    const found = loaded.problems.map((p) => `${p.path}: ${p.message}`);
    assert.ok(
      found.some((p) => /^spec\.listeners\[0\]\.tls\.mode: .*needs tls\.mode: Passthrough/.test(p)),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => /^spec\.listeners\[0\]\.tls\.certificateRefs: .*serves no certificate/.test(p)),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => /^spec\.parentRefs\[0\]\.sectionName: .*no TLS listener/.test(p)),
      found.join('\n'),
    );
    assert.equal(loaded.config, undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
