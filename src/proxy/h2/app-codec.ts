// The terminal of the inbound HTTP/2 pipeline: each stream goes to the app in the app's
// own HTTP (app-version.ts: declared, or probed once), as an HTTP/2 stream over the h2c
// session pool (forwarder.ts) or translated to HTTP/1.1 (to-http1.ts). The choice is
// the codec at the bottom of the stack, as Envoy chooses one per upstream cluster; the
// layers above (telemetry, the local app) are the same for both.
//
// gRPC is HTTP/2 only: a gRPC call never goes to an app that speaks only HTTP/1.1; it
// fails with app-protocol (gRPC status UNIMPLEMENTED), which names the cause.
import type { Exchange, Handler } from '../stack/exchange.js';
import type { Picked } from '../stack/decisions.js';
import { endpointKey } from '../balancer/balancer.js';
import { DECLARED_H2_SPEAKS_H1, GRPC_TO_H1_APP, SPEAKS_H1, type AppHttp, type AppHttpVersion } from './app-version.js';
import type { H2ServerStream } from './server-stream.js';

/** Outcomes after which a probed answer may be stale: the app refused, or answered in another protocol (it restarted, maybe as another server). */
const STALE = new Set(['app-unavailable', 'app-protocol', 'upstream-protocol']);
/** Outcomes of an HTTP/2 request that an app speaking only HTTP/1.1 gives (its answer to the preface ends the session). */
const NO_H2_ANSWER = new Set(['app-unavailable', 'upstream-reset']);

/**
 * Watches how the exchange ends, after the layers have: `check` runs with its error
 * token. (The codec choice is this terminal's, so it joins the way back itself.)
 */
function watchEnd(ex: Exchange, check: (token: string) => void): void {
  const outer = ex.back;
  ex.back = (e, o) => {
    const r = outer(e, o);
    if (o.kind === 'end') check(e.errorToken);
    return r;
  };
}

export function appCodec(version: AppHttpVersion, codecs: { readonly h1: Handler<Picked>; readonly h2: Handler<Picked> }): Handler<Picked> {
  const address = (ex: Picked): string => endpointKey(ex.endpoint);

  const dispatch = (ex: Picked, v: AppHttp): void => {
    if (v === 'h1' && (ex.client as H2ServerStream).grpc) {
      return ex.fail('TRELLIS_E_APP_PROTOCOL', { address: address(ex), speaks: SPEAKS_H1, reason: GRPC_TO_H1_APP });
    }
    if (version.declared === undefined) {
      // This request tells whether the probed answer still holds.
      watchEnd(ex, (token) => {
        if (STALE.has(token)) version.forget();
      });
    } else if (v === 'h2') {
      if (version.declaredWrongly) return ex.fail('TRELLIS_E_APP_PROTOCOL', { address: address(ex), speaks: SPEAKS_H1, reason: DECLARED_H2_SPEAKS_H1 });
      // A failure may be a wrong declaration (an HTTP/1.1 app declared http2 or grpc): a probe tells.
      watchEnd(ex, (token) => {
        if (NO_H2_ANSWER.has(token)) version.checkDeclared();
      });
    }
    (v === 'h2' ? codecs.h2 : codecs.h1)(ex);
  };

  const probeThen = (ex: Picked): void => {
    version.resolve((r) => {
      if (ex.finished) return; // the client went away while the app was probed
      if ('failure' in r) return ex.fail('TRELLIS_E_APP_UNAVAILABLE', { address: address(ex), reason: r.failure });
      dispatch(ex, r.version);
    });
  };

  return (ex) => {
    const v = version.known;
    if (v === undefined) return probeThen(ex);
    // An app last found HTTP/1.1-only may have come back as a gRPC server: a gRPC call checks (at most one probe per few seconds).
    if (v === 'h1' && (ex.client as H2ServerStream).grpc && version.staleForGrpc()) {
      version.forget();
      return probeThen(ex);
    }
    dispatch(ex, v);
  };
}
