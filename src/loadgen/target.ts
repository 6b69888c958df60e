// What a run sends and where: a loopback-only http:// URL, and one request (method,
// headers, body) that every scheduled request repeats.
import { TrellisError } from '../errors.js';

/** Where the load connects: always a loopback address. */
export interface LoopbackTarget {
  readonly url: string;
  /** Without brackets (`::1`), for net.connect. */
  readonly host: string;
  readonly port: number;
  /** Path and query, as sent in the request line. */
  readonly path: string;
  /** `host:port` as in the URL, the default Host header / :authority. */
  readonly authority: string;
}

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (host === 'localhost' || host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return m?.slice(1).every((o) => Number(o) <= 255) ?? false;
}

/**
 * Parses an `http://` URL on loopback. Anything else is a TRELLIS_E_USAGE error: load
 * is only ever sent to this machine.
 */
export function parseLoopbackUrl(url: string): LoopbackTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `"${url}" is not a URL; give an http:// URL on loopback (e.g. http://127.0.0.1:8080/) or a service name`,
    });
  }
  if (u.protocol !== 'http:') {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `only http:// URLs can be loaded (plain HTTP/1.1, or h2c with --http2), got ${u.protocol}//` });
  }
  if (!isLoopbackHost(u.hostname)) {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `refusing to send load to ${u.hostname}: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed; to load a service of the mesh, name it instead of its address`,
    });
  }
  return {
    url: u.href,
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(u.port || 80),
    path: `${u.pathname}${u.search}`,
    authority: u.host,
  };
}

/** The one request a run repeats. */
export interface RequestSpec {
  readonly method: string;
  /** Extra headers, in order; a `host` here replaces the URL's authority. */
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Buffer;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Set by the client from the body and the connection; a user's value would break framing. */
const RESERVED = new Set(['content-length', 'transfer-encoding']);

/** Checks a method and headers, so a bad flag is refused before any byte is sent. */
export function checkRequestSpec(spec: RequestSpec): void {
  if (!TOKEN.test(spec.method)) throw new TrellisError('TRELLIS_E_USAGE', { reason: `"${spec.method}" is not an HTTP method` });
  for (const [name, value] of spec.headers) {
    if (!TOKEN.test(name)) throw new TrellisError('TRELLIS_E_USAGE', { reason: `"${name}" is not a valid header name` });
    if (/[\r\n\0]/.test(value)) throw new TrellisError('TRELLIS_E_USAGE', { reason: `the value of header ${name} contains a line break or NUL` });
    if (RESERVED.has(name.toLowerCase())) {
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `${name} is set by the load generator from the body; drop the header (use --body or --body-size)` });
    }
  }
}

/** Methods whose requests carry a Content-Length even when the body is empty. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** The bytes of the HTTP/1.1 request, built once for the whole run. */
export function http1RequestBytes(target: LoopbackTarget, spec: RequestSpec): Buffer {
  const hasHost = spec.headers.some(([n]) => n.toLowerCase() === 'host');
  let head = `${spec.method} ${target.path} HTTP/1.1\r\n`;
  if (!hasHost) head += `Host: ${target.authority}\r\n`;
  for (const [name, value] of spec.headers) head += `${name}: ${value}\r\n`;
  if (spec.body.length > 0 || BODY_METHODS.has(spec.method.toUpperCase())) head += `Content-Length: ${spec.body.length}\r\n`;
  head += '\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), spec.body]);
}
