// The authorization matrix through real sidecars, one suite over HTTP/1.1 and HTTP/2:
// callers are outbound sidecars of different services (and namespaces) calling `api`,
// whose inbound sidecar holds the policies. Principals with wildcards, namespaces,
// paths, methods, hosts, ports, headers in `when`, DENY over ALLOW, default deny with
// an ALLOW policy present, no policy = allow, AUDIT and dry-run; each refusal is a 403
// `forbidden` (PERMISSION_DENIED for gRPC), a metric labelled with the policy and an
// access-log line naming it. Callers are named by their mutual TLS certificates (the
// inbound sidecars are STRICT). And L4: a TCP service with an ALLOW policy lets in the
// peer certificate it names and refuses every other one before the app sees it.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuthorizationPolicySnapshot, Protocol, Snapshot, UpstreamSnapshot } from '../../src/api/protocol.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { openClient, WIRE_PROTOCOLS, type TestClient } from '../helpers/client.js';
import { eventually } from '../helpers/eventually.js';
import { listenH1AndH2 } from '../helpers/h2.js';
import { closeServer, NO_CONTROL, quietLog, startOutbound } from '../helpers/proxy-pair.js';
import { giveIdentity, registerInbound } from '../helpers/test-identity.js';

const MESH = ['api', 'open', 'web', 'batch', 'tools.ops', 'db'];

function upstream(service: string, port: number, protocol: Protocol = 'http'): UpstreamSnapshot {
  const eps = [{ id: `${service}-0`, host: '127.0.0.1', port, version: 'v1' }];
  return { service, protocol, routes: [], backends: { [service]: { name: service, endpoints: eps } } };
}

/** An inbound sidecar of `service` in front of `appPort`, its access log in `log`, applying `policies`. */
async function inbound(service: string, appPort: number, log: string, policies: AuthorizationPolicySnapshot[], protocol: Protocol = 'http'): Promise<Sidecar> {
  const s = new Sidecar({
    service,
    version: 'v1',
    id: `${service}-in`,
    kind: 'sidecar',
    control: NO_CONTROL,
    app: { host: '127.0.0.1', port: appPort },
    inbound: { host: '127.0.0.1', port: 0 },
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: log,
    log: quietLog,
  });
  await giveIdentity(s, service);
  await s.start();
  registerInbound(s.addresses.inbound!.port, service);
  // STRICT: every caller is one the test CA named (the helpers' outbound sidecars are).
  const snap: Snapshot = { version: 1, service, inboundProtocol: protocol, upstreams: {}, meshServices: MESH, mtls: { mode: 'STRICT' } };
  if (policies.length > 0) snap.authorization = { trustDomain: 'cluster.local', policies };
  s.apply(snap);
  return s;
}

const principal = (name: string, ns = 'default') => `cluster.local/ns/${ns}/sa/${name}`;

let dir: string;
let app: Awaited<ReturnType<typeof listenH1AndH2>>;
let api: Sidecar;
let open: Sidecar;
const callers = new Map<string, Sidecar>();
const sidecars: Sidecar[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-authz-'));
  app = await listenH1AndH2((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`app saw ${req.method} ${req.url}`);
  });
  const policies: AuthorizationPolicySnapshot[] = [
    // web may read /api/* and /healthz (principal exact).
    {
      name: 'default/web-reads',
      action: 'ALLOW',
      rules: [{ from: [{ principals: [principal('web')] }], to: [{ methods: ['GET', 'HEAD'], paths: ['/api/*', '/healthz'] }] }],
    },
    // anything from namespace ops, on the app's port only.
    { name: 'default/ops-any', action: 'ALLOW', rules: [{ from: [{ namespaces: ['ops'] }], to: [{ ports: [app.port] }] }] },
    // a suffix wildcard principal, only for tenant acme.
    {
      name: 'default/batch-acme',
      action: 'ALLOW',
      rules: [{ from: [{ principals: ['*/sa/batch'] }], when: [{ key: 'request.headers[x-tenant]', values: ['acme'] }] }],
    },
    // DENY wins over every ALLOW above.
    { name: 'default/no-admin', action: 'DENY', rules: [{ to: [{ paths: ['/api/admin/*'] }] }, { to: [{ hosts: ['*.blocked.example'] }] }] },
    { name: 'default/audit-pay', action: 'AUDIT', rules: [{ to: [{ paths: ['/api/pay'] }] }] },
    { name: 'default/try-no-v2', action: 'DENY', dryRun: true, rules: [{ to: [{ paths: ['/api/v2/*'] }] }] },
  ];
  api = await inbound('api', app.port, join(dir, 'api.log'), policies);
  open = await inbound('open', app.port, join(dir, 'open.log'), []);
  sidecars.push(api, open);
  for (const caller of ['web', 'batch', 'tools.ops', 'db']) {
    const s = await startOutbound(caller, { api: upstream('api', api.addresses.inbound!.port), open: upstream('open', open.addresses.inbound!.port) });
    callers.set(caller, s);
    sidecars.push(s);
  }
});

after(async () => {
  for (const s of sidecars) await s.close();
  await closeServer(app.server);
  await rm(dir, { recursive: true, force: true });
});

/** [caller, method, path, headers, expected status] through the caller's sidecar to `api`. */
type Case = [string, string, string, Record<string, string>, number];
const MATRIX: Case[] = [
  ['web', 'GET', '/api/items', {}, 200],
  ['web', 'HEAD', '/healthz', {}, 200],
  ['web', 'POST', '/api/items', {}, 403], // default deny: no ALLOW rule takes POST from web
  ['web', 'GET', '/other', {}, 403],
  ['web', 'GET', '/api/../other', {}, 403], // normalized before matching
  ['web', 'GET', '/api/admin/users', {}, 403], // DENY over ALLOW
  ['web', 'GET', '/api/items', { host: 'x.blocked.example' }, 403], // hosts
  ['tools.ops', 'DELETE', '/anything', {}, 200], // namespace ops, on the app's port
  ['tools.ops', 'GET', '/api/admin/users', {}, 403],
  ['batch', 'POST', '/jobs', { 'x-tenant': 'acme' }, 200], // *\/sa/batch + header condition
  ['batch', 'POST', '/jobs', { 'x-tenant': 'other' }, 403],
  ['batch', 'POST', '/jobs', {}, 403],
  ['db', 'GET', '/api/items', {}, 403], // a service no policy names
  ['web', 'GET', '/api/pay', {}, 200], // AUDIT decides nothing
  ['web', 'GET', '/api/v2/items', {}, 200], // dry-run DENY refuses nothing
];

for (const protocol of WIRE_PROTOCOLS) {
  describe(`authorization over ${protocol}`, () => {
    const clients: TestClient[] = [];
    const client = (caller: string, service = 'api'): TestClient => {
      const c = openClient(protocol, callers.get(caller)!.addresses.upstreams[service]!.port);
      clients.push(c);
      return c;
    };
    after(async () => {
      for (const c of clients) await c.close();
    });

    for (const [caller, method, path, headers, status] of MATRIX) {
      it(`${caller} ${method} ${path}${Object.keys(headers).length ? ` ${JSON.stringify(headers)}` : ''} → ${status}`, async () => {
        const r = await client(caller).request(method, path, headers);
        assert.equal(r.status, status, r.body);
        if (status === 403) {
          assert.equal(r.error, 'forbidden');
          assert.match(r.body, /TRELLIS_E_FORBIDDEN/);
          assert.doesNotMatch(r.body, /web-reads|ops-any|batch-acme|no-admin/, 'the answer does not name the policy (the access log does)');
        } else if (method !== 'HEAD') {
          assert.equal(r.body, `app saw ${method} ${path}`);
        }
      });
    }

    it('no policy allows every caller, a service no policy names included', async () => {
      const r = await client('db', 'open').request('POST', '/anything');
      assert.equal(r.status, 200);
    });

    if (protocol === 'HTTP/2') {
      it('a refused gRPC call gets PERMISSION_DENIED', async () => {
        const r = await client('db').request('POST', '/shop.Items/List', { 'content-type': 'application/grpc' });
        assert.equal(r.status, 200);
        assert.equal(r.headers['grpc-status'], '7');
        assert.equal(r.error, 'forbidden');
      });
    }
  });
}

describe('what a refusal leaves behind', () => {
  it('counts each refusal by policy and action, dry-run refusals and audits apart', async () => {
    const text = await api.metrics.text();
    assert.match(text, /trellis_authz_denials_total\{[^}]*policy="default\/no-admin",action="DENY",protocol="http"[^}]*\} [1-9]/);
    assert.match(
      text,
      /trellis_authz_denials_total\{[^}]*policy="default\/batch-acme,default\/ops-any,default\/web-reads",action="ALLOW",protocol="http"[^}]*\} [1-9]/,
    );
    assert.match(text, /trellis_authz_dry_run_denials_total\{[^}]*policy="default\/try-no-v2",action="DENY",protocol="http"[^}]*\} 2/);
    assert.match(text, /trellis_authz_audits_total\{[^}]*policy="default\/audit-pay",protocol="http"[^}]*\} 2/);
  });

  it('writes an access-log line naming the policy', async () => {
    const lines = await eventually(async () => {
      const text = await readFile(join(dir, 'api.log'), 'utf8');
      const parsed = text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(parsed.some((l) => l.authz_result === 'dry-run-denied'));
      return parsed;
    });
    const admin = lines.find((l) => l.path === '/api/admin/users' && l.source === 'web');
    assert.deepEqual(
      [admin?.status, admin?.error, admin?.authz_policy, admin?.authz_action, admin?.authz_result],
      [403, 'forbidden', 'default/no-admin', 'DENY', 'denied'],
    );
    const dry = lines.find((l) => l.path === '/api/v2/items');
    assert.deepEqual([dry?.status, dry?.authz_policy, dry?.authz_result], [200, 'default/try-no-v2', 'dry-run-denied']);
    const audit = lines.find((l) => l.path === '/api/pay');
    assert.deepEqual([audit?.status, audit?.authz_policy, audit?.authz_result], [200, 'default/audit-pay', 'audited']);
  });
});

describe('L4: TCP connections', () => {
  let echo: net.Server;
  let accepted = 0;
  let log: string;
  const tcpSidecars: Sidecar[] = [];
  before(async () => {
    echo = net.createServer((s) => {
      accepted++;
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    log = join(dir, 'db.log');
  });
  after(async () => {
    for (const s of tcpSidecars) await s.close();
    await closeServer(echo);
  });

  /** Sends `hello` through a caller's sidecar to `db`; what came back ('' if the connection was closed). */
  async function roundTrip(port: number): Promise<string> {
    return new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      let got = '';
      sock.on('data', (c) => {
        got += c.toString();
        if (got === 'hello') sock.end();
      });
      sock.on('close', () => resolve(got));
      sock.on('error', () => resolve(got));
      sock.write('hello');
    });
  }

  /** A `db` sidecar applying `policies`, and callers' sidecars (service keys) to it; the callers' local ports for `db`. */
  async function start(policies: AuthorizationPolicySnapshot[], callers: string[] = ['api']): Promise<number[]> {
    const db = await inbound('db', (echo.address() as net.AddressInfo).port, log, policies, 'tcp');
    tcpSidecars.push(db);
    const ports: number[] = [];
    for (const name of callers) {
      const caller = await startOutbound(name, { db: upstream('db', db.addresses.inbound!.port, 'tcp') });
      tcpSidecars.push(caller);
      ports.push(caller.addresses.upstreams.db!.port);
    }
    return ports;
  }

  it('without a policy, a connection reaches the app', async () => {
    const [port] = await start([]);
    assert.equal(await roundTrip(port!), 'hello');
  });

  it('with an ALLOW policy, the named peer gets through and another is refused before the app connection is opened', async () => {
    const [api, web] = await start([{ name: 'default/db-from-api', action: 'ALLOW', rules: [{ from: [{ principals: [principal('api')] }] }] }], ['api', 'web']);
    assert.equal(await roundTrip(api!), 'hello');
    const before = accepted;
    assert.equal(await roundTrip(web!), '');
    assert.equal(accepted, before, 'the app never saw the refused connection');
    const line = await eventually(async () => {
      const found = (await readFile(log, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.authz_policy === 'default/db-from-api');
      assert.ok(found);
      return found;
    });
    assert.deepEqual([line.protocol, line.source, line.error, line.authz_result], ['tcp', principal('web'), 'forbidden', 'denied']);
    const db = tcpSidecars.at(-3)!;
    assert.match(await db.metrics.text(), /trellis_authz_denials_total\{[^}]*policy="default\/db-from-api",action="ALLOW",protocol="tcp"[^}]*\} 1/);
  });

  it('a plaintext connection never reaches a STRICT listener, let alone the app', async () => {
    const before = accepted;
    await start([{ name: 'default/db-from-api-2', action: 'ALLOW', rules: [{ from: [{ principals: [principal('api')] }] }] }], []);
    const db = tcpSidecars.at(-1)!;
    assert.equal(await roundTrip(db.addresses.inbound!.port), '');
    assert.equal(accepted, before);
  });

  it('a dry-run ALLOW lets the connection through and logs the would-be refusal', async () => {
    const [port] = await start([{ name: 'default/try-db', action: 'ALLOW', dryRun: true, rules: [{ from: [{ principals: [principal('api')] }] }] }], ['web']);
    assert.equal(await roundTrip(port!), 'hello');
    await eventually(async () =>
      assert.match(await readFile(log, 'utf8'), /"authz_policy":"default\/try-db","authz_action":"ALLOW","authz_result":"dry-run-denied"/),
    );
  });
});
