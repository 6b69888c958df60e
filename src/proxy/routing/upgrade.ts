// Which HTTP/1.1 upgrades may become byte tunnels. After `101 Switching Protocols` the
// proxy only copies bytes: nothing after it is parsed, routed or logged per request. So
// a tunnel is opened only to a protocol the destination service accepts (its Mesh
// `upgrades`, WebSocket by default, as Istio enables it on every route), and only when
// the upstream switches to a protocol the request offered (RFC 9110 §7.8).
//
// h2c is never tunnelled: after it the client speaks HTTP/2 with any :path it likes,
// which is exactly the routing a tunnel skips. An h2c upgrade is forwarded as a plain
// HTTP/1.1 request instead, as Envoy does (the parser drops h2c from the offer and
// HTTP2-Settings as hop-by-hop): a server may always ignore an Upgrade, so every client
// that offers h2c (curl --http2) carries on in HTTP/1.1. Refusing it would fail those
// clients for nothing; HTTP/2 reaches the mesh with prior knowledge instead.
import type { Exchange } from '../stack/exchange.js';
import type { Layer } from '../stack/layer.js';
import { offeredProtocols } from '../../http1/http1-parser.js';

/**
 * The upgrade layer: a request offering protocols its destination does not accept
 * is answered 403 upgrade-refused before anything is sent; one whose protocols are all
 * accepted may ask for them upstream (`ex.upgradeTo`). Every other request passes with
 * one test. `accepted` gives the destination's list (lower case); `service` names the
 * destination on an inbound listener (outbound, the upstream layer has set `ex.service`).
 */
export function upgrades<E extends Exchange>(accepted: (ex: E) => readonly string[], service?: string): Layer<E> {
  return (next) => ({
    request(ex) {
      const req = ex.req;
      if (req.upgrade && req.upgradeTo !== undefined) {
        const refused = firstRefused(req.upgradeTo, accepted(ex));
        if (refused !== undefined) return ex.fail('TRELLIS_E_UPGRADE_REFUSED', { service: service ?? ex.service, protocol: refused });
        ex.upgradeTo = req.upgradeTo;
      }
      next(ex);
    },
  });
}

/** The first protocol of an offer (`a, b/1`) not in `accepted`, or undefined when all are. */
export function firstRefused(offer: string, accepted: readonly string[]): string | undefined {
  for (const p of offeredProtocols(offer)) if (!accepted.includes(p.toLowerCase())) return p;
  return undefined;
}
