// The seam between the run (schedule, queue, timeouts, measurement: run.ts) and a
// protocol client (HTTP/1.1 connections, or one HTTP/2 session). A transport only
// moves requests; it never reads the clock for measurement and never keeps a queue.

/** Why a request got no response. */
export type FailureKind =
  /** No connection to the target could be made. */
  | 'connect'
  /** The connection closed (or the stream was reset) before a complete response. */
  | 'reset'
  /** No complete response within the timeout. */
  | 'timeout'
  /** The response could not be parsed, or the peer broke the protocol. */
  | 'protocol';

export const FAILURE_KINDS: readonly FailureKind[] = ['connect', 'reset', 'timeout', 'protocol'];

/** What a transport tells the run. Calls about a request the run already gave up on are ignored. */
export interface TransportEvents {
  /** Request i got a complete response. */
  response(i: number, status: number): void;
  /** Request i is lost. */
  failure(i: number, kind: Exclude<FailureKind, 'timeout'>): void;
  /** There is room for another request: the run sends what waits in its queue. */
  ready(): void;
}

export interface Transport {
  /** Opens the connections; resolves when they are open or have failed, bounded by the timeout. */
  open(): Promise<void>;
  /** Sends request i now if there is room (returns true), else returns false and the run queues it. */
  trySend(i: number): boolean;
  /** The run gave up on request i (timeout): drop it without reporting it. */
  cancel(i: number): void;
  /**
   * Set when no connection is open and the latest attempts failed: why (`connect`:
   * refused; `protocol`: the peer does not speak the protocol; `reset`: closed at once).
   * Requests that fall due meanwhile fail at once with this kind instead of queueing.
   */
  readonly unavailable: Exclude<FailureKind, 'timeout'> | undefined;
  /** Closes everything; no event follows. */
  close(): void;
}
