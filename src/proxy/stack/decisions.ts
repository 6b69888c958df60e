// The decisions a stack's layers make about an exchange, as types: a layer that needs
// the route takes a `Routed` exchange, which only the route layer makes. Each `with*`
// is called by the one layer that makes that decision, and is the one place its field
// is set and its type narrowed.
import type { Endpoint } from '../../api/protocol.js';
import type { Exchange } from './exchange.js';
import type { CompiledBackend, CompiledRoute, CompiledUpstream } from '../routing/router.js';

/** The destination service is known (the upstream layer). */
export type Upstreamed = Exchange & { upstream: CompiledUpstream };
/** A rule of the destination's routes took the request (the route layer). */
export type Routed = Upstreamed & { route: CompiledRoute };
/** A backend of the rule was picked (split), or failed over to (balance). */
export type Split = Routed & { backend: CompiledBackend };
/** An endpoint was picked: what a codec sends to. */
export type Picked<E extends Exchange = Exchange> = E & { endpoint: Endpoint };

export function withUpstream<E extends Exchange>(ex: E, upstream: CompiledUpstream): E & Upstreamed {
  ex.service = upstream.service;
  ex.upstream = upstream;
  return ex as E & Upstreamed;
}

export function withRoute<E extends Upstreamed>(ex: E, route: CompiledRoute): E & Routed {
  ex.route = route;
  return ex as E & Routed;
}

export function withBackend<E extends Routed>(ex: E, index: number, backend: CompiledBackend): E & Split {
  ex.backendIndex = index;
  ex.backend = backend;
  return ex as E & Split;
}

export function withEndpoint<E extends Exchange>(ex: E, endpoint: Endpoint): Picked<E> {
  ex.endpoint = endpoint;
  return ex as Picked<E>;
}
