// What HTTP says of request methods (RFC 9110 §9.2) that decides when a request may be
// sent twice: by a retry (retry.ts), by a proxy on its own after a pooled connection
// closed under it (RFC 9112 §9.3.1.1; upstream-connection.ts), or elsewhere after the
// app reset it (the inbound stack).

/** Methods that can be sent twice with the effect of once (RFC 9110 9.2.2). */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/**
 * Methods that are safe (RFC 9110 9.2.1): read-only by definition, so a copy that
 * reached a dying server did nothing a second copy could repeat. PUT and DELETE are
 * idempotent by the RFC but are left out of what is replayed without being asked, as
 * Go's http.Transport leaves them out of its own replays (`isReplayable`): apps often
 * give them effects a second copy shows (a DELETE answered 404 the second time, an
 * audit entry, a counter), and Envoy and Linkerd replay nothing without a policy at
 * all. A route that knows its PUTs and DELETEs are idempotent says so with `retry`.
 */
export const SAFE: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * A request that may be sent elsewhere without a retry policy when what it was sent to
 * died before answering: the inbound sidecar answers `app-unavailable` for it when its
 * app resets, and the caller's sidecar replays it on another endpoint when the peer
 * sidecar itself resets (retry.ts).
 */
export function sendableElsewhere(method: string, bodyless: boolean): boolean {
  return bodyless && SAFE.has(method);
}
