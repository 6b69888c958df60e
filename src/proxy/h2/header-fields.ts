// Header fields as they cross an HTTP/2 hop, one by one. node:http2 hands a stream's
// headers over twice: as an object, where a repeated field is merged (`a, b`; cookies
// with `; `; a repeated singleton such as user-agent loses its second value), and as the
// raw list of name/value pairs as received. A proxy passes on what it was sent, so it
// reads the raw list, and writes each value as its own field: node sends each element
// of an array value as one field, in order (RFC 9110 §5.3: the order of a name's fields
// is all that counts; fields of different names may be regrouped).
import type http2 from 'node:http2';

/**
 * The names node:http2 refuses to send more than once (its kSingleValueHeaders, less the
 * pseudo-headers; test/proxy/h2-repeated-headers.test.ts checks this list against node).
 * A repeated one is combined into one field instead, as RFC 9110 §5.3 allows.
 */
export const SINGLE_VALUE: ReadonlySet<string> = new Set([
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'age',
  'authorization',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'dnt',
  'etag',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'tk',
  'upgrade-insecure-requests',
  'user-agent',
  'x-content-type-options',
]);

/**
 * Adds one field to headers node:http2 will send: a name seen before gets an array
 * (one field per value, in order), but a single-value name, which node refuses twice,
 * is combined into one value.
 */
export function addField(headers: http2.OutgoingHttpHeaders, name: string, value: string): void {
  const prev = headers[name];
  if (prev === undefined) headers[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else headers[name] = SINGLE_VALUE.has(name) ? `${String(prev)}, ${value}` : [String(prev), value];
}
