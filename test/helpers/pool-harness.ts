// The set-up the connection pool tests share: a TCP server on port 0 that only accepts
// (and counts and tracks what it accepted), the endpoint it is, and the events a pool's
// connections report back to the pool (src/proxy/http1/pool.ts).
import net from 'node:net';
import type { ConnectionPool } from '../../src/proxy/http1/pool.js';
import type { UpstreamEvents } from '../../src/proxy/http1/upstream-connection.js';

/** A server that accepts connections and never answers: `accepted` counts them, `open` holds those still open. */
export class AcceptingServer {
  readonly open = new Set<net.Socket>();
  accepted = 0;
  port = 0;
  readonly #server = net.createServer((s) => {
    this.accepted++;
    this.open.add(s);
    s.on('close', () => this.open.delete(s));
    s.on('error', () => {});
  });

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  /** The pool's endpoint for this server. */
  endpoint(): { id: string; host: string; port: number; version: string } {
    return { id: 'e1', host: '127.0.0.1', port: this.port, version: 'v1' };
  }

  /** Destroys what is still open and stops listening. */
  async close(): Promise<void> {
    for (const s of this.open) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Connection events that hand a connection back to `pool()` (released or gone). */
export function poolEvents(pool: () => ConnectionPool): UpstreamEvents {
  return {
    resetCode: 'TRELLIS_E_UPSTREAM_RESET',
    release: (c) => pool().release(c),
    gone: (c) => pool().gone(c),
    unsent: () => {},
  };
}
