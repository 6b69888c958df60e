// The admin API is locked (issue 13): an anonymous `PUT /v1/services/backend/weights`
// once answered 200, moved the traffic and rewrote the route file. Now every path but
// /healthz needs the admin token: 401 without a credential, 403 with a wrong one, both
// from the error table, counted, and logged (at most 20 lines a minute) without the token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { AdminAuth, REFUSAL_LOG_PER_MINUTE } from '../../src/control/admin/admin-auth.js';
import { ControlMetrics } from '../../src/control/control-metrics.js';
import { ERRORS, TrellisError } from '../../src/errors.js';
import { adminAuth, MESH_YAML, tempDir, TEST_BOOTSTRAP_SECRET } from './helpers.js';

const TOKEN = 'tat1.the-admin-token-of-this-test-0123456789';
const WRONG = 'tat1.a-guess-that-must-never-be-logged-9876';

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
let routesFile: string;
const logs: string[] = [];

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  routesFile = await files.write(
    'routes.yaml',
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-split
spec:
  parentRefs: [{ name: backend }]
  rules:
    - backendRefs:
        - { name: backend-v1, weight: 90 }
        - { name: backend-v2, weight: 10 }
`,
  );
  plane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    adminToken: TOKEN,
    log: (line) => logs.push(line),
    health: { schedule: false },
  });
});

after(async () => {
  await plane?.close();
  await files?.remove();
});

async function call(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(`${plane.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

const PUT_BODY = JSON.stringify({ weights: { v1: 0, v2: 100 } });
const JSON_TYPE = { 'content-type': 'application/json' };

test('an anonymous PUT of the weights is 401 and changes nothing; a wrong token is 403; the token is 200', async () => {
  const before = await readFile(routesFile, 'utf8');
  const anonymous = await call('PUT', '/v1/services/backend/weights', JSON_TYPE, PUT_BODY);
  assert.equal(anonymous.status, 401, anonymous.body);
  assert.equal(JSON.parse(anonymous.body).code, 'TRELLIS_E_ADMIN_CREDENTIAL_MISSING');
  assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer realm="trellis-admin"$/);

  const wrong = await call('PUT', '/v1/services/backend/weights', { ...JSON_TYPE, authorization: `Bearer ${WRONG}` }, PUT_BODY);
  assert.equal(wrong.status, 403, wrong.body);
  const wrongBody = JSON.parse(wrong.body) as { code: 'TRELLIS_E_ADMIN_CREDENTIAL_REFUSED'; message: string; params: Record<string, unknown> };
  assert.equal(wrongBody.code, 'TRELLIS_E_ADMIN_CREDENTIAL_REFUSED');
  assert.equal(ERRORS[wrongBody.code].status, 403);
  assert.equal(wrongBody.message, new TrellisError(wrongBody.code, wrongBody.params).message, "the message is the table's");

  const basic = await call('GET', '/v1/services', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` });
  assert.equal(basic.status, 403, 'another scheme is a wrong credential');
  assert.equal(await readFile(routesFile, 'utf8'), before, 'the route file is untouched by the refused PUTs');
  assert.deepEqual(
    logs.filter((l) => l.includes('admin API: refused')),
    [
      'control: admin API: refused PUT /v1/services/backend/weights from 127.0.0.1: no credential (401)',
      'control: admin API: refused PUT /v1/services/backend/weights from 127.0.0.1: the bearer token is not the admin token (403)',
      'control: admin API: refused GET /v1/services from 127.0.0.1: the Authorization header is not a Bearer token (403)',
    ],
  );
  assert.equal(plane.model.config.routes.length, 1);

  const allowed = await call('PUT', '/v1/services/backend/weights', { ...JSON_TYPE, ...adminAuth(plane) }, PUT_BODY);
  assert.equal(allowed.status, 200, allowed.body);
  assert.notEqual(await readFile(routesFile, 'utf8'), before, 'the token moves the traffic');
});

test('every read of the mesh needs the token too; only /healthz is open', async () => {
  const locked = [
    '/',
    '/v1',
    '/v1/services',
    '/v1/services/backend/weights',
    '/v1/instances',
    '/v1/proxies',
    '/v1/config',
    '/v1/snapshots/frontend-0',
    '/v1/identity',
    '/v1/identity/frontend-0',
    '/v1/kubernetes',
    '/metrics',
    '/v1/prometheus/targets',
    '/v1/stream',
    '/no/such/path',
  ];
  for (const path of locked) {
    const anonymous = await call('GET', path);
    assert.equal(anonymous.status, 401, `GET ${path} without a credential`);
    assert.equal(JSON.parse(anonymous.body).code, 'TRELLIS_E_ADMIN_CREDENTIAL_MISSING', path);
    assert.equal((await call('GET', path, { authorization: `Bearer ${WRONG}` })).status, 403, `GET ${path} with a wrong token`);
    assert.ok(![401, 403].includes((await call('GET', path, adminAuth(plane))).status), `GET ${path} with the token`);
  }
  const health = await call('GET', '/healthz');
  assert.equal(health.status, 200);
  assert.equal(health.body, 'ok\n');
});

test('refusals are counted by reason, and neither token ever reaches the log', async () => {
  const metric = async (reason: string): Promise<number> => {
    const text = (await call('GET', '/metrics', adminAuth(plane))).body;
    const m = new RegExp(`^trellis_control_admin_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
    assert.ok(m, `the metric with reason ${reason} is exposed:\n${text}`);
    return Number(m[1]);
  };
  const missing = await metric('missing');
  const wrong = await metric('wrong');
  await call('GET', '/v1/proxies');
  await call('GET', '/v1/proxies', { authorization: `Bearer ${WRONG}` });
  await call('GET', '/v1/proxies', { authorization: `Bearer ${WRONG}` });
  assert.equal(await metric('missing'), missing + 1);
  assert.equal(await metric('wrong'), wrong + 2);

  const all = logs.join('\n');
  assert.ok(!all.includes(WRONG), 'a wrong token is never logged');
  assert.ok(!all.includes(TOKEN), 'the admin token is never logged');
  assert.ok(!all.includes(TOKEN.slice(5, 20)), 'nor a piece of it');
});

test('refusal log lines are limited to 20 a minute, the rest counted in one line; every refusal is in the metric', () => {
  let now = 1_000_000 * 60_000;
  const lines: string[] = [];
  const metrics = new ControlMetrics();
  const auth = new AdminAuth({ token: TOKEN, metrics, log: (l) => lines.push(l), now: () => now });
  const req = (authorization?: string): IncomingMessage =>
    ({ method: 'GET', headers: authorization === undefined ? {} : { authorization }, socket: { remoteAddress: '127.0.0.1' } }) as unknown as IncomingMessage;
  for (let i = 0; i < 50; i++) assert.equal(auth.check(req(`Bearer ${WRONG}${i}`), '/v1/services')?.status, 403);
  assert.equal(lines.length, REFUSAL_LOG_PER_MINUTE);
  now += 60_000;
  assert.equal(auth.check(req(), '/v1/services\u001b[31m')?.status, 401);
  assert.equal(lines[REFUSAL_LOG_PER_MINUTE], 'control: admin API: 30 more refusals not logged in the last minute');
  assert.equal(
    lines.at(-1),
    'control: admin API: refused GET /v1/services?[31m from 127.0.0.1: no credential (401)',
    'control characters of the path are not logged',
  );
  assert.equal(auth.check(req(`Bearer ${TOKEN}`), '/v1/services'), undefined);
  assert.equal(auth.check(req(`bearer   ${TOKEN}  `), '/v1/services'), undefined, 'the scheme is case-insensitive');
  assert.equal(auth.check(req(), '/healthz'), undefined);
  assert.ok(!lines.join('\n').includes(WRONG));
});
