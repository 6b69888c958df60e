// `trellis proxy --credential-file`: the hello carries the credential in the file as it is
// when each connection is made, so a token the kubelet rotated is the one the next hello
// sends; a file that is not there yet delays the join instead of ending the proxy.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlClient } from '../../src/proxy/control-client.js';
import { credentialReader } from '../../src/proxy/credential-file.js';
import { eventually } from '../helpers/eventually.js';

let dir: string;
let server: http.Server;
let url: string;
const sockets = new Set<net.Socket>();
/** The credential of every hello received, in order. */
const hellos: (string | undefined)[] = [];

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'trellis-credential-'));
  server = http.createServer((_req, res) => res.end());
  server.on('upgrade', (_req, socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: trellis-stream\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (b: Buffer) => {
      for (const line of b.toString('utf8').split('\n').filter(Boolean)) {
        const msg = JSON.parse(line) as { type: string; credential?: string };
        if (msg.type === 'hello') hellos.push(msg.credential);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const info = { id: 'cart-7d9f', service: 'cart', version: 'v1', kind: 'sidecar' as const, upstreams: [], pid: 1, admin: { host: '127.0.0.1', port: 1 } };

test('each hello carries the token in the file at the time: a rotated token is sent on the next connection', async () => {
  const file = path.join(dir, 'token');
  const client = new ControlClient({ url, info, credential: credentialReader(file), apply: () => {} });
  hellos.length = 0;
  try {
    client.start(); // the file is not there yet: the client retries, it does not throw
    await writeFile(file, 'token-one\n');
    await eventually(() => hellos.length === 1, { what: 'the first hello' });
    assert.equal(hellos[0], 'token-one');
    // The kubelet swaps the file atomically; the next connection sends the new token.
    await writeFile(`${file}.new`, 'token-two');
    await rename(`${file}.new`, file);
    for (const s of sockets) s.destroy();
    await eventually(() => hellos.length === 2, { what: 'the hello after the stream dropped' });
    assert.equal(hellos[1], 'token-two');
  } finally {
    client.stop();
  }
});
