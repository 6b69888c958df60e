// Raw TCP through a sidecar pair: bytes both ways, metrics, and failover past a dead endpoint.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

let echo: net.Server;
let inbound: Sidecar;
let outbound: Sidecar;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

before(async () => {
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  inbound = await startInbound('redis', 'default', (echo.address() as net.AddressInfo).port, 'tcp');
  const dead = await freePort();
  outbound = await startOutbound('backend', {
    redis: {
      service: 'redis',
      protocol: 'tcp',
      routes: [],
      backends: {
        redis: {
          name: 'redis',
          endpoints: [
            { id: 'dead', host: '127.0.0.1', port: dead, version: 'default' },
            { id: 'live', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'default' },
          ],
        },
      },
    },
  });
});

after(async () => {
  await outbound.close();
  await inbound.close();
  await closeServer(echo);
});

function roundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let got = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= payload.length) {
        s.end();
        resolve(Buffer.concat(chunks));
      }
    });
    s.on('error', reject);
    s.write(payload);
  });
}

test('bytes flow both ways through both sidecars, past a dead endpoint', async () => {
  const port = outbound.addresses.upstreams.redis!.port;
  for (let i = 0; i < 4; i++) {
    const payload = Buffer.alloc(256 * 1024 + i, i);
    assert.deepEqual(await roundTrip(port, payload), payload);
  }
  // Connections are counted as they close, which reaches the sidecars after the echo.
  await eventually(async () => {
    const conns = await outbound.metrics.registry.getSingleMetricAsString('trellis_tcp_connections_total');
    assert.match(conns, /direction="outbound",source="backend",destination="redis"[^}]*\} 4/);
    const bytes = await inbound.metrics.registry.getSingleMetricAsString('trellis_tcp_bytes_total');
    assert.match(bytes, /direction="inbound"[^}]*flow="sent"[^}]*\} 1048582/);
  });
});

test('the inbound side holds TCP to tcpIdleTimeout too: a client that goes quiet is closed, counted', async () => {
  const port = (echo.address() as net.AddressInfo).port;
  const quiet = await startInbound('cache', 'default', port, 'tcp');
  try {
    // Tiny so the test is quick (the default is an hour); PERMISSIVE, so a plaintext client reaches the app.
    quiet.apply({
      version: 2,
      service: 'cache',
      inboundProtocol: 'tcp',
      upstreams: {},
      meshServices: ['cache', 'web'],
      mtls: { mode: 'PERMISSIVE' },
      limits: { tcpIdleTimeoutMs: 50 },
    });
    const s = net.connect(quiet.addresses.inbound!.port, '127.0.0.1');
    let closed = false;
    s.on('error', () => {});
    s.on('close', () => (closed = true));
    s.resume(); // the echo is read and dropped: a paused socket never sees the end, nor closes
    s.write('x');
    await eventually(() => closed, { what: 'the quiet connection closed' });
    await eventually(async () => {
      const idle = await quiet.metrics.registry.getSingleMetricAsString('trellis_tcp_idle_timeouts_total');
      assert.match(idle, /direction="inbound",source="unknown",destination="cache"[^}]*\} 1/);
    });
  } finally {
    await quiet.close();
  }
});
