// HTTP/1.1 message heads, parsed only as far as a proxy needs: the request line, the
// framing headers (Content-Length, Transfer-Encoding), Connection, Host, and lazy
// lookups for anything a route matches on. Bodies are never parsed here, only framed
// (see chunked.ts), so they can be forwarded as bytes.
//
// Strict by design: whatever two parsers could read differently (both Content-Length
// and Transfer-Encoding, two Content-Lengths, whitespace before a colon, folded lines,
// bare CR or LF, control characters, a Host that contradicts an absolute-form target)
// is refused, in requests and in responses alike (RFC 9112 §6), so nothing is smuggled
// past routing nor passed on for the next parser to read another way.

/** Largest request or response head accepted, in bytes. */
export const MAX_HEAD_BYTES = 16 * 1024;

const CRLFCRLF = Buffer.from('\r\n\r\n');

// RFC 9110 token characters, as a lookup table over every byte value.
const TCHAR = new Uint8Array(256);
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
  /** `Connection: upgrade` with an Upgrade header naming a protocol other than h2c, in HTTP/1.1. */
  readonly upgrade: boolean;
  /**
   * The protocols an upgrade request offers (`upgrade` true), as sent, without h2c
   * (never tunnelled; see upgrade.ts); '' otherwise. Absent on HTTP/2 requests.
   */
  readonly upgradeTo?: string;
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
  /** A 101's Upgrade header: the protocol the server switched to; '' for any other status. */
  readonly upgrade: string;
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

// HTTP2-Settings belongs to an h2c upgrade, which is never forwarded (RFC 9113 §3.2.1 makes it connection-specific).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'http2-settings']);

/** The common methods, by length: a request for one of them shares its name, and makes no string of its own. */
const METHODS: readonly (readonly string[])[] = [[], [], [], ['GET', 'PUT'], ['HEAD', 'POST'], ['PATCH'], ['DELETE'], ['OPTIONS']];

/** `s[from, to)`, a method name (a token, case-sensitive: RFC 9110 §9.1). */
function methodName(s: string, from: number, to: number): string {
  const known = METHODS[to - from];
  if (known !== undefined) for (const m of known) if (s.startsWith(m, from)) return m;
  return s.slice(from, to);
}

/**
 * Whether `s[from, colon)` names a hop-by-hop header other than those the request parser
 * reads itself (Connection, Upgrade, HTTP2-Settings): compared in place, as the name of
 * every line is, so an ordinary header (a `User-Agent`, as long as `keep-alive`) makes no
 * lower-case copy of its name.
 */
function isOtherHopByHop(s: string, from: number, colon: number): boolean {
  switch (colon - from) {
    case 2:
      return nameIs(s, from, colon, 'te');
    case 7:
      return nameIs(s, from, colon, 'trailer');
    case 10:
      return nameIs(s, from, colon, 'keep-alive');
    case 16:
      return nameIs(s, from, colon, 'proxy-connection');
    case 19:
      return nameIs(s, from, colon, 'proxy-authorization');
    default:
      return false;
  }
}

/** uri-host [":" port] (RFC 9110 §7.2: an IP literal or a reg-name), or empty. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::\d*)?$/;

/** Headers a Connection header may name but never removes (see serializeRequestHead). */
const NEVER_DROPPED = ['content-length', 'transfer-encoding', 'host'];

const KEEP_ALIVE = ['keep-alive'];
const CLOSE = ['close'];

/**
 * A Connection line's value, trimmed; the two values nearly every request carries,
 * `keep-alive` and `close`, as constants in lower case (all that is read of it is its
 * tokens, in lower case), with no string made.
 */
function connectionValue(s: string, from: number, to: number): string {
  while (from < to && (s.charCodeAt(from) === 32 || s.charCodeAt(from) === 9)) from++;
  while (to > from && (s.charCodeAt(to - 1) === 32 || s.charCodeAt(to - 1) === 9)) to--;
  if (nameIs(s, from, to, 'keep-alive')) return 'keep-alive';
  if (nameIs(s, from, to, 'close')) return 'close';
  return s.slice(from, to);
}

/** Parses the comma-separated tokens of a Connection header into lower case. */
function connectionTokens(value: string): string[] {
  // The two values nearly every message carries, without split/map/filter.
  if (value === 'keep-alive') return KEEP_ALIVE;
  if (value === 'close') return CLOSE;
  if (value.length === 10 || value.length === 5) {
    const lower = value.toLowerCase();
    if (lower === 'keep-alive') return KEEP_ALIVE;
    if (lower === 'close') return CLOSE;
  }
  return value
    .toLowerCase()
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
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
  const method = methodName(s, pos, sp1);
  // A tunnel to any address the client names is not a mesh's to open (an upgrade to a
  // permitted protocol is the way through); refused in every target form.
  if (sp1 - pos === 7 && method === 'CONNECT') return bad('CONNECT is not supported');
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
  let upgradeValue: string | undefined;
  let rewrite = false;

  pos = eol + 2;
  // The lines are counted first, for an array of their number: one grown by push is
  // about twice as large (some 80 bytes of every request's garbage).
  let count = 0;
  for (let at = pos; at < s.length; count++) {
    const e = s.indexOf('\r\n', at);
    if (e === -1) {
      count++;
      break;
    }
    at = e + 2;
  }
  const lines: string[] = new Array(count);
  let n = 0;
  while (pos < s.length) {
    let end = s.indexOf('\r\n', pos);
    if (end === -1) end = s.length;
    const first = s.charCodeAt(pos);
    if (first === 32 || first === 9) return bad('obsolete line folding');
    const colon = s.indexOf(':', pos);
    if (colon === -1 || colon > end || !isToken(s, pos, colon)) return bad('invalid header name');
    if (!isFieldValue(s, colon + 1, end)) return bad('invalid character in header value');
    lines[n++] = s.slice(pos, end);
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
      const v = connectionValue(s, colon + 1, end);
      connection = connection ? `${connection},${v}` : v;
    } else if (len === 7 && nameIs(s, pos, colon, 'upgrade')) {
      const v = trimOws(s, colon + 1, end);
      upgradeValue = upgradeValue === undefined ? v : `${upgradeValue}, ${v}`;
    } else if (len === 14 && nameIs(s, pos, colon, 'http2-settings')) {
      rewrite = true;
    } else if (isOtherHopByHop(s, pos, colon)) {
      rewrite = true;
    }
    pos = end + 2;
  }

  if (teSeen && contentLength !== -1) return bad('both Content-Length and Transfer-Encoding');
  if (teSeen && minor === 0) return bad('Transfer-Encoding in an HTTP/1.0 request');
  if (minor === 1 && !hostSeen) return bad('missing Host header');

  let keepAlive = minor === 1;
  let upgradeAsked = false;
  if (connection) {
    const tokens = connectionTokens(connection);
    for (const t of tokens) {
      if (t === 'close') keepAlive = false;
      else if (t === 'keep-alive') keepAlive = keepAlive || minor === 0;
      else if (t === 'upgrade') upgradeAsked = true;
    }
    // `Connection: keep-alive` alone is harmless upstream; anything else names hop-by-hop headers.
    if (!(tokens.length === 1 && tokens[0] === 'keep-alive')) rewrite = true;
  }
  let upgradeTo = '';
  if (upgradeValue !== undefined) {
    // Dropped when forwarding unless an upgrade layer permits it (serializeRequestHead).
    rewrite = true;
    // An Upgrade in HTTP/1.0 is ignored (RFC 9110 §7.8), as is one without `Connection: upgrade`.
    if (upgradeAsked && minor === 1) {
      const offered = upgradeProtocols(upgradeValue);
      if (offered === undefined) return bad('invalid Upgrade header');
      upgradeTo = offered;
    }
  }

  let path = target;
  if (target.charCodeAt(0) !== 47 /* / */) {
    // absolute-form (a client using us as an HTTP proxy) or asterisk-form.
    const m = /^(https?):\/\/([^/?#]*)([^#]*)$/i.exec(target);
    if (m) {
      // The target's authority is the request's host (RFC 9112 §3.2.2). A Host header
      // naming another is refused rather than one of them silently dropped: routing and
      // the app would read different hosts. Without one (HTTP/1.0), it is added.
      const authority = m[2]!;
      if (authority === '') return bad('absolute-form target with an empty host');
      if (authority.includes('@')) return bad('userinfo in the request target');
      if (!hostSeen) lines.push(`Host: ${authority}`);
      else if (!sameAuthority(host, authority, m[1]!.length === 5 ? ':443' : ':80'))
        return bad('the Host header names another host than the absolute-form target');
      host = authority;
      // An empty path is "/" (RFC 9112 §3.2.1), a query included: `http://a?q=1` is `/?q=1`.
      path = m[3] === '' || m[3] === undefined ? '/' : m[3].charCodeAt(0) === 63 /* ? */ ? `/${m[3]}` : m[3];
      rewrite = true;
    } else if (target !== '*' || method !== 'OPTIONS') {
      return bad('invalid request target');
    }
  }
  const q = path.indexOf('?');
  const originForm = path;
  if (q !== -1) path = path.slice(0, q);

  return {
    method,
    target: originForm,
    path,
    minor,
    host,
    contentLength,
    chunked,
    keepAlive,
    upgrade: upgradeTo !== '',
    upgradeTo,
    rewrite,
    lines,
    headBytes: headEnd,
  };
}

/**
 * The protocols of an Upgrade header value (`name[/version]` tokens, comma-separated),
 * as sent, without h2c; undefined when the value is not such a list.
 */
function upgradeProtocols(value: string): string | undefined {
  if (value.indexOf(',') === -1) {
    if (!isProtocol(value)) return undefined;
    return value.toLowerCase() === 'h2c' ? '' : value;
  }
  const kept: string[] = [];
  for (const part of value.split(',')) {
    const p = trimOws(part, 0, part.length);
    if (p === '') continue;
    if (!isProtocol(p)) return undefined;
    if (p.toLowerCase() !== 'h2c') kept.push(p);
  }
  return kept.join(', ');
}

/** The protocols of an offer as {@link RequestHead.upgradeTo} holds it (`a, b/1`). */
export function offeredProtocols(offer: string): string[] {
  return offer.indexOf(',') === -1
    ? [offer]
    : offer
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== '');
}

/**
 * The protocol a 101 switched to (its Upgrade header), lower case, when it is exactly
 * one the request offered (RFC 9110 §7.8); undefined otherwise (no upgrade was offered,
 * or the server chose another, or several).
 */
export function switchedTo(offer: string, upgrade: string): string | undefined {
  if (offer === '' || upgrade === '' || upgrade.includes(',')) return undefined;
  const chosen = upgrade.toLowerCase();
  for (const p of offeredProtocols(offer)) if (p.toLowerCase() === chosen) return chosen;
  return undefined;
}

/** `protocol-name ["/" protocol-version]`, both tokens (RFC 9110 §7.8). */
function isProtocol(p: string): boolean {
  const slash = p.indexOf('/');
  return slash === -1 ? isToken(p, 0, p.length) : isToken(p, 0, slash) && isToken(p, slash + 1, p.length);
}

/** Whether a Host value and a target's authority name the same host and port, ignoring case and the scheme's default port (`:80`). */
export function sameAuthority(host: string, authority: string, defaultPort: string): boolean {
  const a = host.toLowerCase();
  const b = authority.toLowerCase();
  return a === b || (a.endsWith(defaultPort) ? a.slice(0, -defaultPort.length) : a) === (b.endsWith(defaultPort) ? b.slice(0, -defaultPort.length) : b);
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
 * `upgradeTo`: the upgrade protocols the request may ask for (an upgrade layer's
 * decision); '' forwards the request without its Upgrade, as a plain one.
 */
export function serializeRequestHead(req: RequestHead, extra: string, upgradeTo = ''): string {
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
  let out = `${req.method} ${req.target} HTTP/1.${req.minor}\r\n`;
  for (const line of req.lines) {
    const name = line.slice(0, line.indexOf(':')).toLowerCase();
    if (!drop.has(name)) out += `${line}\r\n`;
  }
  if (upgradeTo !== '') out += `upgrade: ${upgradeTo}\r\nconnection: upgrade\r\n`;
  return `${out + extra}\r\n`;
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

/** `HTTP/1.` as bytes: the protocol name is case-sensitive (RFC 9112 §2.3). */
const HTTP_1 = Buffer.from('HTTP/1.', 'latin1');

/**
 * Parses a response head occupying `buf[0, headEnd)`, into `into` when given (its
 * fields overwritten, it is returned), else a new object. `headRequest` responses and
 * 1xx/204/304 have no body whatever their headers say; the caller handles that.
 *
 * It reads the bytes where they are, with no string made for the head: this runs once
 * per response, and the string version (with a regular expression per Content-Length)
 * cost about 0.8 µs a response, a few percent of a sidecar's CPU at max rate. Every
 * line must end in CRLF; a bare CR or LF is refused.
 *
 * As strict as the request side, after RFC 9112 §6: a response is refused (the caller
 * answers 502) when its framing could be read two ways — both Content-Length and
 * Transfer-Encoding, either of them twice, chunked not the last coding,
 * Transfer-Encoding in HTTP/1.0, framing headers on a 1xx or a 204 with a length — or
 * when a line could: a header name that is not a token (whitespace before the colon),
 * folded lines, control characters in a value or the reason phrase. Nothing the next
 * parser might read differently is passed on.
 */
export function parseResponseHead(buf: Buffer, headEnd: number, into?: MutableResponseHead): ResponseHead | ParseFailure {
  const limit = headEnd - 2; // the blank line's CRLF
  // Status line: `HTTP/1.x NNN[ reason]`.
  if (limit < 12 || HTTP_1.compare(buf, 0, 7) !== 0 || buf[8] !== 32) return bad('invalid status line');
  const minor = buf[7]! - 48;
  if (minor !== 0 && minor !== 1) return bad('unsupported HTTP version');
  const d0 = buf[9]! - 48,
    d1 = buf[10]! - 48,
    d2 = buf[11]! - 48;
  // 100-599: anything else is not an HTTP status (RFC 9110 §15).
  if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || (buf[12] !== 32 && buf[12] !== 13)) return bad('invalid status code');
  const status = d0 * 100 + d1 * 10 + d2;

  let contentLength = -1;
  let chunked = false;
  let teSeen = false;
  let close = minor === 0;
  /** `close` named in any Connection line: a later `keep-alive` (HTTP/1.0) does not undo it. */
  let closeNamed = false;
  let appUnavailable = false;
  let upgrade = '';
  let pos = 12;
  // The reason phrase: HTAB, SP, visible characters and obs-text.
  for (; pos < limit; pos++) {
    const c = buf[pos]!;
    if (c === 13) break;
    if ((c < 32 && c !== 9) || c === 127) return bad(c === 10 ? 'bare LF in the head' : 'invalid character in the reason phrase');
  }
  for (;;) {
    // `pos` is at the CR ending the previous line.
    if (buf[pos + 1] !== 10) return bad('bare CR in the head');
    pos += 2;
    if (pos >= limit) break; // the blank line
    let colon = pos;
    while (TCHAR[buf[colon]!] === 1) colon++;
    if (colon === pos || buf[colon] !== 58) {
      const first = buf[pos];
      return bad(first === 32 || first === 9 ? 'obsolete line folding' : 'invalid header line: the name is not a token');
    }
    let eol = colon + 1;
    for (; eol < limit; eol++) {
      const c = buf[eol]!;
      if (c < 32 || c === 127) {
        if (c === 9) continue;
        if (c === 13) break;
        return bad(c === 10 ? 'bare LF in the head' : 'invalid character in a header value');
      }
    }
    const len = colon - pos;
    const from = skipOws(buf, colon + 1, eol);
    const to = trimOwsEnd(buf, from, eol);
    if (len === 14 && bytesAre(buf, pos, 'content-length')) {
      if (contentLength !== -1) return bad('duplicate Content-Length');
      if (to === from || to - from > 15) return bad('invalid Content-Length');
      let n = 0;
      for (let i = from; i < to; i++) {
        const d = buf[i]! - 48;
        if (d < 0 || d > 9) return bad('invalid Content-Length');
        n = n * 10 + d;
      }
      contentLength = n;
    } else if (len === 17 && bytesAre(buf, pos, 'transfer-encoding')) {
      if (teSeen) return bad('duplicate Transfer-Encoding');
      teSeen = true;
      const codings = to - from === 7 && bytesAre(buf, from, 'chunked') ? 1 : transferCodings(buf.toString('latin1', from, to));
      if (codings === -1) return bad('invalid Transfer-Encoding');
      chunked = codings === 1;
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
    } else if (status === 101 && len === 7 && bytesAre(buf, pos, 'upgrade')) {
      upgrade = buf.toString('latin1', from, to);
    }
    pos = eol;
  }
  if (closeNamed) close = true;
  if (teSeen) {
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; §6.3: with a
    // Content-Length, "ought to be handled as an error".
    if (minor === 0) return bad('Transfer-Encoding in an HTTP/1.0 response');
    if (contentLength !== -1) return bad('both Content-Length and Transfer-Encoding');
    if (!chunked) close = true; // read until close (§6.3)
  }
  // A 1xx or a 204 has no content; a length on one is a server that frames it anyway (RFC 9110 §8.6).
  if (status < 200 && (teSeen || contentLength !== -1)) return bad(`Content-Length or Transfer-Encoding in a ${status} response`);
  if (status === 204 && (teSeen || contentLength > 0)) return bad('a 204 response with a body length');
  if (into === undefined) return { status, minor, contentLength, chunked, close, appUnavailable, upgrade, headBytes: headEnd };
  into.status = status;
  into.minor = minor;
  into.contentLength = contentLength;
  into.chunked = chunked;
  into.close = close;
  into.appUnavailable = appUnavailable;
  into.upgrade = upgrade;
  into.headBytes = headEnd;
  return into;
}

/**
 * A response head a connection parses each of its responses into (parseResponseHead's
 * `into`), read before the next is parsed: a head object per response was a tenth of a
 * sidecar's garbage per request.
 */
export type MutableResponseHead = { -readonly [K in keyof ResponseHead]: ResponseHead[K] };

/** A {@link MutableResponseHead} to parse into. */
export function responseHeadSlot(): MutableResponseHead {
  return { status: 0, minor: 1, contentLength: -1, chunked: false, close: false, appUnavailable: false, upgrade: '', headBytes: 0 };
}

/**
 * Reads a response's Transfer-Encoding list: 1 when chunked is the last coding, 0 when
 * chunked is absent (the body runs until close), -1 when the list is invalid or chunked
 * is not last or not alone (RFC 9112 §6.1, §7).
 */
function transferCodings(value: string): number {
  let chunkedAt = -1;
  let n = 0;
  for (const part of value.split(',')) {
    const semi = part.indexOf(';'); // transfer-parameters are allowed and ignored
    const name = trimOws(part, 0, semi === -1 ? part.length : semi);
    if (name === '') {
      if (semi !== -1) return -1;
      continue; // empty list elements are allowed (RFC 9110 §5.6.1)
    }
    if (!isToken(name, 0, name.length)) return -1;
    if (name.toLowerCase() === 'chunked') {
      if (chunkedAt !== -1) return -1;
      chunkedAt = n;
    }
    n++;
  }
  if (n === 0) return -1;
  if (chunkedAt === -1) return 0;
  return chunkedAt === n - 1 ? 1 : -1;
}
