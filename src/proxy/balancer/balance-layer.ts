// The balance layer: picks the endpoint of the backend split chose (through the
// balancer, its failover, its circuit breaker and its wait queue) and keeps the
// attempt's books on the way back (attempt.ts).
import type { Endpoint } from '../../api/protocol.js';
import { runGuarded, type Exchange } from '../stack/exchange.js';
import { headerValue } from '../../http1/http1-parser.js';
import { ABANDONED, Attempts, NO_ANSWER } from './attempt.js';
import { endpointKey } from './balancer.js';
import type { HashOn } from '../routing/router.js';
import { QUEUE_WAIT_MS } from '../resilience/wait-queue.js';
import type { Layer } from '../stack/layer.js';
import { withEndpoint, type Picked, type Split } from '../stack/decisions.js';

/** How many endpoints one request may try when connecting fails. */
const MAX_CONNECT_ATTEMPTS = 3;

/**
 * Picks an endpoint of the backend and opens the attempt on it; on the way back closes
 * the attempt with what became of it (the balancer's load and latency, the outlier
 * detector's health), and sends a request nothing of which reached an app (a refused
 * connect, a peer whose app is unavailable) to another endpoint, up to
 * {@link MAX_CONNECT_ATTEMPTS}. It sits right above the codec: every attempt, retries
 * included, passes it.
 */
export const balance: Layer<Split, Picked<Split>> = (next) => {
  const pinned = (ex: Split, b: Split['backend'], tries: Attempts, e: Endpoint): void => pinnedDispatch(next, ex, b, tries, e);
  const dispatch = (ex: Split): void => {
    let b = ex.backend;
    const tries = (ex.tries ??= new Attempts());
    // A version with no endpoint left to take the request (ejected, refusing, tried) fails over to the whole service.
    if (b.failover !== undefined && b.balancer.exhausted(tries.tried) && !b.failover.balancer.exhausted(tries.tried)) {
      // Counted: a canary judged on its own requests alone would not see the ones it could not take.
      if (b.failovers !== undefined) b.failovers.count++;
      ex.backend = b = b.failover;
    }
    const br = b.breaker;
    if (br !== undefined && !br.admitRequest()) return ex.fail('TRELLIS_E_OVERFLOW', { service: ex.service, limit: 'maxRequests', max: br.limits.maxRequests });
    if (ex.pinned !== undefined) return pinned(ex, b, tries, ex.pinned);
    const picked = b.balancer.pick(tries.tried, b.hashOn === undefined ? undefined : hashKey(ex, b.hashOn));
    if (picked.type === 'fail') {
      // After failed connects, the connect failure is the cause worth reporting.
      if (tries.connectError !== '' && ex.endpoint !== undefined)
        return ex.fail('TRELLIS_E_CONNECT', { address: endpointKey(ex.endpoint), reason: tries.connectError });
      // A backend with no endpoint at all: wait (boundedly) for a snapshot that brings one.
      if (
        b.balancer.endpoints.length === 0 &&
        b.queue !== undefined &&
        b.queue.add(
          ex,
          // Both run later (a snapshot's drain, the queue's timer): guarded, as a listener's events are.
          (backend) =>
            runGuarded(ex, () => {
              ex.backend = backend;
              dispatch(ex);
            }),
          () => runGuarded(ex, () => queueExpired(ex)),
        )
      )
        return;
      return ex.fail(picked.code, { backend: b.name });
    }
    tries.start(b, picked.endpoint);
    next(withEndpoint(ex, picked.endpoint));
  };
  return {
    request: dispatch,
    back(ex, o, outer) {
      const tries = ex.tries;
      const e = ex.endpoint;
      // An exchange that failed in this layer (nothing picked) has no attempt to settle.
      if (tries === undefined || !tries.open || e === undefined) return outer(ex, o);
      switch (o.kind) {
        case 'head':
          tries.end(o.status, o.sentAt);
          // The peer sidecar's app is down and nothing was delivered: another endpoint may take it.
          if (o.appUnavailable && ex.bodyless) {
            // No endpoint left to try: the client hears why, as for a refused connect.
            if (connectAgain(ex, e, tries, 'its app is unavailable'))
              ex.fail('TRELLIS_E_CONNECT', { address: endpointKey(e), reason: 'its app is unavailable' });
            return false;
          }
          return outer(ex, o);
        case 'refused':
          tries.end(NO_ANSWER, 0);
          return connectAgain(ex, e, tries, String(o.params.reason ?? '')) && outer(ex, o);
        case 'end':
          // Still open: the client went away, or the exchange failed around the attempt.
          tries.end(ABANDONED, ex.link?.sentAt ?? 0);
          return outer(ex, o);
        default:
          tries.end(NO_ANSWER, o.sentAt);
          return outer(ex, o);
      }
    },
  };

  /** True when the failure goes on up (no other endpoint to try); false when another attempt was dispatched. */
  function connectAgain(ex: Split, e: Endpoint, tries: Attempts, reason: string): boolean {
    if (tries.refused(ex.backend, e, reason) >= MAX_CONNECT_ATTEMPTS) return true;
    dispatch(ex);
    return false;
  }
};

/**
 * A request addressed to one instance goes to that instance while the snapshot lists it
 * as healthy, and nowhere else: not another endpoint after a refusal, nor a queue.
 */
function pinnedDispatch(next: (ex: Picked<Split>) => void, ex: Split, b: Split['backend'], tries: Attempts, e: Endpoint): void {
  if (tries.tried?.has(e.id)) return ex.fail('TRELLIS_E_CONNECT', { address: endpointKey(e), reason: tries.connectError });
  const current = b.balancer.endpoints.find((x) => x.id === e.id);
  if (current === undefined) return ex.fail('TRELLIS_E_NO_ENDPOINTS', { backend: `${b.name} (instance ${e.id} is not healthy)` });
  tries.start(b, current);
  next(withEndpoint(ex, current));
}

function queueExpired(ex: Split): void {
  ex.fail('TRELLIS_E_NO_ENDPOINTS', { backend: `${ex.backend.name} (waited ${QUEUE_WAIT_MS} ms for an endpoint)` });
}

/** A request's affinity key for RingHash and Maglev: a header, a cookie or the client's address. */
function hashKey(ex: Exchange, on: HashOn): string | undefined {
  if ('header' in on) return headerValue(ex.req.lines, on.header);
  if ('cookie' in on) return cookieValue(headerValue(ex.req.lines, 'cookie'), on.cookie);
  return ex.client.socket.remoteAddress;
}

/** The value of cookie `name` in a Cookie header (`a=1; b=2`), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
