// An app inside the mesh that talks to three ExternalServices (mesh.yaml), every 5 s,
// through its sidecar's listeners (TRELLIS_UPSTREAM_<NAME>), and logs what came back:
//
//   ledger      plain TCP; the app speaks plaintext, and so does the wire
//   ledger-tls  TCP with TLS originated by the egress gateway: the app speaks plaintext
//   vault       TLS: the app speaks TLS itself (its own SNI and CA bundle); the mesh
//               carries the bytes, and under REGISTRY_ONLY checks the SNI is declared
//
// It logs each round (examples/egress/.trellis/logs/client-0.log) and answers the last one on
// its own port (PORT, which the mesh's health check connects to).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** host:port of the sidecar's listener for `name`. */
function upstream(name) {
  const at = process.env[`TRELLIS_UPSTREAM_${name.toUpperCase().replace(/[-.]/g, '_')}`];
  if (at === undefined) throw new Error(`no listener for ${name}: is it in the mesh file's upstreams?`);
  const i = at.lastIndexOf(':');
  return { host: at.slice(0, i), port: Number(at.slice(i + 1)) };
}

/** Sends one line to `name` (over the app's own TLS when `servername` is given); resolves the answer, or why there is none. */
function ask(name, line, servername) {
  return new Promise((resolve) => {
    const to = upstream(name);
    const socket = servername === undefined ? net.connect(to) : tls.connect({ ...to, servername, ca: readFileSync(path.join(here, '.certs', 'ca.pem')) });
    let got = '';
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.setEncoding('utf8');
    socket.on(servername === undefined ? 'connect' : 'secureConnect', () => socket.write(`${line}\n`));
    socket.on('data', (c) => {
      got += c;
      if (got.includes('\n')) socket.end();
    });
    socket.on('error', (err) => (got ||= `(error: ${err.code ?? err.message})`));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got.trim() || '(closed with no answer)');
    });
  });
}

let last = '(no round yet)\n';

async function round() {
  const lines = [
    `ledger      → ${await ask('ledger', 'balance?')}`,
    `ledger-tls  → ${await ask('ledger-tls', 'balance?')}`,
    `vault       → ${await ask('vault', 'secret?', 'vault.example.test')}`,
    // A TLS hello naming a host no ExternalService declares: REGISTRY_ONLY closes it.
    `vault (SNI evil.example.test) → ${await ask('vault', 'secret?', 'evil.example.test')}`,
  ];
  for (const l of lines) console.log(l);
  last = `${lines.join('\n')}\n`;
}

http.createServer((_req, res) => res.end(last)).listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1');
await round();
setInterval(round, 5000);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
