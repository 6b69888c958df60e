// The TCP echo upstream for the bench's TCP scenario: every byte a client sends comes
// straight back (with backpressure, via pipe). Loopback only; runs until SIGTERM/SIGINT.
//
//   node dist/bench/echo-server.js --port 9000
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node dist/bench/echo-server.js --port PORT\n');
  process.exit(2);
}

const sockets = new Set<net.Socket>();
const server = net.createServer((s) => {
  sockets.add(s);
  s.setNoDelay(true);
  s.on('error', () => s.destroy());
  s.on('close', () => sockets.delete(s));
  s.pipe(s);
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`echo server listening on 127.0.0.1:${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    for (const s of sockets) s.destroy();
    server.close(() => process.exit(0));
  });
}
