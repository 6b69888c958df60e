// Raw TCP through the mesh (Postgres, Redis, anything not HTTP): pick an endpoint,
// connect, and pipe bytes both ways with backpressure. A refused connection tries the
// next endpoint before any byte has been read from the client; so does one that takes
// longer than the connect timeout. A connection with no bytes either way for the idle
// timeout is closed. A client no upstream took is closed and counted with the reason,
// and its access log line names the endpoint tried last and why it failed.
import net from 'node:net';
import tls from 'node:tls';
import type { SecureFor } from '../http1/pool.js';
import type { Endpoint } from '../../api/protocol.js';
import type { AccessLog } from '../../telemetry/access-log.js';
import type { Direction, ProxyMetrics, TcpConnectFailure } from '../../telemetry/metrics.js';
import { connectionKey, endpointKey, type Balancer } from '../balancer/balancer.js';
import { ERRORS } from '../../errors.js';
import { skipReadMore } from '../listeners/socket-tuning.js';

export interface TcpTelemetry {
  direction: Direction;
  source: string;
  destination: string;
  metrics: ProxyMetrics;
  accessLog: AccessLog;
  /** Called when connecting a client threw; it must end the client (the sidecar also counts and logs it). */
  failed?: (err: unknown) => void;
  /** Which endpoints take mutual TLS (outbound to peer sidecars); absent: plaintext (inbound, to the app). */
  secureFor?: SecureFor;
  /** The SNI of the mutual-TLS connection (the egress gateway's `outbound_.<port>_._.<key>`); absent: none. */
  servername?: string;
  /** How long connecting (TLS included) may take before the next endpoint is tried; absent: no limit. */
  connectTimeoutMs?: number;
  /** Closes a connection with no bytes either way for this long; absent: never. */
  idleTimeoutMs?: number;
}

/** The connect timed out (the reason the next endpoint is tried). */
class ConnectTimeout extends Error {}

/** Opens the connection to `e`: plaintext, or mutual TLS when `secureFor` says so; `ready` names the event that says it is up. */
function connectTo(e: Endpoint, secureFor: SecureFor | undefined, servername: string | undefined): { socket: net.Socket; ready: 'connect' | 'secureConnect' } {
  const key = secureFor === undefined ? '' : connectionKey(e);
  const secure = secureFor?.(key, undefined);
  if (secure === undefined) return { socket: net.connect({ host: e.host, port: e.port, noDelay: true }), ready: 'connect' };
  if (typeof secure === 'string') {
    const s = new net.Socket();
    process.nextTick(() => s.destroy(new Error(secure)));
    return { socket: s, ready: 'connect' };
  }
  let options = secure.options;
  if (servername !== undefined) {
    // A session kept for this endpoint may be another SNI's: this connection handshakes in full.
    const { session: _, ...rest } = options;
    options = { ...rest, servername };
  }
  const t = tls.connect({ host: e.host, port: e.port, ...options });
  t.setNoDelay(true);
  secure.watch(t, key);
  return { socket: t, ready: 'secureConnect' };
}

const MAX_CONNECT_ATTEMPTS = 3;

/**
 * Proxies one accepted client socket. `choose` returns the endpoint to try (given those
 * already tried), or undefined when there is none.
 */
export function proxyTcp(client: net.Socket, choose: (tried: ReadonlySet<string>) => Endpoint | undefined, t: TcpTelemetry, balancer?: Balancer): void {
  client.pause();
  client.setNoDelay(true);
  const startedAt = performance.now();
  const tried = new Set<string>();
  let clientClosed = false;
  client.on('error', () => client.destroy());
  client.once('close', () => {
    clientClosed = true;
  });

  const attempt = (): void => {
    try {
      tryNext();
    } catch (err) {
      // A throw here (choosing, connecting) would otherwise reach the process from an upstream's 'error' event.
      if (t.failed !== undefined) t.failed(err);
      else client.destroy();
    }
  };
  let lastFailure: TcpConnectFailure = 'no-endpoints';
  /** The endpoint of the last failed connect and why it failed: what the log line names when none is left to try. */
  let lastTried: { endpoint: Endpoint; reason: string } | undefined;
  /** No upstream took the client: counted, logged (with the endpoint tried last, if any), and the client closed. */
  const giveUp = (): void => {
    if (!clientClosed) t.metrics.tcpConnectFailed(t.direction, t.source, t.destination, lastFailure);
    t.accessLog.write({
      ts: new Date().toISOString(),
      direction: t.direction,
      protocol: 'tcp',
      source: t.source,
      destination: t.destination,
      upstream: lastTried === undefined ? undefined : endpointKey(lastTried.endpoint),
      error: clientClosed ? 'client-closed' : lastTried === undefined ? 'no-endpoints' : `${ERRORS.TRELLIS_E_CONNECT.token}: ${lastTried.reason}`,
    });
    client.destroy();
  };
  const tryNext = (): void => {
    const e = choose(tried);
    if (e === undefined || clientClosed) return giveUp();
    tried.add(e.id);
    // The connection is pending with its endpoint while it is open; the connect time is its round-trip sample.
    balancer?.started(e);
    const connectStart = performance.now();
    const { socket: upstream, ready } = connectTo(e, t.secureFor, t.servername);
    if (t.connectTimeoutMs !== undefined) {
      upstream.setTimeout(t.connectTimeoutMs, () => upstream.destroy(new ConnectTimeout(`no connection in ${t.connectTimeoutMs} ms`)));
    }
    upstream.once('error', (err) => {
      upstream.destroy();
      // A socket error names its system call (connect, read, write); a refused certificate or handshake names none.
      const syscall = (err as NodeJS.ErrnoException).syscall;
      lastFailure = err instanceof ConnectTimeout ? 'timeout' : ready === 'secureConnect' && syscall === undefined ? 'tls' : 'connect';
      lastTried = { endpoint: e, reason: err.message };
      balancer?.finished(e, performance.now() - connectStart, true);
      balancer?.connectFailed(e, Date.now());
      if (tried.size < MAX_CONNECT_ATTEMPTS) attempt();
      else giveUp();
    });
    upstream.once(ready, () => {
      upstream.removeAllListeners('error');
      upstream.setTimeout(0);
      const connectMs = performance.now() - connectStart;
      if (clientClosed) {
        // The client left while we connected: its close event is gone, so end here.
        upstream.destroy();
        balancer?.finished(e, connectMs, false);
        return;
      }
      try {
        pipeBoth(client, upstream, e, t, startedAt, () => balancer?.finished(e, connectMs, false));
      } catch (err) {
        upstream.destroy();
        if (t.failed !== undefined) t.failed(err);
        else client.destroy();
      }
    });
  };
  attempt();
}

function pipeBoth(client: net.Socket, upstream: net.Socket, e: Endpoint, t: TcpTelemetry, startedAt: number, closed: () => void): void {
  t.metrics.tcpOpened(t.direction, t.source, t.destination, e.version);
  let sent = 0;
  let received = 0;
  skipReadMore(client);
  skipReadMore(upstream);
  client.on('data', (c: Buffer) => {
    sent += c.length;
  });
  upstream.on('data', (c: Buffer) => {
    received += c.length;
  });
  client.pipe(upstream);
  upstream.pipe(client);
  client.resume();
  let done = false;
  const finish = (error?: string): void => {
    if (done) return;
    done = true;
    closed();
    client.destroy();
    upstream.destroy();
    t.metrics.tcpClosed(t.direction, t.source, t.destination, e.version, sent, received);
    t.accessLog.write({
      ts: new Date().toISOString(),
      direction: t.direction,
      protocol: 'tcp',
      source: t.source,
      destination: t.destination,
      version: e.version,
      upstream: endpointKey(e),
      bytes_sent: sent,
      bytes_received: received,
      duration_ms: Math.round(performance.now() - startedAt),
      error,
    });
  };
  upstream.on('error', (err) => finish(err.message));
  client.on('error', () => finish('client-error'));
  if (t.idleTimeoutMs !== undefined) {
    // Node refreshes a socket's timer on reads and writes alike: the upstream's covers both ways.
    upstream.setTimeout(t.idleTimeoutMs, () => {
      if (!done) t.metrics.tcpIdleTimeout(t.direction, t.source, t.destination);
      finish('idle-timeout');
    });
  }
  client.on('close', () => finish());
  upstream.on('close', () => finish());
}
