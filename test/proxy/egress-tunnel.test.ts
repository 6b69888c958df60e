// The egress gateway's tunnel SNI (`outbound_.<port>_._.<key>`), the REGISTRY_ONLY SNI
// check, and the ClientHello peek they share with Passthrough ports: the bytes it read go
// back to the socket exactly once (putting them back on a flowing socket used to hand
// them straight back to the peek, which grew its buffer until Buffer.concat threw).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { externalOfTunnelSni, sniAllowed } from '../../src/proxy/egress/tunnel.js';
import { peekClientHello, type ClientHelloPeek } from '../../src/proxy/gateway/client-hello.js';
import { tunnelSniOf } from '../../src/control/compile/external.js';

const open: net.Socket[] = [];
const servers: net.Server[] = [];
after(async () => {
  for (const s of open) s.destroy();
  for (const s of servers) await new Promise((r) => s.close(r));
});

test('the tunnel SNI names the ExternalService; anything else names none', () => {
  assert.equal(tunnelSniOf(5432, 'db'), 'outbound_.5432_._.db');
  assert.equal(externalOfTunnelSni(tunnelSniOf(5432, 'db')), 'db');
  assert.equal(externalOfTunnelSni(tunnelSniOf(443, 'api.team-a')), 'api.team-a');
  for (const bad of ['db', 'outbound_.5432_._.', 'outbound_.123456_._.db', 'outbound_.5432_._.DB', `outbound_.1_._.${'a'.repeat(300)}`, 'outbound_.1_._.db\n'])
    assert.equal(externalOfTunnelSni(bad), undefined, bad);
});

test('a TLS client SNI passes only when declared (case-insensitively), and a hello without one never', () => {
  assert.equal(sniAllowed('web.example.test', ['web.example.test']), true);
  assert.equal(sniAllowed('WEB.example.test', ['web.example.test']), true);
  assert.equal(sniAllowed('other.example.test', ['web.example.test']), false);
  assert.equal(sniAllowed(undefined, ['web.example.test']), false);
});

async function peekOne(send: (port: number) => net.Socket): Promise<{ read: ClientHelloPeek; after: Buffer }> {
  let resolve!: (v: { read: ClientHelloPeek; after: Buffer }) => void;
  const done = new Promise<{ read: ClientHelloPeek; after: Buffer }>((r) => (resolve = r));
  const server = net.createServer((socket) => {
    open.push(socket);
    peekClientHello(
      socket,
      5000,
      (read) => {
        // What a backend would get: the bytes put back, read once.
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.resume();
        setImmediate(() => resolve({ read, after: Buffer.concat(chunks) }));
      },
      (err) => assert.fail(String(err)),
    );
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = send((server.address() as net.AddressInfo).port);
  client.on('error', () => {});
  open.push(client);
  return done;
}

test('a peeked ClientHello gives its SNI and is put back whole, once', async () => {
  const { read, after: replay } = await peekOne((port) => tls.connect({ host: '127.0.0.1', port, servername: 'web.example.test' }));
  assert.deepEqual(read, { kind: 'hello', sni: 'web.example.test' });
  assert.equal(replay[0], 0x16, 'the replayed bytes start with the handshake record');
  assert.ok(replay.length < 16 * 1024 + 20, `put back once (${replay.length} bytes)`);
});

test('bytes that are no ClientHello are refused, not replayed', async () => {
  const { read } = await peekOne((port) =>
    net.connect({ host: '127.0.0.1', port }, function (this: net.Socket) {
      this.write('GET / HTTP/1.1\r\n\r\n');
    }),
  );
  assert.deepEqual(read, { kind: 'invalid' });
});
