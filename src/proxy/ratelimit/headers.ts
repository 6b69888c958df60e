// The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-11 and -12,
// sections 3 and 4): `RateLimit-Policy` lists quota policies as Structured Field items,
// `"name";q=<quota>;w=<window seconds>`, and `RateLimit` the service limit left under
// each, `"name";r=<remaining>;t=<seconds>`. The window is whole seconds (the draft has
// no sub-second precision), so a limit per 100ms is advertised as its rate per second.
// No `pk` (partition key) is sent: it would echo the caller's header value or identity.

/** `"name";q=Q;w=W` for a limit of `requests` per `intervalMs`. */
export function policyItem(name: string, requests: number, intervalMs: number): string {
  const w = Math.max(1, Math.round(intervalMs / 1000));
  const q = Math.floor((requests * w * 1000) / intervalMs);
  return `"${name}";q=${q};w=${w}`;
}

/** `"name";r=R;t=T`: R whole tokens left, T seconds (rounded up) until they are all back. */
export function limitItem(name: string, remaining: number, seconds: number): string {
  return `"${name}";r=${Math.max(0, Math.floor(remaining))};t=${Math.max(0, Math.ceil(seconds))}`;
}

/** Retry-After in whole seconds (RFC 9110 10.2.3: delay-seconds), at least 1, for a wait of `ms`. */
export function retryAfterSeconds(ms: number): number {
  return Number.isFinite(ms) ? Math.max(1, Math.ceil(ms / 1000)) : 3600;
}
