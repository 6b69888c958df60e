// What an edge proxy tells the mesh about the client: who connected (X-Forwarded-For and
// RFC 7239 Forwarded), over which scheme (X-Forwarded-Proto), and a request id to follow
// the request by (x-request-id, made when the client sent none, as Envoy does at the edge).
//
// The gateway trusts no proxy in front of it, as Istio's gateways by default
// (numTrustedProxies 0): forwarding headers a client sends are its own claims, so they
// are dropped and replaced by what the gateway saw on the connection. Only a gateway
// runs this layer; a sidecar's path is unchanged.
import { randomUUID } from 'node:crypto';
import { HeadEdits } from '../filters/head-edits.js';
import type { HeaderModifier } from '../filters/header-modifier.js';
import type { Exchange } from '../stack/exchange.js';
import type { Layer } from '../stack/layer.js';

/** The client-sent headers an edge replaces. */
const FORWARDING: ReadonlySet<string> = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);
const STRIP_FORWARDING: HeaderModifier = { drop: FORWARDING, append: [] };
const REQUEST_ID = 'x-request-id';
/** An x-request-id longer than this is not kept (it would be logged by apps as is): a new one replaces it. */
const MAX_REQUEST_ID = 128;

/** What a head carries of the headers this layer cares about, in one pass over its lines. */
function scan(lines: readonly string[]): { forwarding: boolean; requestId: boolean } {
  let forwarding = false;
  let requestId = false;
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon < 9 || colon > 17) continue; // no name of interest is shorter than "forwarded" or longer than "x-forwarded-proto"
    const name = line.slice(0, colon).toLowerCase();
    if (FORWARDING.has(name)) forwarding = true;
    else if (name === REQUEST_ID) {
      const v = line.slice(colon + 1).trim();
      if (v.length > 0 && v.length <= MAX_REQUEST_ID && /^[\x21-\x7e]+$/.test(v)) requestId = true;
      else forwarding = true; // a bad one is dropped with the forwarding headers, and a new one made
    }
  }
  return { forwarding, requestId };
}

const STRIP_WITH_ID: HeaderModifier = { drop: new Set([...FORWARDING, REQUEST_ID]), append: [] };

/**
 * The forwarding layer of a gateway listener speaking `scheme`. Sits inside the identity
 * layer (which sets `extraHead`) and appends to it.
 */
export function forwarded(scheme: 'http' | 'https'): Layer {
  return (next) => ({
    request(ex: Exchange) {
      const seen = scan(ex.req.lines);
      let keepId = seen.requestId;
      if (seen.forwarding) {
        // A present but unusable request id goes with the forwarding headers (see scan).
        const strip = seen.requestId ? STRIP_FORWARDING : STRIP_WITH_ID;
        (ex.headEdits ??= new HeadEdits(ex.req)).headers(strip);
        if (strip === STRIP_WITH_ID) keepId = false;
      }
      const ip = ex.client.socket.remoteAddress ?? 'unknown';
      const node = ip.includes(':') ? `"[${ip}]"` : ip;
      ex.extraHead +=
        `x-forwarded-for: ${ip}\r\nx-forwarded-proto: ${scheme}\r\nforwarded: for=${node};proto=${scheme}\r\n` +
        (keepId ? '' : `${REQUEST_ID}: ${randomUUID()}\r\n`);
      next(ex);
    },
  });
}
