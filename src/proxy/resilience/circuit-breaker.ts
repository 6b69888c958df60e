// The circuit breaker of one destination service (Envoy's cluster circuit breakers):
// at most `maxConnections` connections open to its endpoints, at most
// `maxPendingRequests` requests waiting for one of them, at most `maxRequests` attempts
// in flight, at most `maxRetries` retries outstanding. A request over a limit is not
// sent at all: it fails at once with 503 `overflow`, so a slow destination can't pile
// up its callers' requests (and their memory) behind it. A retry over its limit is not
// made: the failed attempt's answer goes to the client. Counts are kept per sidecar,
// across snapshots, while the limits may change.
import type { CircuitBreakerConfig } from '../../api/protocol.js';

/** A request waiting for a connection (pool.ts): resumed when one frees up, unless it ended meanwhile. */
export interface ConnectionWaiter {
  readonly finished: boolean;
  /** The address it waits to reach (`host:port`). */
  readonly key: string;
  resume(): void;
}

export class CircuitBreaker {
  limits: CircuitBreakerConfig;
  /** Attempts in flight to the destination. */
  requests = 0;
  /** Retries scheduled or in flight. */
  retries = 0;
  /** Connections open to the destination's endpoints (pool.ts counts them). */
  connections = 0;
  /** Requests waiting for a connection, oldest first. */
  readonly waiting: ConnectionWaiter[] = [];
  /** Requests refused because `maxPendingRequests` were waiting. */
  pendingOverflows = 0;
  /** Requests refused because `maxRequests` were in flight, since the sidecar started. */
  requestOverflows = 0;
  /** Retries not made because `maxRetries` were outstanding. */
  retryOverflows = 0;

  constructor(limits: CircuitBreakerConfig) {
    this.limits = limits;
  }

  /** True when another request may be sent; counts an overflow when not. */
  admitRequest(): boolean {
    if (this.requests < this.limits.maxRequests) return true;
    this.requestOverflows++;
    return false;
  }

  /** True when another retry may be made, and holds it; counts an overflow when not. */
  takeRetry(): boolean {
    if (this.retries >= this.limits.maxRetries) {
      this.retryOverflows++;
      return false;
    }
    this.retries++;
    return true;
  }

  /** Queues a request for a connection; false (an overflow, counted) when maxPendingRequests wait already. */
  waitForConnection(w: ConnectionWaiter): boolean {
    if (this.waiting.length >= this.limits.maxPendingRequests) {
      this.pendingOverflows++;
      return false;
    }
    this.waiting.push(w);
    return true;
  }

  /** The oldest waiting request whose client is still there, removed from the queue. */
  nextWaiting(): ConnectionWaiter | undefined {
    let w = this.waiting.shift();
    while (w?.finished) w = this.waiting.shift();
    return w;
  }

  /** Whether a limit is reached now (for `trellis status`). */
  get open(): boolean {
    return (
      this.requests >= this.limits.maxRequests ||
      this.retries >= this.limits.maxRetries ||
      (this.connections >= this.limits.maxConnections && this.waiting.length >= this.limits.maxPendingRequests)
    );
  }
}
