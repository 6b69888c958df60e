// Fault injection (the Trellis FaultInjection policy): hold a share of a route's
// requests for a fixed delay, and answer a share with an error instead of forwarding
// them, as Envoy's fault filter does (delay first, then abort, each drawn on its own).
// An abort is a Trellis error (fault-abort) answered with the policy's HTTP status, or
// for gRPC with HTTP 200 and the grpc-status in the headers (a trailers-only response).
import type { FaultConfig } from '../../api/protocol.js';
import { runGuarded } from '../stack/exchange.js';
import type { Layer } from '../stack/layer.js';
import type { Routed } from '../stack/decisions.js';

/** What the fault layer reports, for metrics. */
export interface FaultObserver {
  injected(destination: string, route: string, fault: 'delay' | 'abort'): void;
}

/**
 * The fault layer; `random` is injectable so tests can decide the draws. A delay that
 * outlasts the request's deadline is ended by the timeouts layer outside, at the deadline.
 */
export function fault(observer: FaultObserver, random: () => number = Math.random): Layer<Routed> {
  return (next) => {
    const abortOrForward = (ex: Routed, f: FaultConfig): void => {
      const a = f.abort;
      if (a !== undefined && random() * 100 < a.percent) {
        observer.injected(ex.service, ex.route.name, 'abort');
        return ex.fail('TRELLIS_E_FAULT_ABORT', { policy: f.policy }, a.httpStatus, a.grpcStatus);
      }
      next(ex);
    };
    return {
      request(ex) {
        const f = ex.route.fault;
        if (f === undefined) return next(ex);
        const d = f.delay;
        if (d === undefined || !(random() * 100 < d.percent)) return abortOrForward(ex, f);
        observer.injected(ex.service, ex.route.name, 'delay');
        // Unref'd: the client's connection keeps the process alive while the request
        // matters; a delay whose request already ended (a timeout, a client gone) must
        // not keep a stopping proxy alive for the rest of the delay.
        setTimeout(() => {
          if (!ex.finished) runGuarded(ex, () => abortOrForward(ex, f));
        }, d.ms).unref();
      },
    };
  };
}
