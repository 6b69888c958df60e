// The door of an inbound listener under its PeerAuthentication mode: STRICT takes mutual
// TLS only (a plaintext client is closed, counted and logged), PERMISSIVE tells TLS from
// plaintext by the first byte (a TLS record starts with 0x16, a handshake; no HTTP
// method, Postgres or Redis message does) and serves both, DISABLE serves plaintext as
// before. Behind the door the connection is served as ever, as the TLS socket's
// plaintext, with the verified peer (tls/mesh-tls.ts) or none.
import type net from 'node:net';
import type tls from 'node:tls';
import type { MtlsMode } from '../../api/protocol.js';
import type { MeshTls, VerifiedPeer } from '../tls/mesh-tls.js';
import type { ListenerContext } from './listener-context.js';

/** The first byte of a TLS handshake record (RFC 8446 §5.1, ContentType handshake). */
const TLS_HANDSHAKE = 0x16;

/** Serves an admitted connection: `peer` is its verified workload, undefined for plaintext. */
export type ServeInbound = (socket: net.Socket, peer: VerifiedPeer | undefined) => void;

export interface InboundDoor {
  readonly mode: () => MtlsMode;
  readonly tls: MeshTls;
  /** The TLS server connections are handed to (one per listener: its `secureConnection` serves them). */
  readonly server: tls.Server;
  /** How long a PERMISSIVE listener waits for a first byte before serving the connection as plaintext (a server-first protocol). */
  readonly silentMs: number;
  /** Counts a connection by how it was secured. */
  readonly counted: (mode: MtlsMode, security: 'mtls' | 'plaintext') => void;
}

/** Admits `socket` under the listener's mode; `serve` gets plaintext connections here, TLS ones from the door's server. */
export function admitInbound(socket: net.Socket, door: InboundDoor, serve: ServeInbound, ctx: ListenerContext): void {
  const mode = door.mode();
  if (mode === 'DISABLE') {
    door.counted(mode, 'plaintext');
    serve(socket, undefined);
    return;
  }
  const onError = (): void => {
    socket.destroy();
  };
  socket.once('error', onError);
  const silent = (): void => {
    socket.removeListener('data', onData);
    if (mode === 'STRICT') {
      socket.destroy();
      return;
    }
    socket.removeListener('error', onError);
    socket.setTimeout(0);
    door.counted(mode, 'plaintext');
    serve(socket, undefined);
  };
  socket.setTimeout(mode === 'STRICT' ? ctx.limits.current.idleTimeoutMs : door.silentMs, silent);
  const onData = (chunk: Buffer): void => {
    try {
      socket.pause();
      socket.unshift(chunk);
      socket.removeListener('timeout', silent);
      socket.setTimeout(0);
      socket.removeListener('error', onError);
      if (chunk[0] === TLS_HANDSHAKE) {
        door.counted(mode, 'mtls');
        // The TLS socket reads what is buffered on `socket` first (node's TLSSocket._init).
        door.server.emit('connection', socket);
      } else if (mode === 'PERMISSIVE') {
        door.counted(mode, 'plaintext');
        socket.resume();
        serve(socket, undefined);
      } else {
        door.tls.refusedPlaintext(socket);
        socket.destroy();
      }
    } catch (err) {
      ctx.failed('accept', err, socket);
    }
  };
  socket.once('data', onData);
}
