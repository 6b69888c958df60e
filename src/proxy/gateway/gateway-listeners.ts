// The listeners of a gateway proxy serving a Gateway API `Gateway`: one server per port
// of its snapshot's GatewaySnapshot, plain HTTP or HTTPS (TLS terminated here, the
// certificate picked by SNI, ALPN h2 and http/1.1). What each port serves comes from its
// route table, an upstream of the snapshot run through the gateway stack
// (stack/stacks.ts), so a Gateway's routes get every match, filter and resilience policy
// the mesh has. A new snapshot opens ports that appeared, closes ports that went, and
// swaps certificates in place: a handshake in progress or done keeps the context it
// started with, so replacing a certificate drops no connection.
import net from 'node:net';
import tls from 'node:tls';
import type { GatewayPortSnapshot, GatewaySnapshot, HostPort } from '../../api/protocol.js';
import { errorResponse, type Handler } from '../stack/exchange.js';
import type { H2Server } from '../listeners/detect.js';
import { serveHttp } from '../listeners/detect.js';
import type { ListenerContext } from '../listeners/listener-context.js';
import { certificateFor, defaultCertificate, servingCertificates, type ServingCertificate } from './certificates.js';
import { peekClientHello } from './client-hello.js';

/** Why a TLS client was turned away (the `reason` of the refusal metric; bounded). */
export type TlsRefusal = 'unknown-sni' | 'handshake' | 'plain-http';

/** What the gateway's listeners need of their proxy. */
export interface GatewayListenerParts {
  /** Where ports are opened (the gateway binds loopback unless told otherwise). */
  readonly host: string;
  /** Gateway port → the port actually opened (`trellis up --free-ports`, tests: 0 picks one); absent: the same. */
  readonly portMap: ReadonlyMap<number, number>;
  readonly ctx: ListenerContext;
  /** The HTTP/1.1 pipeline and HTTP/2 server of a port's route table, for its scheme. */
  pipelines(upstream: string, scheme: 'http' | 'https', port: number): { h1: Handler; h2: H2Server };
  /**
   * A Passthrough port's connection whose ClientHello named `sni` (undefined: none), its
   * bytes put back: sent on to a backend of the first TLSRoute of `upstream` that takes
   * the name, true; false when none does (the caller refuses it).
   */
  passthrough(upstream: string, sni: string | undefined, socket: net.Socket): boolean;
  /** Opens `server` at `at` under the proxy's connection limits and accounting; resolves where it listens. */
  open(server: net.Server, at: HostPort, name: string): Promise<HostPort>;
  /** Undoes `open`'s accounting for a closed port. */
  release(server: net.Server): void;
  /** Counts (and at most now and then logs) a client refused before HTTP. */
  refused(port: number, reason: TlsRefusal): void;
  log(line: string): void;
}

/** One open port and what it serves. */
interface OpenPort {
  readonly key: string;
  readonly server: net.Server;
  readonly address: HostPort;
  /** HTTPS: the certificates in force, swapped by `apply`. */
  certs: ServingCertificate[];
  /** HTTPS: the TLS server behind the port's first-byte check. */
  readonly secure?: tls.Server;
}

/** A TLS record's first byte is its content type: 22 for a handshake (RFC 8446 §5.1). */
const TLS_HANDSHAKE = 0x16;

export class GatewayListeners {
  readonly #p: GatewayListenerParts;
  readonly #ports = new Map<number, OpenPort>();
  /** Applies one after the other: opening a port is asynchronous. */
  #applying: Promise<void> = Promise.resolve();

  constructor(parts: GatewayListenerParts) {
    this.#p = parts;
  }

  /** Where each Gateway port listens (by the Gateway's port number). */
  addresses(): Record<string, HostPort> {
    return Object.fromEntries([...this.#ports].map(([port, o]) => [String(port), o.address]));
  }

  /**
   * Checks what `gateway` needs that could fail at once (certificates that don't load);
   * throws so the snapshot is refused, changing nothing. Returns the step that puts it
   * in force (opening ports happens after; a port that can't be opened is logged).
   */
  prepare(gateway: GatewaySnapshot | undefined): () => Promise<void> {
    const wanted = new Map<number, { spec: GatewayPortSnapshot; certs: ServingCertificate[] }>();
    for (const spec of gateway?.ports ?? []) {
      if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new Error(`gateway port ${String(spec.port)} is not a port number`);
      if (spec.protocol !== 'HTTP' && spec.protocol !== 'HTTPS' && spec.protocol !== 'TLS')
        throw new Error(`gateway port ${spec.port}: protocol ${String(spec.protocol)} is not served`);
      const certs = spec.protocol === 'HTTPS' ? servingCertificates(spec.certificates ?? []) : [];
      wanted.set(spec.port, { spec, certs });
    }
    return () => {
      const run = this.#applying.then(() => this.#apply(wanted));
      this.#applying = run.catch(() => undefined);
      return run;
    };
  }

  async #apply(wanted: Map<number, { spec: GatewayPortSnapshot; certs: ServingCertificate[] }>): Promise<void> {
    for (const [port, open] of [...this.#ports]) {
      const w = wanted.get(port);
      if (w === undefined || keyOf(w.spec) !== open.key) this.#close(port, open);
    }
    for (const [port, { spec, certs }] of wanted) {
      const open = this.#ports.get(port);
      if (open !== undefined) {
        open.certs = certs;
        if (open.secure !== undefined) setDefault(open.secure, certs);
        continue;
      }
      try {
        await this.#open(spec, certs);
      } catch (err) {
        this.#p.log(`gateway port ${port}: could not listen: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
    }
  }

  #close(port: number, open: OpenPort): void {
    this.#ports.delete(port);
    open.server.close();
    this.#p.release(open.server);
  }

  async #open(spec: GatewayPortSnapshot, certs: ServingCertificate[]): Promise<void> {
    const p = this.#p;
    if (spec.protocol === 'TLS') {
      const server = net.createServer((socket) => this.#passthrough(socket, spec));
      const address = await p.open(server, { host: p.host, port: p.portMap.get(spec.port) ?? spec.port }, `gateway:${spec.port}`);
      this.#ports.set(spec.port, { key: keyOf(spec), server, address, certs: [] });
      return;
    }
    const scheme = spec.protocol === 'HTTPS' ? 'https' : 'http';
    const { h1, h2 } = p.pipelines(spec.upstream, scheme, spec.port);
    const serve = (socket: net.Socket): void => {
      try {
        serveHttp(socket, h1, h2, p.ctx);
      } catch (err) {
        p.ctx.failed('accept', err, socket);
      }
    };
    let entry: OpenPort;
    let server: net.Server;
    let secure: tls.Server | undefined;
    if (scheme === 'http') {
      server = net.createServer(serve);
    } else {
      secure = tls.createServer(
        {
          ALPNProtocols: ['h2', 'http/1.1'],
          minVersion: 'TLSv1.2',
          // The handshake is part of the client's head: bounded as the head is (nginx
          // bounds its SSL handshake by client_header_timeout the same way).
          handshakeTimeout: p.ctx.limits.current.requestHeaderTimeoutMs,
          SNICallback: (servername, cb) => {
            const c = certificateFor(entry.certs, servername);
            if (c === undefined) {
              p.refused(spec.port, 'unknown-sni');
              cb(new Error('no listener of this port takes this server name'));
            } else {
              cb(null, c.context);
            }
          },
        },
        serve,
      );
      // A client without SNI gets the certificate of a listener without a hostname; with
      // none, its handshake fails (there is no certificate it could be meant to get).
      secure.on('tlsClientError', (_err, socket) => {
        p.refused(spec.port, 'handshake');
        socket.destroy();
      });
      const tlsServer = secure;
      server = net.createServer((socket) => this.#sniff(socket, tlsServer, spec.port));
      setDefault(secure, certs);
    }
    const address = await p.open(server, { host: p.host, port: p.portMap.get(spec.port) ?? spec.port }, `gateway:${spec.port}`);
    entry = { key: keyOf(spec), server, address, certs, ...(secure !== undefined ? { secure } : {}) };
    this.#ports.set(spec.port, entry);
  }

  /**
   * Reads a connection's first byte on an HTTPS port: a TLS handshake goes on to the TLS
   * server; anything else (plain HTTP, say) is answered 400 http-on-https-port, as nginx
   * answers plain HTTP on an SSL port, and closed.
   */
  #sniff(socket: net.Socket, secure: tls.Server, port: number): void {
    const p = this.#p;
    socket.setTimeout(p.ctx.limits.current.requestHeaderTimeoutMs, () => socket.destroy());
    socket.once('error', () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      try {
        socket.setTimeout(0);
        if (chunk[0] === TLS_HANDSHAKE) {
          socket.pause();
          socket.unshift(chunk);
          secure.emit('connection', socket);
          return;
        }
        p.refused(port, 'plain-http');
        socket.end(errorResponse('TRELLIS_E_HTTP_ON_HTTPS_PORT', { port }, true));
        socket.destroySoon();
      } catch (err) {
        p.ctx.failed('accept', err, socket);
      }
    });
  }

  /**
   * A Passthrough port: reads the ClientHello (bounded in bytes, and in time by the head
   * timeout, as an HTTP head is), takes its SNI, puts the bytes back and hands the
   * connection on; bytes that are not a ClientHello, a name no TLSRoute takes, or a client
   * too slow to say it are refused by closing the connection (Envoy's answer too).
   */
  #passthrough(socket: net.Socket, spec: GatewayPortSnapshot): void {
    const p = this.#p;
    peekClientHello(
      socket,
      p.ctx.limits.current.requestHeaderTimeoutMs,
      (read) => {
        if (read.kind !== 'hello') {
          p.refused(spec.port, 'handshake');
          socket.destroy();
        } else if (!p.passthrough(spec.upstream, read.sni, socket)) {
          p.refused(spec.port, 'unknown-sni');
          socket.destroy();
        }
      },
      (err) => p.ctx.failed('accept', err, socket),
    );
  }

  close(): void {
    for (const [port, open] of [...this.#ports]) this.#close(port, open);
  }
}

/** What makes a port the same across snapshots; any change reopens it. */
function keyOf(spec: GatewayPortSnapshot): string {
  return `${spec.protocol}/${spec.upstream}`;
}

/**
 * The context of clients that send no SNI: a listener without a hostname's certificate.
 * Without one such clients' handshakes fail; a default set before stays (node can't unset it).
 */
function setDefault(secure: tls.Server, certs: readonly ServingCertificate[]): void {
  const fallback = defaultCertificate(certs);
  if (fallback !== undefined) secure.setSecureContext({ cert: fallback.chain, key: fallback.key, minVersion: 'TLSv1.2' });
}
