// ExternalService and outboundTrafficPolicy in the config files: each mistake refused
// with its file, field path and a reason (as `trellis validate` prints them), and the
// routes that name an ExternalService checked like those naming a Service.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const MESH = (extra = '') => `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  services: [{ name: web }]
${extra}
`;

const external = (name: string, spec: string) => `---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: ${name} }
spec:
${spec}`;

const OK = `  hosts: [api.example.test]
  ports: [{ number: 80, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: 8080 }]
`;

async function problems(text: string, files: Record<string, string> = {}): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-ext-'));
  dirs.push(dir);
  for (const [n, t] of Object.entries(files)) await writeFile(join(dir, n), t);
  await writeFile(join(dir, 'mesh.yaml'), text);
  const r = await loadConfig([join(dir, 'mesh.yaml')]);
  return r.problems.map((p) => `${p.path}: ${p.message}`);
}

test('a valid ExternalService and REGISTRY_ONLY load', async () => {
  assert.deepEqual(await problems(MESH('  outboundTrafficPolicy: { mode: REGISTRY_ONLY }') + external('api', OK)), []);
});

test('refused: STATIC without endpoints, a name for an address, DNS with endpoints, unknown fields, a bad mode', async () => {
  const noEndpoints = await problems(MESH() + external('api', '  hosts: [a.test]\n  ports: [{ number: 80, protocol: HTTP }]\n  resolution: STATIC\n'));
  assert.ok(
    noEndpoints.some((p) => p.startsWith('spec.endpoints: resolution STATIC needs endpoints')),
    noEndpoints.join('\n'),
  );
  const name = await problems(MESH() + external('api', OK.replace('127.0.0.1', 'db.example.test')));
  assert.ok(
    name.some((p) => p.startsWith('spec.endpoints[0].address:') && p.includes('not an IP address')),
    name.join('\n'),
  );
  const dns = await problems(MESH() + external('api', OK.replace('STATIC', 'DNS')));
  assert.ok(
    dns.some((p) => p.startsWith('spec.endpoints: resolution DNS takes no endpoints')),
    dns.join('\n'),
  );
  const unknown = await problems(MESH() + external('api', `${OK}  location: MESH_EXTERNAL\n`));
  assert.ok(
    unknown.some((p) => p.includes('location')),
    unknown.join('\n'),
  );
  const mode = await problems(MESH('  outboundTrafficPolicy: { mode: DENY_ALL }') + external('api', OK));
  assert.ok(
    mode.some((p) => p.startsWith('spec.outboundTrafficPolicy.mode')),
    mode.join('\n'),
  );
});

test('refused: a host declared twice, a mesh service name, TLS origination on a TLS port, an unreadable CA bundle', async () => {
  const twice = await problems(MESH() + external('api', OK) + external('api2', OK));
  assert.ok(
    twice.some((p) => p.startsWith('spec.hosts[0]: host api.example.test is already declared')),
    twice.join('\n'),
  );
  const clash = await problems(MESH() + external('web', OK));
  assert.ok(
    clash.some((p) => p.startsWith('metadata.name: "web" is a mesh service')),
    clash.join('\n'),
  );
  const tlsTls = await problems(MESH() + external('db', `${OK.replace('HTTP', 'TLS')}  tls: { caFile: ca.pem }\n`));
  assert.ok(
    tlsTls.some((p) => p.startsWith('spec.tls: TLS origination is for HTTP and TCP ports')),
    tlsTls.join('\n'),
  );
  const badCa = await problems(MESH() + external('api', `${OK}  tls: { caFile: ca.pem }\n`), { 'ca.pem': 'not a certificate' });
  assert.ok(
    badCa.some((p) => p.startsWith('spec.tls.caFile: cannot use') && p.includes('ca.pem')),
    badCa.join('\n'),
  );
  const missing = await problems(MESH() + external('api', `${OK}  tls: { caFile: nowhere.pem }\n`));
  assert.ok(
    missing.some((p) => p.startsWith('spec.tls.caFile: cannot use')),
    missing.join('\n'),
  );
});

test('routes: a parentRef or backendRef of kind ExternalService must name one, with group trellis.dev, of the right protocol', async () => {
  const route = (parent: string) => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [${parent}]
  rules: [{ backendRefs: [{ group: trellis.dev, kind: ExternalService, name: api }] }]
`;
  assert.deepEqual(await problems(MESH() + external('api', OK) + route('{ group: trellis.dev, kind: ExternalService, name: api }')), []);
  const unknown = await problems(MESH() + external('api', OK) + route('{ group: trellis.dev, kind: ExternalService, name: nope }'));
  assert.ok(
    unknown.some((p) => p.startsWith('spec.parentRefs[0].name: names ExternalService "nope"')),
    unknown.join('\n'),
  );
  const group = await problems(MESH() + external('api', OK) + route('{ kind: ExternalService, name: api }'));
  assert.ok(
    group.some((p) => p.startsWith('spec.parentRefs[0].group: must be trellis.dev')),
    group.join('\n'),
  );
  const tcp = await problems(MESH() + external('api', OK.replace('HTTP', 'TCP')) + route('{ group: trellis.dev, kind: ExternalService, name: api }'));
  assert.ok(
    tcp.some((p) => p.includes('is not HTTP')),
    tcp.join('\n'),
  );
});

test('the egress gateway may not take a mesh service name', async () => {
  const p = await problems(MESH('  outboundTrafficPolicy: { egressGateway: { name: web } }'));
  assert.ok(
    p.some((x) => x.startsWith('spec.outboundTrafficPolicy.egressGateway.name: "web" is a mesh service')),
    p.join('\n'),
  );
});
