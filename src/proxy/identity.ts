// Who is calling: the one place a proxy decides the calling service of a request, and
// keeps clients from claiming one. The caller's identity comes from its certificate,
// never from a header (DESIGN.md): an inbound listener takes the SPIFFE ID the peer's
// verified certificate names (mutual TLS, tls/connection-peer.ts) as `ex.peer`, and its
// service as `ex.source` when it is one of the mesh's. An identity header is stripped
// wherever it arrives from, outbound and inbound alike, and the inbound sidecar tells its
// app the verified caller in `trellis-source` (as Istio's X-Forwarded-Client-Cert).
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

/** Drops the identity headers from the head the forwarder sends (only when there are some: the head is then re-serialized). */
function stripIdentity(ex: Exchange): void {
  (ex.headEdits ??= new HeadEdits(ex.req)).headers(STRIP_IDENTITY);
}

/**
 * The caller of an inbound request: the peer its mutual TLS connection verified
 * (`ex.client.peer`, read once per connection), set as `ex.peer`; its service is the
 * source when it is one of the mesh's (`meshServices()`, from the snapshot), else
 * {@link UNKNOWN_SOURCE}, as is every plaintext caller. No value a client picks becomes a
 * metric label or log field: a certificate's name only counts when the snapshot knows it.
 */
export function peerIdentity(meshServices: () => ReadonlySet<string>): CallerIdentity {
  return (ex) => {
    const peer = ex.client.peer;
    if (peer === undefined) return UNKNOWN_SOURCE;
    ex.peer = peer.name;
    return meshServices().has(peer.serviceKey) ? peer.serviceKey : UNKNOWN_SOURCE;
  };
}

/**
 * Outbound and edge listeners: the client is outside the mesh's trust (an app, or the
 * internet at an ingress), so an identity header it sends is dropped, and the request
 * goes on as from `service`, this proxy's own.
 */
export function outboundIdentity(service: string): Layer {
  return (next) => ({
    request(ex) {
      ex.source = service;
      // The next hop learns who calls from this proxy's certificate, not from a header.
      if (hasIdentity(ex.req.lines)) stripIdentity(ex);
      next(ex);
    },
  });
}

/** The workload a calling service's key names (the same object every time); undefined for one the mesh does not hold. */
export type PeerOf = (source: string) => WorkloadName | undefined;

/**
 * Inbound listeners: `identify` decides the caller; any identity header the request
 * brings is stripped, and the app is told the caller the mesh vouches for, if any, in
 * `trellis-source` (one line per mesh service, made once).
 */
export function inboundIdentity(identify: CallerIdentity): Layer {
  const lines = new Map<string, string>();
  return (next) => ({
    request(ex) {
      const source = identify(ex);
      ex.source = source;
      if (hasIdentity(ex.req.lines)) stripIdentity(ex);
      if (source !== UNKNOWN_SOURCE) {
        let line = lines.get(source);
        if (line === undefined) lines.set(source, (line = `${SOURCE_HEADER}: ${source}\r\n`));
        // Appended: the trace layer, outside this one, may have added the trace context already.
        ex.extraHead += line;
      }
      next(ex);
    },
  });
}
