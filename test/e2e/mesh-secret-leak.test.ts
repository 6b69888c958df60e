// A real mesh (`trellis up` on the shop's topology 2, plus an `intruder` service that
// calls the backend), with end-user JWTs on the backend and tracing at 100%: requests
// with good and bad JWTs (in the Authorization header and as ?access_token=), the CLI
// commands that send the admin token, and then every place the mesh writes or shows
// (every file under the state folder but the key and token files themselves, every
// proxy's and the control plane's /metrics, the trace store) is searched for private key
// PEM, the admin token, the bootstrap secret and credentials, and the JWTs: none may
// appear. The same mesh shows `trellis explain` judging a request at the destination's
// sidecar (authorization and authentication), with mTLS STRICT and the admin lock on.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { parseAllDocuments } from 'yaml';
import { adminHeaders, resolveAdminToken } from '../../src/security/admin-token.js';
import { BOOTSTRAP_SECRET_ENV, CREDENTIAL_ENV } from '../../src/security/bootstrap-credential.js';
import { eventually } from '../helpers/eventually.js';
import { dashboardLink, launchChromium, noChromium, screenshot } from '../helpers/browser.js';
import { meshUp, REPO, request, stopMesh, TRELLIS, type RunningMesh } from '../helpers/mesh-run.js';

const ISSUER = 'https://auth.shop.test';
const INTRUDER = `const http = require('node:http');
http.createServer((req, res) => res.end('intruder')).listen(Number(process.env.PORT), process.env.HOST);
`;

let dir: string;
let mesh: RunningMesh;
let goodJwt: string;
let forgedJwt: string;
let expiredJwt: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-leak-'));
  // Postgres runs as the unprivileged `postgres` user and must reach its data folder.
  await chmod(dir, 0o755);
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT({ iss: ISSUER, sub: 'alice', aud: 'shop', iat: now, exp: now + 3600, ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .sign(privateKey);
  goodJwt = await sign({});
  expiredJwt = await sign({ exp: now - 3600, sub: 'bob' });
  const other = await generateKeyPair('ES256');
  forgedJwt = await new SignJWT({ iss: ISSUER, sub: 'mallory', aud: 'shop', exp: now + 3600 })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .sign(other.privateKey);

  const shop = join(REPO, 'examples', 'shop');
  await writeFile(join(dir, 'intruder.js'), INTRUDER);
  const docs = parseAllDocuments(await readFile(join(shop, 'topology-2.yaml'), 'utf8'));
  const meshDoc = docs[0]!.toJSON() as { spec: Record<string, unknown> & { include: string[]; services: Record<string, unknown>[] } };
  meshDoc.spec.include = meshDoc.spec.include.map((f) => join(shop, f));
  for (const s of meshDoc.spec.services) s.cwd = shop;
  meshDoc.spec.services.push({
    name: 'intruder',
    protocol: 'http',
    command: `node ${join(dir, 'intruder.js')}`,
    upstreams: ['backend'],
    health: { tcp: {}, interval: '2s' },
  });
  meshDoc.spec.telemetry = { tracing: { samplingPercentage: 100, flushInterval: '200ms' } };
  const authn = {
    apiVersion: 'trellis.dev/v1alpha1',
    kind: 'RequestAuthentication',
    metadata: { name: 'shop-users' },
    spec: {
      targetRefs: [{ group: '', kind: 'Service', name: 'backend' }],
      jwtRules: [
        {
          issuer: ISSUER,
          audiences: ['shop'],
          jwks: JSON.stringify({ keys: [jwk] }),
          fromHeaders: [{ name: 'authorization', prefix: 'Bearer ' }],
          fromParams: ['access_token'],
        },
      ],
    },
  };
  const file = join(dir, 'shop.yaml');
  await writeFile(file, [JSON.stringify(meshDoc), ...docs.slice(1).map((d) => d.toString()), JSON.stringify(authn)].join('\n---\n'));
  mesh = await meshUp(file, join(dir, '.trellis'));
});

after(() => stopMesh(mesh, dir));

/** Runs `trellis ARGS` to its end. */
function cli(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRELLIS, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`trellis ${args.join(' ')} did not end within ${timeoutMs} ms:\n${out}\n${err}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

const instance = (service: string) => mesh.state.instances.find((i) => i.service === service)!;
const upstreamPort = (from: string, to: string) => instance(from).upstreams.find((u) => u.service === to)!.port;

test('trellis explain asks the destination sidecar: which AuthorizationPolicy allows or refuses the caller, and what its JWT rule makes of the token', async () => {
  const control = ['--control', mesh.state.control];
  const denied = await cli(['explain', '--from', 'intruder', 'GET', 'http://backend/api/products', ...control]);
  assert.equal(denied.code, 0, denied.err);
  assert.match(denied.out, /inbound: {2}backend-v\d-0 port \d+, mTLS STRICT, caller spiffe:\/\/cluster\.local\/ns\/default\/sa\/intruder/);
  assert.match(denied.out, /authentication: no token/);
  assert.match(denied.out, /authorization: DENY \(403 forbidden\) by default\/backend-from-frontend: no rule of the ALLOW policies/);

  const allowed = await cli([
    'explain',
    '--from',
    'frontend',
    'GET',
    'http://backend/api/products',
    '-H',
    `authorization: Bearer ${goodJwt}`,
    '--json',
    ...control,
  ]);
  assert.equal(allowed.code, 0, allowed.err);
  const view = JSON.parse(allowed.out) as { caller: string; authorization: Record<string, unknown> };
  assert.equal(view.caller, 'spiffe://cluster.local/ns/default/sa/frontend');
  assert.equal(view.authorization.decision, 'allow');
  assert.equal(view.authorization.policy, 'default/backend-from-frontend');
  assert.equal(view.authorization.mtls, 'STRICT');
  assert.deepEqual(view.authorization.authentication, { result: 'verified', principal: `${ISSUER}/alice` });

  const forged = await cli(['explain', '--from', 'frontend', 'GET', 'http://backend/api/products', '-H', `authorization: Bearer ${forgedJwt}`, ...control]);
  assert.equal(forged.code, 0, forged.err);
  assert.match(forged.out, /authentication: REFUSED: 401 invalid-token \(bad-signature/);
});

test("trellis status shows each proxy's inbound mTLS mode and its certificate's expiry; top --callers and tap name the verified caller", async () => {
  const control = ['--control', mesh.state.control];
  const status = await cli(['status', ...control]);
  assert.equal(status.code, 0, status.err);
  assert.match(status.out, /Mutual TLS \(inbound mode, and the certificate the control plane issued\):/);
  assert.match(status.out, /^backend-v1-0\s+STRICT\s+spiffe:\/\/cluster\.local\/ns\/default\/sa\/backend\s+\d{4}-\d\d-\d\dT\S+ \(2[0-4]h \d+m\)$/m);
  assert.match(status.out, /^postgres-0\s+STRICT\s+spiffe:\/\/cluster\.local\/ns\/default\/sa\/postgres\s+\S+ \(\d+h \d+m\)$/m);

  const intruder = upstreamPort('intruder', 'backend');
  // top --callers: the backend's callers by verified identity over one window.
  let stop = false;
  const traffic = (async () => {
    for (let i = 0; !stop && i < 400; i++) {
      await request(intruder, '/api/top').catch(() => {});
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  try {
    const top = await cli(['top', '--once', '--callers', '--interval', '2s', ...control]);
    assert.equal(top.code, 0, top.err);
    assert.match(top.out, /^SERVICE\s+CALLER \(mTLS identity\)\s+RPS/m);
    assert.match(top.out, /^backend\s+intruder\s+\d/m, top.out);
  } finally {
    stop = true;
    await traffic;
  }

  const tapping = cli(['tap', 'backend', '--path', '/api/tapped', '--max', '1', ...control]);
  let done = false;
  void tapping.then(() => (done = true));
  for (let i = 0; !done && i < 300; i++) {
    await request(intruder, `/api/tapped/${i}`).catch(() => {});
    await new Promise((r) => setTimeout(r, 30));
  }
  const tap = await tapping;
  assert.equal(tap.code, 0, tap.err);
  assert.match(tap.out, / 403 .*from=intruder .*error=forbidden peer=spiffe:\/\/cluster\.local\/ns\/default\/sa\/intruder$/m, tap.out);
});

test('the dashboard shows authorization denials by service and policy, in Chromium', { skip: noChromium() }, async () => {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(dashboardLink(mesh.output()));
    await page.getByTestId('topology').waitFor();
    // The page reads the proxies while it is open (the first read is the baseline): refusals from now on count.
    const intruder = upstreamPort('intruder', 'backend');
    const table = page.getByTestId('authz-denials');
    await eventually(
      async () => {
        for (let i = 0; i < 5; i++) assert.equal((await request(intruder, '/api/denied')).status, 403);
        const text = (await table.textContent({ timeout: 1000 })) ?? '';
        assert.match(text, /backend\s*default\/backend-from-frontend\s*http\s*\d+/);
      },
      { timeoutMs: 30_000 },
    );
    await screenshot(page, 'authz-denials');
  } finally {
    await browser.close();
  }
});

test('no private key, admin token, bootstrap secret or credential, or JWT appears in any log, state file, metrics endpoint or the trace store', async () => {
  // The public entry is the ingress Gateway's HTTPS listener: request() trusts the localhost CA for it.
  const frontendPort = mesh.public(mesh.state.publicUrls.frontend !== undefined ? 'frontend' : Object.keys(mesh.state.publicUrls)[0]!);
  // Traffic: the page's API through the public frontend with good and bad JWTs, in the header and the query.
  await eventually(
    async () => {
      const r = await request(frontendPort, '/api/products');
      assert.equal(r.status, 200, r.body);
    },
    { timeoutMs: 60_000 },
  );
  const withJwt = await request(frontendPort, '/api/products', { authorization: `Bearer ${goodJwt}` });
  assert.equal(withJwt.status, 200, withJwt.body);
  for (const jwt of [goodJwt, forgedJwt, expiredJwt]) {
    await request(frontendPort, '/api/products', { authorization: `Bearer ${jwt}` });
    await request(frontendPort, `/api/products?access_token=${jwt}`);
  }
  // The intruder calls the backend: refused (403), with and without a token.
  const intruder = upstreamPort('intruder', 'backend');
  assert.equal((await request(intruder, '/api/products', { authorization: `Bearer ${goodJwt}` })).status, 403);
  assert.equal((await request(intruder, `/api/products?access_token=${expiredJwt}`)).status, 401);
  // The CLI sends the admin token to the control plane and the proxies.
  for (const args of [['status'], ['top', '--once', '--interval', '1s'], ['trace', '--limit', '5']]) {
    const r = await cli([...args, '--control', mesh.state.control]);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
  }

  // The secrets, as the processes hold them.
  const token = await resolveAdminToken({ url: mesh.state.control });
  assert.ok(token !== undefined && token.length >= 16);
  const environ = async (pid: number | undefined): Promise<Record<string, string>> => {
    if (pid === undefined) return {};
    const raw = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    return Object.fromEntries(
      raw
        .split('\0')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
  };
  const bootstrap = (await environ(mesh.state.controlPid))[BOOTSTRAP_SECRET_ENV];
  assert.ok(bootstrap, 'the control plane holds the bootstrap secret');
  const credentials = (await Promise.all(mesh.state.instances.map(async (i) => (await environ(i.sidecarPid))[CREDENTIAL_ENV]))).filter((c): c is string => !!c);
  assert.ok(credentials.length >= 3, 'each sidecar holds its credential');
  const secrets: [string, string][] = [
    ['the admin token', token],
    ['the bootstrap secret', bootstrap],
    ...credentials.map((c, i): [string, string] => [`credential ${i}`, c]),
    ...[goodJwt, forgedJwt, expiredJwt].flatMap((j, i): [string, string][] => [
      [`JWT ${i}`, j],
      [`JWT ${i}'s signature`, j.split('.')[2]!],
    ]),
    ['a private key', 'PRIVATE KEY'],
  ];

  // Spans reach the store within a flush or two.
  const headers = adminHeaders(token);
  await eventually(async () => {
    const r = (await (await fetch(`${mesh.state.control}/v1/traces?limit=50`, { headers })).json()) as { traces: unknown[] };
    assert.ok(r.traces.length > 0);
  });
  await new Promise((r) => setTimeout(r, 1500));

  const places: [string, string][] = [];
  // Every file under the state folder, but the files that are the secrets themselves: the
  // mesh CA, the admin token, the bootstrap secret, the localhost CA's and certificate's keys
  // (ingress/), and the control plane's last good config (it holds the Gateways' certificate
  // keys, as the mesh file's Secrets do, so a restart serves them). Each must be 0600.
  const SECRET_FILES = /(^|\/)(ca\.json|admin-token|bootstrap-secret|last-good-config\.json|ca\.key|localhost\.key)$/;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && SECRET_FILES.test(relative(mesh.state.stateDir, p))) {
        assert.equal((await stat(p)).mode & 0o777, 0o600, `${relative(mesh.state.stateDir, p)} is 0600`);
      } else if (e.isFile() && (await stat(p)).size < 64 * 1024 * 1024) {
        places.push([relative(mesh.state.stateDir, p), await readFile(p, 'latin1')]);
      }
    }
  };
  await walk(mesh.state.stateDir);
  places.push(['trellis up output', mesh.output()]);
  // Metrics: the control plane's and every proxy's.
  places.push(['control /metrics', await (await fetch(`${mesh.state.control}/metrics`, { headers })).text()]);
  const { proxies } = (await (await fetch(`${mesh.state.control}/v1/proxies`, { headers })).json()) as {
    proxies: { id: string; admin: { host: string; port: number } }[];
  };
  for (const p of proxies) places.push([`${p.id} /metrics`, await (await fetch(`http://${p.admin.host}:${p.admin.port}/metrics`)).text()]);
  // The trace store, every trace whole.
  const list = await (await fetch(`${mesh.state.control}/v1/traces?limit=500`, { headers })).text();
  places.push(['/v1/traces', list]);
  for (const t of (JSON.parse(list) as { traces: { traceId: string }[] }).traces) {
    places.push([`/v1/traces/${t.traceId}`, await (await fetch(`${mesh.state.control}/v1/traces/${t.traceId}`, { headers })).text()]);
  }
  assert.ok(
    places.some(([name]) => name.endsWith('.access.log')),
    'access logs were searched',
  );
  assert.ok(places.length > 10, `searched ${places.length} places`);

  const found: string[] = [];
  for (const [place, text] of places) for (const [what, secret] of secrets) if (text.includes(secret)) found.push(`${what} in ${place}`);
  assert.deepEqual(found, [], `secrets found:\n${found.join('\n')}`);
});
