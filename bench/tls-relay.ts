// A bare Node.js TLS relay, the floor of any edge written on Node's TLS sockets: TLS
// terminated with the ingress scenario's certificate, each client connection relayed byte
// for byte over a mutual-TLS connection of its own to the upstream (nginx's inbound in
// bench/ingress-tls.ts). No HTTP, no pool, no layers: what is left of the Trellis edge's
// CPU per request is what Node's sockets, TLSWrap and event loop cost, so the distance from
// this relay to the gateway is what the proxy's own work costs (--only ingress-tls --relay).
// Loopback only; runs until SIGTERM/SIGINT.
//
//   node dist/bench/tls-relay.js --port P --cert F --key F --upstream-port N \
//     --client-cert F --client-key F --ca F --servername NAME
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'upstream-port': { type: 'string' },
    'client-cert': { type: 'string' },
    'client-key': { type: 'string' },
    ca: { type: 'string' },
    servername: { type: 'string' },
  },
});
const port = Number(values.port);
const upstreamPort = Number(values['upstream-port']);
const files = [values.cert, values.key, values['client-cert'], values['client-key'], values.ca];
if (!Number.isInteger(port) || !Number.isInteger(upstreamPort) || files.some((f) => f === undefined) || values.servername === undefined) {
  process.stderr.write(
    'usage: node dist/bench/tls-relay.js --port P --cert F --key F --upstream-port N --client-cert F --client-key F --ca F --servername NAME\n',
  );
  process.exit(2);
}
const [cert, key, clientCert, clientKey, ca] = files.map((f) => readFileSync(f!));
const servername = values.servername;

/** Copies `from`'s bytes to `to`, pausing `from` while `to` is backed up. */
function relay(from: tls.TLSSocket, to: tls.TLSSocket): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
  from.on('end', () => to.end());
}

const sockets = new Set<tls.TLSSocket>();
const server = tls.createServer({ cert, key, ALPNProtocols: ['http/1.1'], minVersion: 'TLSv1.2' }, (client) => {
  const upstream = tls.connect({ host: '127.0.0.1', port: upstreamPort, cert: clientCert, key: clientKey, ca, servername, minVersion: 'TLSv1.3' });
  for (const s of [client, upstream]) {
    s.setNoDelay(true);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  }
  const both = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', both);
  upstream.on('error', both);
  client.on('close', both);
  upstream.on('close', both);
  relay(client, upstream);
  relay(upstream, client);
});
server.on('tlsClientError', (_err, socket) => socket.destroy());
server.listen(port, '127.0.0.1', () => process.stdout.write(`tls relay listening on 127.0.0.1:${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    for (const s of sockets) s.destroy();
    server.close(() => process.exit(0));
  });
}
