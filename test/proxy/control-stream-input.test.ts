// What a proxy reads from the control plane's stream is input too: JSON that is no
// message (`null`, a number) is ignored, never the end of the proxy (it threw a
// TypeError out of the socket's data handler), and a message that never ends is not
// held without bound: the stream is dropped and made again.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { ControlClient } from '../../src/proxy/control-client.js';
import type { Snapshot } from '../../src/api/protocol.js';
import { eventually } from '../helpers/eventually.js';

/** A control plane that answers the stream upgrade and writes `lines`, and records what the proxy sends. */
async function fakeControl(
  write: (socket: net.Socket, connection: number) => void,
): Promise<{ url: string; received: string[]; connections: () => number; close(): Promise<void> }> {
  const received: string[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.end());
  server.on('upgrade', (_req, socket: net.Socket) => {
    sockets.add(socket);
    connections++;
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: trellis-stream\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (t: Buffer) => received.push(...t.toString('utf8').split('\n').filter(Boolean)));
    socket.on('error', () => {});
    write(socket, connections);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const snapshot: Snapshot = { version: 7, service: 'web', inboundProtocol: 'http', upstreams: {} };
const info = { id: 'web-0', service: 'web', version: 'default', kind: 'sidecar' as const, upstreams: [], pid: 1, admin: { host: '127.0.0.1', port: 1 } };

test('JSON that is no message is ignored, and the snapshot after it is applied', async () => {
  const cp = await fakeControl((s) => s.write(`null\n42\n"text"\n${JSON.stringify({ type: 'snapshot', version: 7, snapshot })}\n`));
  const applied: Snapshot[] = [];
  const client = new ControlClient({ url: cp.url, info, apply: (s) => void applied.push(s) });
  try {
    client.start();
    await eventually(() => applied.length === 1 && cp.received.some((l) => l.includes('"ack"')), { what: 'the snapshot applied and acknowledged' });
    assert.equal(applied[0]!.version, 7);
  } finally {
    client.stop();
    await cp.close();
  }
});

test('a message that never ends is not held: the stream is dropped and made again', { timeout: 60_000 }, async () => {
  const chunk = 'x'.repeat(1024 * 1024);
  const cp = await fakeControl((s, n) => {
    if (n > 1) return;
    // 80 MiB with no newline, written as the socket drains.
    let left = 80;
    const more = (): void => {
      while (left > 0) {
        left--;
        if (!s.write(chunk)) return void s.once('drain', more);
      }
    };
    more();
  });
  const client = new ControlClient({ url: cp.url, info, apply: () => {} });
  try {
    client.start();
    await eventually(() => cp.connections() >= 2, { timeoutMs: 30_000, what: 'the proxy to drop the stream and connect again' });
  } finally {
    client.stop();
    await cp.close();
  }
});
