// The balancer contract: given the endpoints of one backend, pick one for a request.
// The answer is a tagged union (as grpc-js's PickResultType) so callers handle every
// outcome: a pick, or a failure with the code to answer with. (A later issue adds
// `queue` for a bounded wait when no endpoint is available.)
import type { Endpoint } from '../../control/protocol.js';
import type { ErrorCode } from '../../errors.js';

export type PickResult =
  | { readonly type: 'pick'; readonly endpoint: Endpoint }
  | { readonly type: 'fail'; readonly code: ErrorCode };

export interface Balancer {
  readonly endpoints: readonly Endpoint[];
  /** Picks an endpoint, skipping those in `exclude` (already tried by this request) when it can. */
  pick(exclude?: ReadonlySet<string>): PickResult;
  /** Reports that connecting to an endpoint failed, so it is avoided for a short while. */
  connectFailed(endpoint: Endpoint, now: number): void;
}

/** How long an endpoint that refused a connection is skipped, in ms. */
export const CONNECT_FAILURE_BACKOFF_MS = 2000;

export function endpointKey(e: { host: string; port: number }): string {
  return `${e.host}:${e.port}`;
}
