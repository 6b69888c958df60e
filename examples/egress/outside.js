// The world outside the mesh, for mesh.yaml in this folder. On loopback:
//
//   127.0.0.1:17001  "ledger", plain TCP: answers each line with `ledger (plain): <line>`
//   127.0.0.1:17002  the same over TLS, for two names (ledger.example.test and
//                    vault.example.test), answering `ledger (tls, sni <name>): <line>`
//
// The TLS certificate comes from a CA this script makes and writes to .certs/ca.pem, which
// mesh.yaml names (the mesh reads it when it loads, so start this first):
//
//   npm run build --silent && node examples/egress/outside.js
//
// It uses Trellis's own certificate helper (dist/, from `npm run build`) to need no openssl.
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { issueServerCertificate, makeLocalCa } from '../../dist/src/security/local-tls.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const HOST = '127.0.0.1';

/** Answers each line the client sends with `<tag>: <line>`. */
function answerLines(socket, tag) {
  socket.setEncoding('utf8');
  let buf = '';
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk) => {
    buf += chunk;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      socket.write(`${tag}: ${buf.slice(0, i)}\n`);
      buf = buf.slice(i + 1);
    }
    if (buf.length > 64 * 1024) socket.destroy();
  });
}

const ca = await makeLocalCa('trellis egress example: outside CA');
const leaf = await issueServerCertificate(ca, { dnsNames: ['ledger.example.test', 'vault.example.test'] });
await mkdir(path.join(here, '.certs'), { recursive: true });
await writeFile(path.join(here, '.certs', 'ca.pem'), ca.cert);

const plain = net.createServer((s) => answerLines(s, 'ledger (plain)'));
const secure = tls.createServer({ cert: leaf.cert, key: leaf.key }, (s) => answerLines(s, `ledger (tls, sni ${s.servername || '-'})`));
plain.listen(17001, HOST, () => console.log(`outside: plain TCP ledger on ${HOST}:17001`));
secure.listen(17002, HOST, () => console.log(`outside: TLS ledger on ${HOST}:17002 (CA in ${path.join(here, '.certs', 'ca.pem')})`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
