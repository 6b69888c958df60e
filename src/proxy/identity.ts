// Who is calling: the one place a proxy decides the calling service of a request, and
// keeps clients from claiming one. Outbound listeners (what an app, or at the edge the
// internet, talks to) drop any identity header a request brings and say themselves who
// is calling; an inbound listener accepts a claimed caller only when it names a service
// of the mesh, and strips a claim it does not accept before the request reaches its app.
//
// Until mTLS, the claim is the `trellis-source` header a peer sidecar sets. The mTLS
// issue swaps `sourceHeaderIdentity` for the peer certificate's SPIFFE identity and
// keeps the rest (DESIGN.md: "the caller's identity comes from its certificate, never
// from a header; identity headers arriving from outside are stripped").
import type { Exchange } from './stack/exchange.js';
import type { Layer } from './stack/layer.js';
import { HeadEdits } from './filters/head-edits.js';
import type { HeaderModifier } from './filters/header-modifier.js';
import type { WorkloadName } from '../security/spiffe.js';

/** Header carrying the calling service from an outbound sidecar to an inbound one. */
export const SOURCE_HEADER = 'trellis-source';

/** The source of a request whose caller is not known (a label value, bounded). */
export const UNKNOWN_SOURCE = 'unknown';

/** Headers that claim an identity inside the mesh: only a proxy may set them. */
export const IDENTITY_HEADERS: ReadonlySet<string> = new Set([SOURCE_HEADER]);

const STRIP_IDENTITY: HeaderModifier = { drop: IDENTITY_HEADERS, append: [] };

/** Decides the calling service of an inbound request: a mesh service's name, or {@link UNKNOWN_SOURCE}. */
export type CallerIdentity = (ex: Exchange) => string;

/**
 * True when `line` (`Name: value`) is a `trellis-source` header. Checked on every
 * request, so the colon's position rules out nearly every line before a character of
 * the name is compared, and no string is made.
 */
function isSourceLine(line: string): boolean {
  if (line.length < SOURCE_HEADER.length + 1 || line.charCodeAt(SOURCE_HEADER.length) !== 58 /* : */) return false;
  for (let i = 0; i < SOURCE_HEADER.length; i++) {
    let c = line.charCodeAt(i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== SOURCE_HEADER.charCodeAt(i)) return false;
  }
  return true;
}

/** Whether a request head carries an identity header. */
function hasIdentity(lines: readonly string[]): boolean {
  for (const line of lines) if (isSourceLine(line)) return true;
  return false;
}

/** The value of the request's one identity header; undefined when it has none, or several. */
function soleIdentity(lines: readonly string[]): string | undefined {
  let value: string | undefined;
  for (const line of lines) {
    if (!isSourceLine(line)) continue;
    if (value !== undefined) return undefined;
    value = line.slice(SOURCE_HEADER.length + 1).trim();
  }
  return value;
}

/** Drops the identity headers from the head the forwarder sends (only when there are some: the head is then re-serialized). */
function stripIdentity(ex: Exchange): void {
  (ex.headEdits ??= new HeadEdits(ex.req)).headers(STRIP_IDENTITY);
}

/**
 * Today's caller identity: the one `trellis-source` header of the request, accepted
 * when it names a service of the mesh (`meshServices()`, from the snapshot). Anything
 * else (absent, repeated, any other value) is {@link UNKNOWN_SOURCE}, so no value a
 * client picks becomes a metric label or log field.
 */
export function sourceHeaderIdentity(meshServices: () => ReadonlySet<string>): CallerIdentity {
  return (ex) => {
    const v = soleIdentity(ex.req.lines);
    return v !== undefined && meshServices().has(v) ? v : UNKNOWN_SOURCE;
  };
}

/**
 * Outbound and edge listeners: the client is outside the mesh's trust (an app, or the
 * internet at an ingress), so an identity header it sends is dropped, and the request
 * goes on as from `service`, this proxy's own.
 */
export function outboundIdentity(service: string): Layer {
  const line = `${SOURCE_HEADER}: ${service}\r\n`;
  return (next) => ({
    request(ex) {
      ex.source = service;
      if (hasIdentity(ex.req.lines)) stripIdentity(ex);
      ex.extraHead = line;
      next(ex);
    },
  });
}

/** The workload a calling service's key names (the same object every time); undefined for one the mesh does not hold. */
export type PeerOf = (source: string) => WorkloadName | undefined;

/**
 * Inbound listeners: `identify` decides the caller; a claim it did not accept is
 * stripped, so the app never sees an identity the mesh does not vouch for.
 *
 * INTERIM (until mTLS sets `ex.peer` from the peer certificate; the lead keeps the
 * certificate's at merge): the peer is the accepted `trellis-source` service as a
 * workload name, `peerOf(source)` (trust domain + the service's namespace + name), so
 * authorization judges principals now and keeps its rules when certificates come.
 */
export function inboundIdentity(identify: CallerIdentity, peerOf?: PeerOf): Layer {
  return (next) => ({
    request(ex) {
      const source = identify(ex);
      ex.source = source;
      if (source === UNKNOWN_SOURCE) {
        if (hasIdentity(ex.req.lines)) stripIdentity(ex);
      } else if (peerOf !== undefined && ex.peer === undefined) {
        ex.peer = peerOf(source);
      }
      next(ex);
    },
  });
}
