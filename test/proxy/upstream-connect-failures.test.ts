// An upstream that can't be reached: over TCP, a connect that hangs is cut at
// tcpConnectTimeout, a refused one is given up, and either way the client's connection is
// closed, the failure counted with its reason, and the access log line names the endpoint
// tried and the error table's token (connect-failed), never "no-endpoints" when there was
// one; over HTTP the answer is the table's 502 connect-failed, logged with the endpoint.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import { Worker } from 'node:worker_threads';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { startOutbound } from '../helpers/proxy-pair.js';
import { withPeerMtls } from '../helpers/test-identity.js';
import { eventually } from '../helpers/eventually.js';

/**
 * A port whose connects hang: a worker thread listens (backlog 1) and then blocks its
 * event loop, so it never accepts. Once fillers take the kernel's accept queue, a SYN
 * to the port is dropped and the connect waits, as with a host that does not answer.
 */
const NEVER_ACCEPTS = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const server = net.createServer().listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
  parentPort.postMessage(server.address().port);
  const flag = new Int32Array(workerData);
  while (Atomics.load(flag, 0) === 0) Atomics.wait(flag, 0, 0, 50);
  server.close();
  process.exit(0);
});`;
let stopFlag: Int32Array;
let worker: Worker;
let hangingPort: number;
const fillers: net.Socket[] = [];
let outbound: Sidecar;
let logDir: string;
let logFile: string;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function tcpUpstream(name: string, port: number, protocol: 'tcp' | 'http' = 'tcp'): UpstreamSnapshot {
  return {
    service: name,
    protocol,
    routes: [],
    backends: { [name]: { name, endpoints: [{ id: `${name}-0`, host: '127.0.0.1', port, version: 'default' }] } },
  };
}

before(async () => {
  const shared = new SharedArrayBuffer(4);
  stopFlag = new Int32Array(shared);
  worker = new Worker(NEVER_ACCEPTS, { eval: true, workerData: shared });
  hangingPort = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // More than the accept queue holds: the ones beyond it hang as the proxy's will.
  for (let i = 0; i < 4; i++) fillers.push(net.connect(hangingPort, '127.0.0.1').on('error', () => {}));
  logDir = await mkdtemp(path.join(tmpdir(), 'trellis-tcp-connect-'));
  logFile = path.join(logDir, 'access.log');
  const upstreams = {
    hangs: tcpUpstream('hangs', hangingPort),
    refuses: tcpUpstream('refuses', await freePort()),
    'http-refuses': tcpUpstream('http-refuses', await freePort(), 'http'),
  };
  outbound = await startOutbound('web', upstreams, { accessLog: logFile });
  // Short, so the test is quick (the default is 10 s).
  outbound.apply({
    version: 2,
    service: 'web',
    inboundProtocol: 'http',
    upstreams: withPeerMtls(upstreams),
    meshServices: ['hangs', 'http-refuses', 'refuses', 'web'],
    limits: { tcpConnectTimeoutMs: 100 },
  });
});

after(async () => {
  await outbound?.close();
  for (const s of fillers) s.destroy();
  Atomics.store(stopFlag, 0, 1);
  await worker.terminate();
  await rm(logDir, { recursive: true, force: true });
});

/** Connects to `port`, sends a byte, resolves when the proxy closes the connection. */
function closedByProxy(port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('x'));
    s.on('error', () => {});
    s.resume();
    s.on('close', () => resolve());
  });
}

async function logLines(): Promise<Record<string, unknown>[]> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('a connect that hangs is cut at tcpConnectTimeout: the client closed, counted as timeout, logged with the endpoint', async () => {
  await closedByProxy(outbound.addresses.upstreams.hangs!.port);
  await eventually(async () => {
    const failed = await outbound.metrics.registry.getSingleMetricAsString('trellis_tcp_connect_failures_total');
    assert.match(failed, /direction="outbound",source="web",destination="hangs",reason="timeout"[^}]*\} 1/);
  });
  await eventually(async () => {
    const line = (await logLines()).find((l) => l.destination === 'hangs');
    assert.ok(line, 'an access log line for the connection');
    assert.equal(line.protocol, 'tcp');
    assert.equal(line.upstream, `127.0.0.1:${hangingPort}`);
    assert.match(String(line.error), /^connect-failed: no connection in 100 ms$/);
  });
});

test('a refused connect: the client closed, counted as connect, logged with the endpoint it tried', async () => {
  await closedByProxy(outbound.addresses.upstreams.refuses!.port);
  await eventually(async () => {
    const failed = await outbound.metrics.registry.getSingleMetricAsString('trellis_tcp_connect_failures_total');
    assert.match(failed, /direction="outbound",source="web",destination="refuses",reason="connect"[^}]*\} 1/);
  });
  await eventually(async () => {
    const line = (await logLines()).find((l) => l.destination === 'refuses');
    assert.ok(line, 'an access log line for the connection');
    assert.match(String(line.upstream), /^127\.0\.0\.1:\d+$/);
    assert.match(String(line.error), /^connect-failed: /);
  });
});

test('HTTP too: a refused connect is answered 502 connect-failed and logged with the endpoint', async () => {
  const port = outbound.addresses.upstreams['http-refuses']!.port;
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(res.status, 502);
  assert.equal(res.headers.get('trellis-error'), 'connect-failed');
  await res.arrayBuffer();
  await eventually(async () => {
    const line = (await logLines()).find((l) => l.destination === 'http-refuses');
    assert.ok(line, 'an access log line for the request');
    assert.equal(line.status, 502);
    assert.match(String(line.upstream), /^127\.0\.0\.1:\d+$/);
    assert.equal(line.error, 'connect-failed');
  });
});
