// An HTTP upstream for the bench's balancing scenario: answers every request with a
// fixed 1 KB body after `--delay-ms`, and `GET /__count` with how many others it
// answered (so the bench can tell what share of the traffic a balancer sent it).
// Loopback only; runs until SIGTERM/SIGINT.
//
//   node dist/bench/slow-server.js --port 9000 --delay-ms 50
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, 'delay-ms': { type: 'string', default: '0' } } });
const port = Number(values.port);
const delay = Number(values['delay-ms']);
if (!Number.isInteger(port) || port <= 0 || port > 65535 || !(delay >= 0)) {
  process.stderr.write('usage: node dist/bench/slow-server.js --port PORT [--delay-ms MS]\n');
  process.exit(2);
}

const body = Buffer.alloc(1024, 'x');
let answered = 0;
const server = http.createServer((req, res) => {
  if (req.url === '/__count') {
    res.end(String(answered));
    return;
  }
  answered++;
  req.resume();
  setTimeout(() => {
    res.setHeader('content-type', 'text/plain');
    res.setHeader('content-length', body.length);
    res.end(body);
  }, delay);
});
server.keepAliveTimeout = 10_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`slow server (${delay} ms) listening on 127.0.0.1:${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
