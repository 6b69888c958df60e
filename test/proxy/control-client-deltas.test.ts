// The proxy's control client and deltas (issue 17): it assembles each delta onto the
// snapshot it holds and applies the whole result (unchanged upstreams keep their objects),
// ACKs per version, NACKs a delta that is malformed, and asks for a full snapshot (resync)
// when a delta does not follow what it holds.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { ControlClient } from '../../src/proxy/control-client.js';
import type { Snapshot, UpstreamSnapshot } from '../../src/api/protocol.js';
import { eventually } from '../helpers/eventually.js';

function upstream(service: string, weight: number): UpstreamSnapshot {
  return {
    service,
    protocol: 'http',
    routes: [{ backends: [{ backend: service, weight }] }] as UpstreamSnapshot['routes'],
    backends: { [service]: { name: service, endpoints: [] } },
  };
}

const full: Snapshot = { version: 1, service: 'web', inboundProtocol: 'http', upstreams: { a: upstream('a', 1), b: upstream('b', 1) } };
const info = { id: 'web-0', service: 'web', version: 'default', kind: 'sidecar' as const, upstreams: [], pid: 1, admin: { host: '127.0.0.1', port: 1 } };

/** A control plane that writes `script(connection)` on each stream and records what the proxy sends. */
async function fakeControl(script: (connection: number) => object[]): Promise<{ url: string; received: string[]; close(): Promise<void> }> {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = http.createServer((_req, res) => res.end());
  server.on('upgrade', (_req, socket: net.Socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('data', (t: Buffer) => received.push(...t.toString('utf8').split('\n').filter(Boolean)));
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: trellis-stream\r\nConnection: Upgrade\r\n\r\n');
    for (const m of script(++connections)) socket.write(`${JSON.stringify(m)}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    received,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

test('deltas are assembled onto the snapshot held, applied whole, and ACKed per version', async () => {
  const cp = await fakeControl(() => [
    { type: 'snapshot', version: 1, snapshot: full, resources: { a: 1, b: 1 } },
    { type: 'delta', version: 2, from: 1, upstreams: { b: upstream('b', 7) }, resources: { b: 2 } },
    { type: 'delta', version: 3, from: 2, upstreams: {}, removed: ['a'], base: { service: 'web', inboundProtocol: 'tcp' }, resources: {} },
  ]);
  const applied: Snapshot[] = [];
  const client = new ControlClient({ url: cp.url, info, apply: (s) => void applied.push(s) });
  try {
    client.start();
    await eventually(() => applied.length === 3 && cp.received.filter((l) => l.includes('"ack"')).length === 3, { what: 'three applied and ACKed' });
    assert.deepEqual(Object.keys(applied[1]!.upstreams), ['a', 'b']);
    assert.equal(applied[1]!.upstreams.b!.routes[0]!.backends[0]!.weight, 7);
    assert.equal(applied[1]!.upstreams.a, applied[0]!.upstreams.a, 'an upstream the delta did not name keeps its object');
    assert.deepEqual(applied[2], { version: 3, service: 'web', inboundProtocol: 'tcp', upstreams: { b: applied[1]!.upstreams.b } });
    assert.deepEqual(
      cp.received.filter((l) => l.includes('"ack"')).map((l) => (JSON.parse(l) as { version: number }).version),
      [1, 2, 3],
    );
  } finally {
    client.stop();
    await cp.close();
  }
});

test('a delta that does not follow the snapshot held asks for a resync; a malformed one is NACKed', async () => {
  const cp = await fakeControl(() => [
    { type: 'snapshot', version: 1, snapshot: full },
    { type: 'delta', version: 3, from: 2, upstreams: {} },
    { type: 'delta', version: 4, from: 1, upstreams: [] },
  ]);
  const applied: Snapshot[] = [];
  const client = new ControlClient({ url: cp.url, info, apply: (s) => void applied.push(s) });
  try {
    client.start();
    await eventually(() => cp.received.some((l) => l.includes('"nack"')), { what: 'the NACK' });
    const types = cp.received.map((l) => JSON.parse(l) as { type: string; version?: number });
    assert.deepEqual(
      types.filter((m) => m.type !== 'hello'),
      [
        { type: 'ack', version: 1 },
        { type: 'resync', version: 1 },
        { type: 'nack', version: 4, error: 'delta.upstreams must be an object' },
      ],
    );
    assert.equal(applied.length, 1, 'only the full snapshot was applied');
  } finally {
    client.stop();
    await cp.close();
  }
});
