// What a terminal (a codec at the bottom of a stack) reports about an attempt, in one
// typed value that goes back up through the layers, innermost first: the balancer
// learns from it, retry may send the request again, filters edit a response head,
// telemetry records the end. A codec decides nothing about resilience: it reads and
// writes bytes and says what happened (Envoy's encode path, undici's handler calls).
import type { ErrorCode } from '../../errors.js';
import type { HeaderModifier } from '../filters/header-modifier.js';

/**
 * A response head arrived, and nothing of it has reached the client yet. A layer that
 * takes it (a retry) makes the report answer false: the codec drops the response and
 * its connection. `edits` are response header edits the codec applies as it writes the head.
 * A codec may refill one object for each of its responses (HTTP/1.1 does): a layer reads
 * it as it passes and keeps no reference to it.
 */
export interface HeadOutcome {
  readonly kind: 'head';
  readonly status: number;
  /** The response's grpc-status when the head ends the call (a trailers-only gRPC answer), else ''. */
  readonly grpcStatus: string;
  /** A peer sidecar answered that its app is unavailable (nothing was delivered). */
  readonly appUnavailable: boolean;
  /** performance.now() when the request went out (the attempt's round trip ends now). */
  readonly sentAt: number;
  edits: readonly HeaderModifier[] | undefined;
}

/**
 * The attempt ended without a response head. `code` and `params` are the answer the
 * client gets when no layer takes the failure (the stack's edge, `Exchange.fail`).
 * - refused: connecting failed; nothing was sent, so any request may go elsewhere;
 * - reset: the connection or stream closed before a head (`partial`: some of a head came);
 * - broken: the upstream's answer is not HTTP the proxy can pass on;
 * - timeout: no head in time (`request`: the route's whole-request deadline passed).
 */
export interface FailureOutcome {
  readonly kind: 'refused' | 'reset' | 'broken' | 'timeout';
  readonly code: ErrorCode;
  readonly params: Record<string, unknown>;
  /** performance.now() when the request went out; 0: never sent. */
  readonly sentAt: number;
  readonly partial?: boolean;
  readonly request?: boolean;
}

/** The exchange is over (answered, failed, or its client went away): layers settle what they hold. */
export interface EndOutcome {
  readonly kind: 'end';
}

export type Outcome = HeadOutcome | FailureOutcome | EndOutcome;

export const END: EndOutcome = { kind: 'end' };
