// The peers of the bench's mTLS scenarios: an nginx pair and an HAProxy pair with
// mutual TLS between the two proxies, as a Trellis pair has by default (issue 13: "the
// Trellis pair with mTLS against an nginx pair and an HAProxy pair with TLS between
// them, keep-alive on both sides"). Same shape as the plaintext pairs in targets.ts: the
// client speaks plaintext to the outbound proxy, which opens TLS 1.3 to the inbound one,
// presenting a client certificate the inbound one requires and verifies, and verifying
// the inbound one's certificate and name in turn; the inbound proxy speaks plaintext to
// the upstream. Every key is ECDSA P-256, as Trellis's are, so the handshakes cost the
// same kind of signature. Sessions are resumed where each proxy supports it (nginx
// `proxy_ssl_session_reuse`, HAProxy's server-side session cache, both on by default).
import { spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  haproxyConfig,
  nginxHead,
  nginxMain,
  nginxStreamModule,
  startPair,
  waitFor200,
  waitForEcho,
  type Binaries,
  type Managed,
  type Processes,
  type Target,
} from './targets.js';

/** The name the inbound proxy's certificate carries and the outbound one checks. */
export const INBOUND_NAME = 'inbound.bench.test';

/** Files of the pair's PKI, in the run's folder. */
export interface TlsMaterial {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Certificate then key, one file (HAProxy's `crt`). */
  readonly serverPem: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly clientPem: string;
}

function openssl(args: readonly string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${(r.error?.message ?? r.stderr ?? '').trim().slice(0, 300)} (openssl comes from Debian's openssl package)`);
  }
}

/**
 * A CA and two leaf certificates signed by it (server: the inbound proxy; client: the
 * outbound one), P-256, valid two days, made with the openssl CLI in `dir`.
 */
export function makeTlsMaterial(dir: string): TlsMaterial {
  const f = (name: string): string => path.join(dir, name);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f('ca.key')], dir);
  openssl(['req', '-x509', '-new', '-key', f('ca.key'), '-subj', '/CN=trellis bench CA', '-days', '2', '-out', f('ca.crt')], dir);
  const leaf = (name: string, cn: string, san: string, usage: string): void => {
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(`${name}.key`)], dir);
    openssl(['req', '-new', '-key', f(`${name}.key`), '-subj', `/CN=${cn}`, '-out', f(`${name}.csr`)], dir);
    writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        f(`${name}.csr`),
        '-CA',
        f('ca.crt'),
        '-CAkey',
        f('ca.key'),
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        f(`${name}.ext`),
        '-out',
        f(`${name}.crt`),
      ],
      dir,
    );
    writeFileSync(f(`${name}.pem`), readFileSync(f(`${name}.crt`), 'utf8') + readFileSync(f(`${name}.key`), 'utf8'));
  };
  leaf('server', INBOUND_NAME, `DNS:${INBOUND_NAME},URI:spiffe://bench.test/ns/default/sa/upstream`, 'serverAuth');
  leaf('client', 'outbound.bench.test', 'URI:spiffe://bench.test/ns/default/sa/bench-client', 'clientAuth');
  return {
    ca: f('ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    serverPem: f('server.pem'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    clientPem: f('client.pem'),
  };
}

// ---------------------------------------------------------------------------
// nginx

/** The outbound side's TLS towards the inbound proxy: client certificate, verification, resumption. */
export function nginxOriginate(prefix: 'proxy_ssl', t: TlsMaterial): string {
  return `    ${prefix}_certificate ${t.clientCert};
    ${prefix}_certificate_key ${t.clientKey};
    ${prefix}_trusted_certificate ${t.ca};
    ${prefix}_verify on;
    ${prefix}_name ${INBOUND_NAME};
    ${prefix}_server_name on;
    ${prefix}_protocols TLSv1.3;
    ${prefix}_session_reuse on;`;
}

/** The inbound side's TLS: its certificate, and a client certificate required and verified. */
function nginxTerminate(t: TlsMaterial): string {
  return `    ssl_certificate ${t.serverCert};
    ssl_certificate_key ${t.serverKey};
    ssl_client_certificate ${t.ca};
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:bench:1m;`;
}

export function nginxTlsServer(role: 'inbound' | 'outbound', listen: number, next: number, t: TlsMaterial): string {
  const upstream = `  upstream next {
    server 127.0.0.1:${next};
    keepalive 64;
    keepalive_requests 1000000;
  }`;
  if (role === 'inbound') {
    return `${upstream}
  server {
    listen 127.0.0.1:${listen} ssl;
${nginxTerminate(t)}
    location / {
      proxy_pass http://next;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`;
  }
  return `${upstream}
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass https://next;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${nginxOriginate('proxy_ssl', t)}
    }
  }`;
}

/** client → nginx ═TLS═► nginx → upstream, one worker each. */
export async function startNginxTlsPair(procs: Processes, bins: Binaries, dir: string, upstreamPort: number, t: TlsMaterial): Promise<Target> {
  return startPair(
    procs,
    'nginx',
    'http',
    async (role, listen, next) => {
      const name = `nginx-tls-${role}`;
      const conf = path.join(dir, `${name}.conf`);
      writeFileSync(conf, nginxMain(dir, name, nginxTlsServer(role, listen, next, t)));
      // The inbound one only answers TLS with a client certificate: it is checked through the pair.
      const ready = role === 'outbound' ? (m: Managed) => waitFor200(`http://127.0.0.1:${listen}/`, [m], 10_000) : async () => {};
      return procs.startReady(name, bins.nginx, ['-p', dir, '-e', path.join(dir, `${name}.error.log`), '-c', conf], dir, ready);
    },
    upstreamPort,
  );
}

/** TCP: client → nginx stream ═TLS═► nginx stream → echo server. Needs the stream module. */
export async function startNginxTlsTcpPair(procs: Processes, bins: Binaries, dir: string, echoPort: number, t: TlsMaterial): Promise<Target> {
  const mod = nginxStreamModule(bins.nginx);
  if (!mod) throw new Error('this nginx has no stream module (the separate Debian package libnginx-mod-stream)');
  return startPair(
    procs,
    'nginx',
    'tcp',
    async (role, listen, next) => {
      const name = `nginx-tls-tcp-${role}`;
      const conf = path.join(dir, `${name}.conf`);
      const server =
        role === 'inbound'
          ? `    listen 127.0.0.1:${listen} ssl;\n${nginxTerminate(t)}\n    proxy_pass 127.0.0.1:${next};`
          : `    listen 127.0.0.1:${listen};\n    proxy_pass 127.0.0.1:${next};\n    proxy_ssl on;\n${nginxOriginate('proxy_ssl', t)}`;
      writeFileSync(conf, `${nginxHead(dir, name, mod.load)}stream {\n  server {\n${server}\n    proxy_connect_timeout 5s;\n    proxy_timeout 30s;\n  }\n}\n`);
      const ready = role === 'outbound' ? (m: Managed) => waitForEcho(listen, [m], 10_000) : async () => {};
      return procs.startReady(name, bins.nginx, ['-p', dir, '-e', path.join(dir, `${name}.error.log`), '-c', conf], dir, ready);
    },
    echoPort,
  );
}

// ---------------------------------------------------------------------------
// HAProxy

function haproxyTlsConfig(role: 'inbound' | 'outbound', listen: number, next: number, mode: 'http' | 'tcp', t: TlsMaterial): string {
  return haproxyConfig(
    listen,
    next,
    mode,
    role === 'inbound'
      ? { bind: `ssl crt ${t.serverPem} ca-file ${t.ca} verify required ssl-min-ver TLSv1.3` }
      : { server: `ssl crt ${t.clientPem} ca-file ${t.ca} verify required verifyhost ${INBOUND_NAME} sni str(${INBOUND_NAME}) ssl-min-ver TLSv1.3` },
  );
}

async function startHaproxyTls(
  procs: Processes,
  bin: string,
  dir: string,
  role: 'inbound' | 'outbound',
  listen: number,
  next: number,
  mode: 'http' | 'tcp',
  t: TlsMaterial,
): Promise<Managed> {
  const name = `haproxy-tls-${mode}-${role}`;
  const conf = path.join(dir, `${name}.cfg`);
  writeFileSync(conf, haproxyTlsConfig(role, listen, next, mode, t));
  const ready =
    role === 'inbound'
      ? async () => {}
      : (m: Managed) => (mode === 'http' ? waitFor200(`http://127.0.0.1:${listen}/`, [m], 10_000) : waitForEcho(listen, [m], 10_000));
  return procs.startReady(name, bin, ['-db', '-f', conf], dir, ready);
}

/** client → haproxy ═TLS═► haproxy → upstream, one thread each. */
export async function startHaproxyTlsPair(procs: Processes, bins: Binaries, dir: string, upstreamPort: number, t: TlsMaterial): Promise<Target> {
  return startPair(procs, 'haproxy', 'http', (role, listen, next) => startHaproxyTls(procs, bins.haproxy, dir, role, listen, next, 'http', t), upstreamPort);
}

/** TCP: client → haproxy ═TLS═► haproxy → echo server (`mode tcp`). */
export async function startHaproxyTlsTcpPair(procs: Processes, bins: Binaries, dir: string, echoPort: number, t: TlsMaterial): Promise<Target> {
  return startPair(procs, 'haproxy', 'tcp', (role, listen, next) => startHaproxyTls(procs, bins.haproxy, dir, role, listen, next, 'tcp', t), echoPort);
}
