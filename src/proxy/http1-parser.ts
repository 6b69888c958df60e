// HTTP/1.1 message heads, parsed only as far as a proxy needs: the request line, the
// framing headers (Content-Length, Transfer-Encoding), Connection, Host, and lazy
// lookups for anything a route matches on. Bodies are never parsed here, only framed
// (see chunked.ts), so they can be forwarded as bytes.
//
// Strict by design: whatever two parsers could read differently (both Content-Length
// and Transfer-Encoding, two Content-Lengths, whitespace before a colon, folded lines,
// bare CR or LF) is refused, so nothing is smuggled past routing.

/** Largest request or response head accepted, in bytes. */
export const MAX_HEAD_BYTES = 16 * 1024;

const CRLFCRLF = Buffer.from('\r\n\r\n');

// RFC 9110 token characters, as a lookup table.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

function isToken(s: string, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** A field value may hold visible characters, spaces and tabs, and obs-text; never CR, LF or NUL. */
function isFieldValue(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}

export interface RequestHead {
  readonly method: string;
  /** The request target as sent (origin-form or absolute-form). */
  readonly target: string;
  /** Path of the target, without the query string. */
  readonly path: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: number;
  /** Host header, or the authority of an absolute-form target. */
  readonly host: string;
  /** -1 when there is no Content-Length. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** Whether the client wants the connection kept after this exchange. */
  readonly keepAlive: boolean;
  /** `Connection: upgrade` with an Upgrade header. */
  readonly upgrade: boolean;
  /** True when the head carries hop-by-hop headers (or an absolute-form target) and must be rewritten before forwarding. */
  readonly rewrite: boolean;
  /** The header lines, unparsed (`Name: value`). */
  readonly lines: readonly string[];
  /** Bytes of the head including the blank line. */
  readonly headBytes: number;
}

export interface ResponseHead {
  readonly status: number;
  readonly minor: number;
  readonly contentLength: number;
  readonly chunked: boolean;
  /** The server will close after this response (or it is HTTP/1.0 without keep-alive). */
  readonly close: boolean;
  /**
   * A 503 from an inbound sidecar whose app refused the connection: the request never
   * reached an app, so it can go to another endpoint.
   */
  readonly appUnavailable: boolean;
  readonly headBytes: number;
}

export type ParseFailure = { readonly error: 'bad-request' | 'head-too-large'; readonly reason: string };

export function isFailure<T extends object>(r: T | ParseFailure | null): r is ParseFailure {
  return r !== null && 'error' in r;
}

const bad = (reason: string): ParseFailure => ({ error: 'bad-request', reason });

/**
 * Finds the end of a head in `buf[0, length)`, searching from `from` (callers pass
 * the previous length - 3 so growing buffers are not rescanned). Returns the index
 * just past the blank line, or -1.
 */
export function findHeadEnd(buf: Buffer, from: number, length: number): number {
  const i = buf.indexOf(CRLFCRLF, Math.max(0, from));
  return i === -1 || i + 4 > length ? -1 : i + 4;
}

/** Case-insensitive compare of `s[from, from+name.length)` with a lower-case name. */
function nameIs(s: string, from: number, colon: number, lower: string): boolean {
  if (colon - from !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = s.charCodeAt(from + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function trimOws(s: string, from: number, to: number): string {
  while (from < to && (s.charCodeAt(from) === 32 || s.charCodeAt(from) === 9)) from++;
  while (to > from && (s.charCodeAt(to - 1) === 32 || s.charCodeAt(to - 1) === 9)) to--;
  return s.slice(from, to);
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authorization']);

/** uri-host [":" port] (RFC 9110 §7.2: an IP literal or a reg-name), or empty. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::\d*)?$/;

/** Headers a Connection header may name but never removes (see serializeRequestHead). */
const NEVER_DROPPED = ['content-length', 'transfer-encoding', 'host'];

const KEEP_ALIVE = ['keep-alive'];
const CLOSE = ['close'];

/** Parses the comma-separated tokens of a Connection header into lower case. */
function connectionTokens(value: string): string[] {
  // The two values nearly every message carries, without split/map/filter.
  if (value.length === 10 || value.length === 5) {
    const lower = value.toLowerCase();
    if (lower === 'keep-alive') return KEEP_ALIVE;
    if (lower === 'close') return CLOSE;
  }
  return value.toLowerCase().split(',').map((t) => t.trim()).filter(Boolean);
}

/**
 * Parses a request head occupying `buf[0, headEnd)` (headEnd from {@link findHeadEnd}).
 */
export function parseRequestHead(buf: Buffer, headEnd: number): RequestHead | ParseFailure {
  const s = buf.toString('latin1', 0, headEnd - 4);
  let pos = 0;
  // Ignore empty lines before the request line.
  while (s.startsWith('\r\n', pos)) pos += 2;
  let eol = s.indexOf('\r\n', pos);
  if (eol === -1) eol = s.length;
  const sp1 = s.indexOf(' ', pos);
  if (sp1 === -1 || sp1 > eol || !isToken(s, pos, sp1)) return bad('invalid request line');
  const sp2 = s.indexOf(' ', sp1 + 1);
  if (sp2 === -1 || sp2 > eol || sp2 === sp1 + 1) return bad('invalid request line');
  if (eol - sp2 !== 9 || !s.startsWith('HTTP/1.', sp2 + 1)) return bad('unsupported HTTP version');
  const minorCode = s.charCodeAt(eol - 1);
  if (minorCode !== 48 && minorCode !== 49) return bad('unsupported HTTP version');
  const minor = minorCode - 48;
  const method = s.slice(pos, sp1);
  const target = s.slice(sp1 + 1, sp2);
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return bad('invalid character in request target');
  }

  let host = '';
  let hostSeen = false;
  let contentLength = -1;
  let chunked = false;
  let teSeen = false;
  let connection = '';
  let hasUpgradeHeader = false;
  let rewrite = false;
  const lines: string[] = [];

  pos = eol + 2;
  while (pos < s.length) {
    let end = s.indexOf('\r\n', pos);
    if (end === -1) end = s.length;
    const first = s.charCodeAt(pos);
    if (first === 32 || first === 9) return bad('obsolete line folding');
    const colon = s.indexOf(':', pos);
    if (colon === -1 || colon > end || !isToken(s, pos, colon)) return bad('invalid header name');
    if (!isFieldValue(s, colon + 1, end)) return bad('invalid character in header value');
    const line = s.slice(pos, end);
    lines.push(line);
    const len = colon - pos;
    if (len === 4 && nameIs(s, pos, colon, 'host')) {
      if (hostSeen) return bad('duplicate Host header');
      hostSeen = true;
      host = trimOws(s, colon + 1, end);
      // RFC 9112 §3.2: an invalid Host is refused; it names the service on the HTTP-proxy listener.
      if (!HOST.test(host)) return bad('invalid Host header');
    } else if (len === 14 && nameIs(s, pos, colon, 'content-length')) {
      if (contentLength !== -1) return bad('duplicate Content-Length');
      const v = trimOws(s, colon + 1, end);
      if (!/^\d{1,15}$/.test(v)) return bad('invalid Content-Length');
      contentLength = Number(v);
    } else if (len === 17 && nameIs(s, pos, colon, 'transfer-encoding')) {
      if (teSeen) return bad('duplicate Transfer-Encoding');
      teSeen = true;
      const v = trimOws(s, colon + 1, end).toLowerCase();
      if (v !== 'chunked') return bad(`unsupported Transfer-Encoding "${v}"`);
      chunked = true;
    } else if (len === 10 && nameIs(s, pos, colon, 'connection')) {
      connection = connection ? `${connection},${trimOws(s, colon + 1, end)}` : trimOws(s, colon + 1, end);
    } else if (len === 7 && nameIs(s, pos, colon, 'upgrade')) {
      hasUpgradeHeader = true;
    } else if ((len === 10 || len === 16 || len === 2 || len === 7 || len === 19) && HOP_BY_HOP.has(s.slice(pos, colon).toLowerCase())) {
      rewrite = true;
    }
    pos = end + 2;
  }

  if (teSeen && contentLength !== -1) return bad('both Content-Length and Transfer-Encoding');
  if (teSeen && minor === 0) return bad('Transfer-Encoding in an HTTP/1.0 request');
  if (minor === 1 && !hostSeen) return bad('missing Host header');

  let keepAlive = minor === 1;
  let upgrade = false;
  if (connection) {
    const tokens = connectionTokens(connection);
    for (const t of tokens) {
      if (t === 'close') keepAlive = false;
      else if (t === 'keep-alive') keepAlive = keepAlive || minor === 0;
      else if (t === 'upgrade') upgrade = hasUpgradeHeader;
    }
    // `Connection: keep-alive` alone is harmless upstream; anything else names hop-by-hop headers.
    if (!(tokens.length === 1 && tokens[0] === 'keep-alive')) rewrite = true;
  }
  if (hasUpgradeHeader) rewrite = true;

  let path = target;
  if (target.charCodeAt(0) !== 47 /* / */) {
    // absolute-form (a client using us as an HTTP proxy) or asterisk-form.
    const m = /^https?:\/\/([^/?#]*)([^#]*)$/i.exec(target);
    if (m) {
      if (!hostSeen || m[1]) host = m[1]!;
      path = m[2] || '/';
      rewrite = true;
    } else if (target !== '*' || method !== 'OPTIONS') {
      return bad('invalid request target');
    }
  }
  const q = path.indexOf('?');
  const originForm = path;
  if (q !== -1) path = path.slice(0, q);

  return {
    method, target: originForm, path, minor, host, contentLength, chunked, keepAlive, upgrade,
    rewrite, lines, headBytes: headEnd,
  };
}

/** Value of the first header named `lower` (lower case), or undefined. */
export function headerValue(lines: readonly string[], lower: string): string | undefined {
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (nameIs(line, 0, colon, lower)) return trimOws(line, colon + 1, line.length);
  }
  return undefined;
}

/**
 * Serializes a request head for the next hop: origin-form target, without hop-by-hop
 * headers (those named in Connection too), plus `extra` lines. Used only when
 * {@link RequestHead.rewrite} is set; otherwise the raw bytes are forwarded.
 */
export function serializeRequestHead(req: RequestHead, extra: string, keepUpgrade: boolean): string {
  const drop = new Set(HOP_BY_HOP);
  // Every Connection line, as the parser combined them: not only the first.
  for (const line of req.lines) {
    const colon = line.indexOf(':');
    if (nameIs(line, 0, colon, 'connection')) for (const t of connectionTokens(trimOws(line, colon + 1, line.length))) drop.add(t);
  }
  // Never the framing or the Host, whatever Connection names: the body is forwarded as
  // framed here, so without its Content-Length (or Transfer-Encoding) the next hop would
  // read it as the next request (`Connection: content-length` smuggled requests past routing).
  for (const keep of NEVER_DROPPED) drop.delete(keep);
  if (keepUpgrade) drop.delete('upgrade');
  let out = `${req.method} ${req.target} HTTP/1.${req.minor}\r\n`;
  for (const line of req.lines) {
    const name = line.slice(0, line.indexOf(':')).toLowerCase();
    if (!drop.has(name)) out += line + '\r\n';
  }
  if (keepUpgrade) out += 'connection: upgrade\r\n';
  return out + extra + '\r\n';
}

/** Case-insensitive compare of bytes `buf[from, from+lower.length)` with a lower-case ASCII name. */
function bytesAre(buf: Buffer, from: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = buf[from + i]!;
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** The first index in `buf[from, to)` that is not a space or tab. */
function skipOws(buf: Buffer, from: number, to: number): number {
  while (from < to && (buf[from] === 32 || buf[from] === 9)) from++;
  return from;
}

/** One past the last index in `buf[from, to)` that is not a space or tab. */
function trimOwsEnd(buf: Buffer, from: number, to: number): number {
  while (to > from && (buf[to - 1] === 32 || buf[to - 1] === 9)) to--;
  return to;
}

/**
 * Parses a response head occupying `buf[0, headEnd)`. `headRequest` responses and
 * 1xx/204/304 have no body whatever their headers say; the caller handles that.
 *
 * It reads the bytes where they are, with no string made for the head: this runs once
 * per response, and the string version (with a regular expression per Content-Length)
 * cost about 0.8 µs a response, a few percent of a sidecar's CPU at max rate. Every
 * line must end in CRLF; a bare CR or LF is refused.
 */
export function parseResponseHead(buf: Buffer, headEnd: number): ResponseHead | ParseFailure {
  const limit = headEnd - 2; // the blank line's CRLF
  // Status line: `HTTP/1.x NNN[ reason]`.
  if (limit < 12 || !bytesAre(buf, 0, 'http/1.') || buf[8] !== 32) return bad('invalid status line');
  const minor = buf[7]! - 48;
  if (minor !== 0 && minor !== 1) return bad('unsupported HTTP version');
  const d0 = buf[9]! - 48, d1 = buf[10]! - 48, d2 = buf[11]! - 48;
  if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || (buf[12] !== 32 && buf[12] !== 13)) return bad('invalid status code');
  const status = d0 * 100 + d1 * 10 + d2;

  let contentLength = -1;
  let chunked = false;
  let teSeen = false;
  let close = minor === 0;
  /** `close` named in any Connection line: a later `keep-alive` (HTTP/1.0) does not undo it. */
  let closeNamed = false;
  let appUnavailable = false;
  let pos = 12;
  for (; pos < limit && buf[pos] !== 13; pos++) {
    // The reason phrase is forwarded as received: a control byte (a bare LF) in it would end the line for the client.
    const c = buf[pos]!;
    if ((c < 32 && c !== 9) || c === 127) return bad('invalid character in status line');
  }
  for (;;) {
    // `pos` is at the CR ending the previous line.
    if (buf[pos + 1] !== 10) return bad('bare CR in the head');
    pos += 2;
    if (pos >= limit) break; // the blank line
    let colon = -1;
    let eol = pos;
    for (; eol < limit; eol++) {
      const c = buf[eol]!;
      if (c === 13) break;
      if (c === 10) return bad('bare LF in the head');
      // As for requests: a name is a token (so no folded line, no whitespace before the
      // colon) and a value holds no control byte; the head is forwarded as received.
      if (colon === -1) {
        if (c === 58) colon = eol;
        else if (c > 127 || TCHAR[c] === 0) return bad('invalid header line');
      } else if ((c < 32 && c !== 9) || c === 127) {
        return bad('invalid character in header value');
      }
    }
    if (colon === -1 || colon === pos) return bad('invalid header line');
    const len = colon - pos;
    const from = skipOws(buf, colon + 1, eol);
    const to = trimOwsEnd(buf, from, eol);
    if (len === 14 && bytesAre(buf, pos, 'content-length')) {
      if (to === from || to - from > 15) return bad('invalid Content-Length');
      let n = 0;
      for (let i = from; i < to; i++) {
        const d = buf[i]! - 48;
        if (d < 0 || d > 9) return bad('invalid Content-Length');
        n = n * 10 + d;
      }
      if (contentLength !== -1 && contentLength !== n) return bad('conflicting Content-Length');
      contentLength = n;
    } else if (len === 17 && bytesAre(buf, pos, 'transfer-encoding')) {
      teSeen = true;
      // Several lines are one list (RFC 9110 §5.3) whose empty elements are ignored: the
      // last coding named anywhere decides (`chunked` then an empty line stays chunked).
      const codings = buf.toString('latin1', from, to).split(',');
      for (let i = codings.length - 1; i >= 0; i--) {
        const c = codings[i]!.trim();
        if (c !== '') { chunked = c.toLowerCase() === 'chunked'; break; }
      }
    } else if (status === 503 && len === 13 && bytesAre(buf, pos, 'trellis-error')) {
      appUnavailable = to - from === 15 && bytesAre(buf, from, 'app-unavailable');
    } else if (len === 10 && bytesAre(buf, pos, 'connection')) {
      if (to - from === 10 && bytesAre(buf, from, 'keep-alive')) {
        if (minor === 0) close = false;
      } else if (to - from === 5 && bytesAre(buf, from, 'close')) {
        closeNamed = true;
      } else {
        for (const t of connectionTokens(buf.toString('latin1', from, to))) {
          if (t === 'close') closeNamed = true;
          else if (t === 'keep-alive' && minor === 0) close = false;
        }
      }
    }
    pos = eol;
  }
  if (closeNamed) close = true;
  if (teSeen) {
    // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); such a connection is not reused.
    if (contentLength !== -1) close = true;
    contentLength = -1;
    if (!chunked) close = true; // read until close
  }
  return { status, minor, contentLength, chunked, close, appUnavailable, headBytes: headEnd };
}
