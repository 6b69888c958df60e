// Every error the control plane answers over HTTP (the admin API and a refused proxy
// stream) comes from the one error table: the status is the one its code has there, and
// the body carries code, message and params, so `trellis route weights` and `trellis
// canary` rebuild the same error instead of calling the control plane unreachable.
// These answers were once written by hand: 403, 405, 413 and 426 under
// TRELLIS_E_BAD_REQUEST (a 400 code), and a failed weights write as a 500.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { ERRORS, TrellisError, type ErrorCode } from '../../src/errors.js';
import { applyWeights } from '../../src/cli/weights-client.js';
import { MESH_YAML, tempDir, TEST_BOOTSTRAP_SECRET } from './helpers.js';

const ROUTES = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-split
spec:
  parentRefs: [{ name: backend }]
  rules:
    - backendRefs:
        - name: backend-v1
          weight: 90
        - name: backend-v2
          weight: 10
`;

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
let guarded: ControlPlane;

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', ROUTES);
  plane = await startControlPlane({ bootstrapSecret: TEST_BOOTSTRAP_SECRET, configPaths: [mesh], admin: { host: '127.0.0.1', port: 0 }, log: () => {} });
  guarded = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    token: 's3cret',
    log: () => {},
  });
});

after(async () => {
  await plane?.close();
  await guarded?.close();
  await files?.remove();
});

interface Answer {
  status: number;
  body: { code?: string; message?: string; params?: Record<string, unknown> };
}

/** One request on a fresh connection; the body is read whole. */
function request(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // The admin token of whichever control plane listens at `port`: these tests are about what comes after the door.
    const token = [plane, guarded].find((p) => p.address.port === port)?.adminToken;
    const withToken = token === undefined ? headers : { authorization: `Bearer ${token}`, ...headers };
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: withToken, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: Answer['body'] = {};
        try {
          parsed = JSON.parse(text) as Answer['body'];
        } catch {
          // not JSON: the assertions below say so
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The answer is the table's: the code's status, its message filled from the params. */
function fromTable(a: Answer, code: ErrorCode, status: number, what: string): void {
  assert.equal(a.body.code, code, `${what}: ${JSON.stringify(a.body)}`);
  assert.equal(ERRORS[code].status, status, `${what}: the table's status for ${code}`);
  assert.equal(a.status, status, what);
  assert.ok(a.body.params, `${what}: params in the body`);
  assert.equal(a.body.message, new TrellisError(code, a.body.params).message, what);
}

test('admin API error answers carry the status their code has in the error table', async () => {
  const port = plane.address.port;
  const weights = '/v1/services/backend/weights';
  fromTable(
    await request(port, 'PUT', weights, { origin: 'http://evil.example', 'content-type': 'application/json' }, '{"weights":{"v1":1}}'),
    'TRELLIS_E_ORIGIN_REFUSED',
    403,
    'a PUT from a web page',
  );
  fromTable(await request(port, 'DELETE', weights), 'TRELLIS_E_METHOD_NOT_ALLOWED', 405, 'DELETE of the weights');
  fromTable(await request(port, 'POST', '/v1/services'), 'TRELLIS_E_METHOD_NOT_ALLOWED', 405, 'POST to the read-only API');
  fromTable(
    await request(port, 'PUT', weights, { 'content-type': 'application/json' }, Buffer.alloc(70 * 1024, 0x20)),
    'TRELLIS_E_BODY_TOO_LARGE',
    413,
    'a 70 KiB body',
  );
  fromTable(await request(port, 'GET', '/v1/stream'), 'TRELLIS_E_UPGRADE_REQUIRED', 426, 'a plain GET of the stream');
  fromTable(await request(port, 'PUT', weights, { 'content-type': 'application/json' }, 'v1=90'), 'TRELLIS_E_WEIGHTS_INVALID', 400, 'a body that is not JSON');
  fromTable(await request(port, 'GET', '/v2/what'), 'TRELLIS_E_NOT_FOUND', 404, 'an unknown path');
  fromTable(await request(port, 'GET', '/v1/snapshots/nobody'), 'TRELLIS_E_NOT_FOUND', 404, 'an unknown proxy');
});

test('a refused proxy stream answers from the table too', async () => {
  fromTable(
    await request(plane.address.port, 'GET', '/v1/streams', { connection: 'Upgrade', upgrade: 'trellis-stream' }),
    'TRELLIS_E_BAD_REQUEST',
    400,
    'an upgrade to the wrong path',
  );
  fromTable(
    await request(guarded.address.port, 'GET', '/v1/stream', { connection: 'Upgrade', upgrade: 'trellis-stream' }),
    'TRELLIS_E_UNAUTHORIZED',
    401,
    'no join token',
  );
});

test('a weights change that fails on disk is TRELLIS_E_WEIGHTS_REFUSED with its reason, for the API and for the CLI', async () => {
  // The edit is written through a temporary file beside the route file, named after
  // this process (the control plane runs in it): a directory there makes the write fail.
  await mkdir(join(files.dir, `.routes.yaml.${process.pid}.tmp`));
  const base = `http://127.0.0.1:${plane.address.port}`;
  const answer = await request(
    plane.address.port,
    'PUT',
    '/v1/services/backend/weights',
    { 'content-type': 'application/json' },
    '{"weights":{"v1":50,"v2":50}}',
  );
  fromTable(answer, 'TRELLIS_E_WEIGHTS_REFUSED', 409, 'a write that fails');
  assert.match(String(answer.body.message), /^the weights of backend were not changed: EISDIR/);
  await assert.rejects(applyWeights({ url: base, token: plane.adminToken }, 'backend', { v1: 50, v2: 50 }, 1000), (e: unknown) => {
    assert.ok(e instanceof TrellisError);
    assert.equal(e.code, 'TRELLIS_E_WEIGHTS_REFUSED', e.message);
    assert.match(e.message, /^the weights of backend were not changed: EISDIR/);
    return true;
  });
});
