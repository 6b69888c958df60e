// Keep-alive connections to upstreams, per address, and the HTTP/1.1 forwarder: the
// codec at the bottom of a stack, which sends an exchange over a pooled connection and
// reports what became of it (stack/outcome.ts).
import type { Endpoint } from '../../api/protocol.js';
import type { ErrorCode } from '../../errors.js';
import type { Handler } from '../stack/exchange.js';
import { connectionKey } from '../balancer/balancer.js';
import type { Picked } from '../stack/decisions.js';
import { UpstreamConnection, type SecureConnect, type UpstreamEvents } from './upstream-connection.js';

/**
 * How a new connection to the endpoint at `key` (`host:port`) is secured: undefined for
 * plaintext (the app, a DISABLE peer), else mutual TLS (the sidecar's peer table, asked
 * only when a connection is opened, never per request).
 */
export type SecureFor = (key: string, alpn: 'h2' | 'http/1.1' | undefined) => SecureConnect | undefined;

export interface PoolOptions {
  /** Idle connections kept per address. */
  maxIdlePerAddress: number;
  /** Idle connections are closed after this long, a little under Node's 5 s server keep-alive. */
  idleTimeoutMs: number;
  /** A response head not come within this long times out (the timeouts layer enforces it: timeout.ts), unless the route sets its own. */
  responseTimeoutMs: number;
  /** Absent: every connection is plaintext. */
  secureFor?: SecureFor;
}

export const DEFAULT_POOL_OPTIONS: PoolOptions = { maxIdlePerAddress: 256, idleTimeoutMs: 4000, responseTimeoutMs: 15_000 };

/**
 * Idle timeout of connections to other sidecars, whose listeners keep an idle client
 * connection for 2 minutes (http-server-connection.ts): the caller closes first, so a
 * pooled connection is never reused just as the server drops it. Apps get the default
 * 4 s, as Node's own HTTP server closes after 5 s. Bursty traffic then reuses its
 * connections instead of opening new ones (a handshake per connection, and memory that
 * waits for a major GC to be freed).
 */
export const PEER_IDLE_TIMEOUT_MS = 60_000;

/** Idle connections to one address closed at most per sweep (every 250 ms): 8 a second. */
export const CLOSES_PER_SWEEP = 2;

export class ConnectionPool {
  readonly #idle = new Map<string, UpstreamConnection[]>();
  /**
   * Every connection open (carrying a request or idle), from its opening to its `gone`:
   * not moved in and out per request, as a set of the busy ones was (an add and a delete
   * per request, and the hash table's rehashing, were a tenth of a sidecar's garbage).
   */
  readonly #open = new Set<UpstreamConnection>();
  readonly #opts: PoolOptions;
  #sweep: NodeJS.Timeout;
  readonly #sweepMs = 250;
  #closed = false;

  constructor(opts: Partial<PoolOptions> = {}) {
    this.#opts = { ...DEFAULT_POOL_OPTIONS, ...opts };
    // One timer for every idle connection's expiry.
    this.#sweep = setInterval(() => this.#check(), this.#sweepMs);
    this.#sweep.unref();
  }

  /** How long a connection of this pool waits for a response head by default. */
  get responseTimeoutMs(): number {
    return this.#opts.responseTimeoutMs;
  }

  /** Whether an idle connection to the endpoint is ready to take a request. */
  hasIdle(e: Endpoint): boolean {
    const list = this.#idle.get(connectionKey(e));
    if (list === undefined) return false;
    for (const c of list) if (!c.socket.destroyed) return true;
    return false;
  }

  /**
   * An idle connection to the endpoint, or a new one (its writes wait for the connect).
   * No spare is preconnected beside it (Envoy's preconnect policy): on a quiet machine,
   * one spare mutual TLS connection per peer made the added p99 at 1,000 rps worse
   * (+1.47-1.84 ms against +0.69-1.11 ms without, same build, one run each).
   */
  acquire(e: Endpoint, events: UpstreamEvents): UpstreamConnection {
    const key = connectionKey(e);
    const list = this.#idle.get(key);
    let conn = list?.pop();
    while (conn?.socket.destroyed) conn = list!.pop();
    if (conn !== undefined && performance.now() - conn.idleSince > this.#opts.idleTimeoutMs) {
      // Past the idle timeout, waiting for the sweep (CLOSES_PER_SWEEP), as is every
      // connection under it: the server may be closing it right now (an app's after 5 s).
      list!.push(conn);
      conn = undefined;
    }
    if (conn === undefined) {
      conn = this.#connect(e, key, events, this.#secure(key));
      this.#open.add(conn);
    }
    return conn;
  }

  /** How a new connection to `key` is secured: asked once per connection, never per request. */
  #secure(key: string): SecureConnect | undefined {
    // A closed pool opens nothing: the connection fails as a refused connect does (nothing sent).
    return this.#closed ? 'the connection pool is closed' : this.#opts.secureFor?.(key, 'http/1.1');
  }

  #connect(e: Endpoint, key: string, events: UpstreamEvents, secure: SecureConnect | undefined): UpstreamConnection {
    return new UpstreamConnection(e.host, e.port, key, events, this.#opts.responseTimeoutMs, secure);
  }

  release(conn: UpstreamConnection): void {
    if (this.#closed) return conn.close();
    let list = this.#idle.get(conn.key);
    if (list === undefined) this.#idle.set(conn.key, (list = []));
    if (list.length >= this.#opts.maxIdlePerAddress) conn.close();
    else list.push(conn);
  }

  gone(conn: UpstreamConnection): void {
    this.#open.delete(conn);
    const list = this.#idle.get(conn.key);
    if (list === undefined) return;
    const i = list.indexOf(conn);
    if (i !== -1) list.splice(i, 1);
  }

  /** Connections carrying a request now, and those kept idle (metrics, read at scrape time). */
  counts(): { active: number; idle: number } {
    let idle = 0;
    for (const list of this.#idle.values()) idle += list.length;
    return { active: this.#open.size - idle, idle };
  }

  /** Closes the idle connections to `key` (its security changed: the next request opens a new one). */
  closeIdle(key: string): void {
    const list = this.#idle.get(key);
    if (list === undefined) return;
    this.#idle.delete(key);
    for (const c of list) c.close();
  }

  /** Closes idle connections to addresses no longer in use. */
  retainOnly(keys: ReadonlySet<string>): void {
    for (const [key, list] of this.#idle) {
      if (keys.has(key)) continue;
      this.#idle.delete(key);
      for (const c of list) c.close();
    }
  }

  /**
   * Closes idle connections past the idle timeout, the longest idle first, at most
   * CLOSES_PER_SWEEP per address a sweep: connections that went idle together (the end
   * of a burst: 50 at once after the bench's max-rate rounds) would otherwise all close
   * in one turn of the event loop, 50 TLS sockets torn down here and 50 closes handled
   * by the peer (about 1 ms of destroy and 17-35 ms of close handling, measured in one
   * process), a stall for the requests still flowing over the connections in use.
   */
  #check(): void {
    const now = performance.now();
    for (const list of this.#idle.values()) {
      for (let n = 0; n < CLOSES_PER_SWEEP && list.length > 0 && now - list[0]!.idleSince > this.#opts.idleTimeoutMs; n++) list.shift()!.close();
    }
  }

  /**
   * Closes every connection, idle or carrying a request (still connecting, too); one that
   * finishes its request afterwards is closed as it is released, and none is opened after.
   * Closing a connection takes it out of these lists (`gone`): they are copied first.
   */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    const idle = [...this.#idle.values()].flat();
    this.#idle.clear();
    for (const c of idle) c.close();
    for (const c of [...this.#open]) c.close();
  }
}

/**
 * The HTTP/1.1 codec at the bottom of a stack: sends the exchange to `ex.endpoint` over
 * a pooled connection. What becomes of it goes back up the stack as an outcome; a
 * refused connect (nothing sent) is reported with `codes.connect`, a reset with
 * `codes.reset`. A pooled connection found closed by the server as it was reused is
 * this codec's own business: the request goes to the same endpoint on a fresh one.
 */
export function forwarder(pool: ConnectionPool, codes: { readonly connect: ErrorCode; readonly reset: ErrorCode; readonly toApp: boolean }): Handler<Picked> {
  const events: UpstreamEvents = {
    resetCode: codes.reset,
    toApp: codes.toApp,
    release(c) {
      pool.release(c);
      const br = c.breaker;
      if (br === undefined || br.waiting.length === 0) return;
      // A request waits for a connection to its destination: this one if it is to the
      // same endpoint, else its slot (closing it lets the waiter open its own).
      const w = br.nextWaiting();
      if (w === undefined) return;
      if (w.key === c.key) {
        w.resume();
      } else {
        br.waiting.unshift(w);
        c.close();
      }
    },
    gone(c) {
      pool.gone(c);
      const br = c.breaker;
      if (br === undefined) return;
      // Counted once: an upgraded connection reports gone twice.
      c.breaker = undefined;
      br.connections--;
      br.nextWaiting()?.resume();
    },
    unsent(ex, conn, reason, stale) {
      if (stale) {
        // The server closed a pooled connection as we reused it: same endpoint, fresh connection.
        send(ex);
        return;
      }
      ex.report({ kind: 'refused', code: codes.connect, params: { address: conn.key, reason }, sentAt: 0 });
    },
  };
  function send(ex: Picked): void {
    const e = ex.endpoint;
    const br = ex.backend?.breaker;
    if (br === undefined) {
      pool.acquire(e, events).send(ex);
      return;
    }
    // maxConnections: with no idle connection to reuse and no slot for a new one, wait for one (maxPendingRequests).
    if (br.connections >= br.limits.maxConnections && !pool.hasIdle(e)) {
      const waiter = {
        get finished() {
          return ex.finished;
        },
        key: connectionKey(e),
        resume: () => send(ex),
      };
      if (!br.waitForConnection(waiter)) ex.fail('TRELLIS_E_OVERFLOW', { service: ex.service, limit: 'maxPendingRequests', max: br.limits.maxPendingRequests });
      return;
    }
    const conn = pool.acquire(e, events);
    if (conn.uses === 0 && conn.breaker === undefined) {
      conn.breaker = br;
      br.connections++;
    }
    conn.send(ex);
  }
  return send;
}
