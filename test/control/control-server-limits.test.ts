// The control plane's HTTP server holds every client to its limits (server-limits.ts):
// a flood of connections over the cap is closed on arrival and counted while proxies and
// /healthz get through once the count drops; a stream that never says hello is ended at
// its deadline (a manual clock: no real seconds); a request whose head or body does not
// arrive in time is cut with 408, and an upgraded stream outlives those timeouts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../src/control/control-plane.js';
import type { HostPort } from '../../src/api/protocol.js';
import { config, connect, MESH_YAML, routesYaml, service, sidecar, tempDir, TEST_BOOTSTRAP_SECRET, type FakeProxy } from './helpers.js';
import { Distributor, type HelloVerdict, type VerifyHello } from '../../src/control/distribute/distributor.js';
import { MeshModel } from '../../src/control/model.js';
import { ControlMetrics } from '../../src/control/control-metrics.js';
import { eventually } from '../helpers/eventually.js';
import { ManualClock } from '../helpers/manual-clock.js';

/** Starts a control plane with `extra`, runs `body`, and stops it (and what `body` opened) even when it fails. */
async function withPlane(
  extra: Partial<ControlPlaneOptions>,
  body: (plane: ControlPlane, logs: string[], open: (s: net.Socket | FakeProxy) => void) => Promise<void>,
): Promise<void> {
  const files = await tempDir();
  const logs: string[] = [];
  const sockets: (net.Socket | FakeProxy)[] = [];
  let plane: ControlPlane | undefined;
  try {
    const mesh = await files.write('mesh.yaml', MESH_YAML);
    await files.write('routes.yaml', routesYaml('backend-v1'));
    plane = await startControlPlane({
      bootstrapSecret: TEST_BOOTSTRAP_SECRET,
      configPaths: [mesh],
      admin: { host: '127.0.0.1', port: 0 },
      log: (l) => logs.push(l),
      pushDebounceMs: 5,
      health: { probe: async () => ({ ok: true }) },
      ...extra,
    });
    await body(plane, logs, (s) => sockets.push(s));
  } finally {
    for (const s of sockets) (s instanceof net.Socket ? s : s.socket).destroy();
    await plane?.close();
    await files.remove();
  }
}

/** GET /healthz on a connection of its own (no keep-alive pool holding it open afterwards): its status. */
function healthz(address: HostPort): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address.host, port: address.port, path: '/healthz', agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

/** The value of a counter (with its labels, as written) in the control plane's metrics; 0 when absent. */
async function counter(plane: ControlPlane, series: string): Promise<number> {
  const line = (await plane.metrics.text()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const DROPPED = 'trellis_control_connections_refused_total{reason="max-connections"}';
const HELLO_TIMEOUTS = 'trellis_control_hello_timeouts_total';

/** A raw connection, its bytes received so far, and whether (and when) it closed. */
function rawConnection(address: HostPort, send: string): { socket: net.Socket; received: () => string; closed: Promise<void>; isClosed: () => boolean } {
  const socket = net.connect(address.port, address.host);
  let text = '';
  let isClosed = false;
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true;
      resolve();
    }),
  );
  if (send !== '') socket.write(send);
  return { socket, received: () => text, closed, isClosed: () => isClosed };
}

test('connections over --max-connections are closed as they arrive and counted; a proxy and /healthz get in once one closes', async () => {
  await withPlane({ limits: { maxConnections: 4, helloTimeoutMs: 600_000 } }, async (plane, logs, open) => {
    // Four streams fill the server: each upgrade (101) shows its connection was accepted.
    const held: FakeProxy[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await connect(plane.address);
      open(p);
      held.push(p);
    }
    // A flood on top of them: every one closed at once, none answered.
    const flood = Array.from({ length: 20 }, () => rawConnection(plane.address, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    for (const f of flood) open(f.socket);
    await Promise.all(flood.map((f) => f.closed));
    assert.deepEqual(
      flood.map((f) => f.received()),
      flood.map(() => ''),
      'nothing answered over the cap',
    );
    await assert.rejects(healthz(plane.address), 'the admin API is out of reach at the cap');
    assert.ok((await counter(plane, DROPPED)) >= 21, 'every refused connection counted');
    assert.ok(
      logs.some((l) => /refused a connection: 4 are open \(--max-connections\)/.test(l)),
      'logged',
    );

    // One stream goes: /healthz gets through, then (when it has gone) a proxy's stream and hello.
    await held.shift()!.close();
    assert.equal(await eventually(() => healthz(plane.address), { what: '/healthz below the cap' }), 200);
    await held.shift()!.close();
    const proxy = await eventually(() => connect(plane.address), { what: 'a stream below the cap' });
    open(proxy);
    proxy.send({ type: 'hello', proxy: sidecar('frontend-limits', 'frontend') });
    assert.equal((await proxy.snapshot()).snapshot.service, 'frontend');
  });
});

test('a stream whose hello is not accepted within --hello-timeout is ended with a protocol error, counted and logged', async () => {
  const clock = new ManualClock(1000);
  await withPlane({ limits: { helloTimeoutMs: 10_000 }, streamClock: clock }, async (plane, logs, open) => {
    const silent = await connect(plane.address);
    open(silent);
    const partial = await connect(plane.address);
    open(partial);
    partial.sendRaw('{"type":"hello","proxy":{"id":"half'); // never finished
    const proxy = await connect(plane.address);
    open(proxy);
    proxy.send({ type: 'hello', proxy: sidecar('frontend-in-time', 'frontend') });
    await proxy.snapshot();

    clock.advance(9_999);
    assert.equal(await counter(plane, HELLO_TIMEOUTS), 0, 'not before the deadline');
    clock.advance(1);
    assert.equal(await counter(plane, HELLO_TIMEOUTS), 2, 'the silent and the half-said stream, not the proxy that said hello');
    for (const p of [silent, partial]) {
      const err = await p.next((m) => m.type === 'error');
      assert.deepEqual([err.type, err.type === 'error' && err.code], ['error', 'TRELLIS_E_BAD_REQUEST']);
      assert.match(err.type === 'error' ? err.message : '', /no hello accepted within 10000 ms/);
      await p.closed;
    }
    assert.ok(
      logs.some((l) => /stream from 127\.0\.0\.1 ended: no hello came within 10000 ms/.test(l)),
      logs.join('\n'),
    );
    // The proxy that said hello in time keeps its stream, and is not held to the deadline again.
    clock.advance(60_000);
    proxy.send({ type: 'ping' });
    assert.equal((await proxy.next((m) => m.type === 'pong')).type, 'pong');
    assert.equal(await counter(plane, HELLO_TIMEOUTS), 2);
  });
});

test('a request whose head or body is slower than --header-timeout / --request-timeout is cut with 408; a proxy stream outlives both', async () => {
  await withPlane({ limits: { headersTimeoutMs: 200, requestTimeoutMs: 400, helloTimeoutMs: 600_000 } }, async (plane, _logs, open) => {
    const proxy = await connect(plane.address);
    open(proxy);
    proxy.send({ type: 'hello', proxy: sidecar('frontend-long', 'frontend') });
    await proxy.snapshot();
    const idle = rawConnection(plane.address, ''); // connects and sends nothing
    const slowHead = rawConnection(plane.address, 'GET /healthz HTTP/1.1\r\nHost: x\r\n'); // the head never ends
    const slowBody = rawConnection(
      plane.address,
      `PUT /v1/services/backend/weights HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${plane.adminToken}\r\nContent-Length: 100\r\n\r\n{"wei`,
    );
    for (const c of [idle, slowHead, slowBody]) open(c.socket);
    // Bounded for a build without the limits (Node's own are 60 s and 300 s); the cut itself comes at 0.2 s and 0.4 s.
    await eventually(() => idle.isClosed() && slowHead.isClosed() && slowBody.isClosed(), { what: 'the slow requests cut' });
    for (const c of [idle, slowHead, slowBody]) assert.match(c.received(), /^HTTP\/1\.1 408 /);
    assert.equal(await counter(plane, 'trellis_control_request_timeouts_total'), 3);
    // The stream was upgraded before them and has lived past the request timeout: still served.
    assert.equal(proxy.socket.destroyed, false);
    proxy.send({ type: 'ping' });
    assert.equal((await proxy.next((m) => m.type === 'pong')).type, 'pong');
    assert.equal(await healthz(plane.address), 200, 'a request in time is answered');
  });
});

test('limits that are not positive whole numbers, or a header timeout over the request timeout, are refused before anything starts', async () => {
  for (const limits of [{ maxConnections: 0 }, { helloTimeoutMs: -1 }, { headersTimeoutMs: 1.5 }, { headersTimeoutMs: 5000, requestTimeoutMs: 1000 }]) {
    await assert.rejects(
      startControlPlane({ configPaths: ['/nonexistent/mesh.yaml'], admin: { host: '127.0.0.1', port: 0 }, log: () => {}, limits }),
      (err: Error & { code?: string }) => err.code === 'TRELLIS_E_USAGE',
      JSON.stringify(limits),
    );
  }
});

test('a hello still being verified at the deadline ends the stream, and a verdict that comes later registers nothing', async () => {
  const clock = new ManualClock(0);
  const model = new MeshModel();
  model.setConfig(config([service('frontend')]), ['mesh.yaml']);
  const metrics = new ControlMetrics();
  const logs: string[] = [];
  let verdict: ((v: HelloVerdict) => void) | undefined;
  let asked: () => void = () => {};
  const verifying = new Promise<void>((r) => {
    asked = r;
  });
  // A TokenReview that hangs until the test answers it.
  const verifyHello: VerifyHello = () =>
    new Promise<HelloVerdict>((resolve) => {
      verdict = resolve;
      asked();
    });
  const distributor = new Distributor({ model, metrics, clock, log: (l) => logs.push(l), helloTimeoutMs: 5000, verifyHello });
  const server = http.createServer();
  server.on('upgrade', (req, socket, head) => distributor.handleUpgrade(req, socket, head));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  distributor.start();
  let proxy: FakeProxy | undefined;
  try {
    proxy = await connect({ host: '127.0.0.1', port });
    const info = sidecar('frontend-slow', 'frontend');
    proxy.send({ type: 'hello', proxy: info });
    await verifying;
    clock.advance(5000);
    const err = await proxy.next((m) => m.type === 'error');
    assert.match(err.type === 'error' ? err.message : '', /no hello accepted within 5000 ms/);
    await proxy.closed;
    assert.ok(
      logs.some((l) => /its hello was still being verified within 5000 ms/.test(l)),
      logs.join('\n'),
    );
    assert.match(await metrics.text(), /^trellis_control_hello_timeouts_total 1$/m);
    verdict!({ ok: true, proxy: info });
    await new Promise((r) => setImmediate(r));
    assert.equal(model.instances().length, 0, 'the late verdict registered nothing');
    assert.equal(distributor.connected, 0);
  } finally {
    proxy?.socket.destroy();
    distributor.stop();
    metrics.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
