// The rate-limit layer of the inbound stack: after authorization (a caller refused
// there spends no one's tokens), before anything reaches the app. A request over a limit
// is answered 429 rate-limited (gRPC: RESOURCE_EXHAUSTED) through `Exchange.fail`, with
// Retry-After and the IETF RateLimit-Policy / RateLimit fields; an allowed response
// carries the RateLimit fields too when its policy says `responseHeaders: true`.
//
// Hot path: a service without limits costs one test. With limits, a request costs a
// clock read, a bucket lookup per limit (a Map get for a keyed limit, and the key's
// string: the header value, which is the one allocation), and no closure; header
// strings are built only for a refusal or when a policy asks for them.
import type { Layer } from '../stack/layer.js';
import type { Exchange } from '../stack/exchange.js';
import type { HeaderModifier } from '../filters/header-modifier.js';
import { retryAfterSeconds } from './headers.js';
import type { RateLimits } from './rate-limits.js';

/** What the layer reports. */
export interface RateLimitObserver {
  refused(policy: string, limit: string): void;
}

const NOTHING_DROPPED: ReadonlySet<string> = new Set();

/**
 * `limits`: the rate limits of the snapshot in force (undefined: none); `clock`: ms,
 * monotonic (performance.now in a sidecar; a fake in tests).
 */
export function rateLimit(limits: () => RateLimits | undefined, observer: RateLimitObserver, clock: () => number = () => performance.now()): Layer {
  return (next) => ({
    request(ex) {
      const rl = limits();
      if (rl === undefined) return next(ex);
      const covering = rl.limitsFor(ex);
      if (covering.length === 0) return next(ex);
      const refusal = rl.admit(ex, covering, clock());
      if (refusal === undefined) {
        if (rl.headersOnAllowed) addResponseHeaders(ex, rl.headerLines(covering, true));
        return next(ex);
      }
      const { spec } = refusal.limit;
      const retryAfter = retryAfterSeconds(refusal.waitMs);
      observer.refused(spec.policy, spec.name);
      ex.replyHead = `retry-after: ${retryAfter}\r\n${rl.headerLines(covering, false)}`;
      ex.fail('TRELLIS_E_RATE_LIMITED', { policy: spec.policy, limit: spec.name, retryAfter });
    },
    back(ex, o, outer) {
      // The response head the codec is about to write takes the RateLimit fields (stack/outcome.ts: edits).
      if (o.kind === 'head' && ex.responseEdits !== undefined) o.edits = o.edits === undefined ? ex.responseEdits : [...o.edits, ...ex.responseEdits];
      return outer(ex, o);
    },
  });
}

function addResponseHeaders(ex: Exchange, lines: string): void {
  if (lines === '') return;
  const append = lines.slice(0, -2).split('\r\n');
  const m: HeaderModifier = { drop: NOTHING_DROPPED, append };
  (ex.responseEdits ??= []).push(m);
}
