// Who may send spans to the control plane's receiver (POST /v1/traces): a process on
// loopback, or a proxy anywhere with its bootstrap credential (an isolated sidecar in its
// own network namespace is not on loopback); a credential of another instance, a forged
// one or none from off the machine are refused. And a real sidecar's exports carry the
// headers that pass.
import assert from 'node:assert/strict';
import type http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { traceAccess } from '../../src/control/admin/traces-api.js';
import { CREDENTIAL_HEADERS, credentialHeaders, headersCarryCredential, mintCredential } from '../../src/security/bootstrap-credential.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { eventually } from '../helpers/eventually.js';
import { closeServer, get, listenHttp, quietLog } from '../helpers/proxy-pair.js';

const SECRET = 'trace-receiver-test-secret';
const subject = { kind: 'sidecar', service: 'frontend', id: 'frontend-v1-0' } as const;
const valid = credentialHeaders(subject, mintCredential(SECRET, subject));

function request(remoteAddress: string, headers: Record<string, string | string[]> = {}): IncomingMessage {
  return { socket: { remoteAddress }, headers } as unknown as IncomingMessage;
}

const authorize = traceAccess({ bootstrapSecret: SECRET, admin: (req) => req.headers.authorization === 'Bearer admin' })!;

test('the receiver takes loopback callers and proxies with a valid credential from any address', () => {
  assert.equal(authorize(request('127.0.0.1'), 'receive'), true);
  assert.equal(authorize(request('::1'), 'receive'), true);
  assert.equal(authorize(request('10.77.0.3', valid), 'receive'), true);
  assert.equal(authorize(request('10.77.0.3', { authorization: 'Bearer admin' }), 'receive'), true);
});

test('the receiver refuses off-loopback callers without a valid credential of the instance they name', () => {
  assert.equal(authorize(request('10.77.0.3'), 'receive'), false);
  // Another instance's id with this credential; another service; an unknown kind; a forged credential.
  assert.equal(authorize(request('10.77.0.3', { ...valid, [CREDENTIAL_HEADERS.id]: 'frontend-v1-1' }), 'receive'), false);
  assert.equal(authorize(request('10.77.0.3', { ...valid, [CREDENTIAL_HEADERS.service]: 'backend' }), 'receive'), false);
  assert.equal(authorize(request('10.77.0.3', { ...valid, [CREDENTIAL_HEADERS.kind]: 'control' }), 'receive'), false);
  assert.equal(authorize(request('10.77.0.3', { ...valid, [CREDENTIAL_HEADERS.credential]: mintCredential('another secret', subject) }), 'receive'), false);
  assert.equal(authorize(request('10.77.0.3', { ...valid, [CREDENTIAL_HEADERS.credential]: 'tbc1.' }), 'receive'), false);
  // A repeated header is not guessed at.
  assert.equal(authorize(request('10.77.0.3', { ...valid, [CREDENTIAL_HEADERS.credential]: [valid[CREDENTIAL_HEADERS.credential]!, 'x'] }), 'receive'), false);
  // Missing any one of the four.
  for (const name of Object.values(CREDENTIAL_HEADERS)) {
    const headers: Record<string, string> = { ...valid };
    delete headers[name];
    assert.equal(authorize(request('10.77.0.3', headers), 'receive'), false, `without ${name}`);
  }
});

test('a proxy credential opens only the receiver: the reads still take the admin token', () => {
  assert.equal(authorize(request('10.77.0.3', valid), 'list'), false);
  assert.equal(authorize(request('127.0.0.1', valid), 'show'), false);
  assert.equal(authorize(request('10.77.0.3', { authorization: 'Bearer admin' }), 'list'), true);
});

test("a sidecar's span exports carry its credential in the headers the receiver checks", async () => {
  const exports: http.IncomingHttpHeaders[] = [];
  // Stands in for the control plane: records trace exports, answers everything else 404.
  const control = await listenHttp((req, res) => {
    if (req.method === 'POST' && req.url === '/v1/traces') exports.push(req.headers);
    req.resume();
    res.statusCode = req.url === '/v1/traces' ? 200 : 404;
    res.end('{}');
  });
  const app = await listenHttp((_req, res) => res.end('ok'));
  const sidecar = new Sidecar({
    ...subject,
    version: 'v1',
    control: `http://127.0.0.1:${control.port}`,
    credential: mintCredential(SECRET, subject),
    app: { host: '127.0.0.1', port: app.port },
    inbound: { host: '127.0.0.1', port: 0 },
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
  });
  try {
    await sidecar.start();
    sidecar.apply({
      version: 1,
      service: 'frontend',
      inboundProtocol: 'http',
      upstreams: {},
      meshServices: ['frontend'],
      tracing: { samplingRate: 1, flushIntervalMs: 20 },
    });
    await get(sidecar.addresses.inbound!.port, '/traced');
    const headers = await eventually(() => exports[0] ?? false, { what: 'a span export' });
    assert.equal(headersCarryCredential(SECRET, headers), true);
    assert.equal(headersCarryCredential('another secret', headers), false);
  } finally {
    await sidecar.close();
    await closeServer(app.server);
    await closeServer(control.server);
  }
});
