// Generators of HTTP/1.1 messages for fuzzing: structured, near-valid heads (a valid
// head with line-level mutations: duplicated headers, case changes, whitespace before
// a colon, folded lines, odd line ends, control bytes) and byte-level mutations
// (insert, delete, replace) on top. Near-valid inputs reach far deeper into a parser
// than random bytes, which mostly fail on the first byte.
import fc from 'fast-check';

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** Bytes that matter to an HTTP/1.1 parser, for insertions and replacements. */
const INTERESTING = [13, 10, 0, 32, 9, 58, 44, 59, 0x7f, 0xff, 0x80, 34, 92, 47, 63, 35, 48, 97, 65, 0x0b, 0x0c];

const token = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 10 });
const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 16 });
/** Any latin1 byte as a one-character string, weighted toward the interesting ones. */
const anyByte = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...INTERESTING) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) });

const NAMES = [
  'Host',
  'Content-Length',
  'Transfer-Encoding',
  'Connection',
  'Upgrade',
  'Keep-Alive',
  'TE',
  'Trailer',
  'Proxy-Connection',
  'Proxy-Authorization',
  'Accept',
  'X-Custom',
  'trellis-source',
  'Expect',
  'trellis-error',
  'Content-Type',
];

const VALUES: Record<string, string[]> = {
  host: ['echo', 'echo:80', 'echo-detect', 'other', '', '127.0.0.1:1', '[::1]:80', 'a b', 'a/b', 'a@b', 'echo:x'],
  'content-length': ['0', '5', '12', '00012', '-1', '1,1', '5, 5', ' 7 ', '99999999999999999999', '0x10', '1e3', '', '+5', '4294967296'],
  'transfer-encoding': [
    'chunked',
    'Chunked',
    'gzip, chunked',
    'chunked, gzip',
    'identity',
    'chunked ',
    ' chunked',
    'chunked;q=1',
    'xchunked',
    '',
    'gzip',
    'chunked, chunked',
  ],
  connection: [
    'close',
    'keep-alive',
    'Upgrade',
    'upgrade, close',
    'content-length',
    'transfer-encoding',
    'host',
    'x-custom',
    'keep-alive, te',
    'Keep-Alive',
    '',
  ],
  upgrade: ['websocket', 'h2c', 'HTTP/2.0', ''],
  'trellis-error': ['app-unavailable', 'x'],
};

/** A header line as name and value, the value picked to suit the name most of the time. */
const header: fc.Arbitrary<[string, string]> = fc.oneof(fc.constantFrom(...NAMES), token).chain((name) => {
  const pool = Object.hasOwn(VALUES, name.toLowerCase()) ? VALUES[name.toLowerCase()] : undefined;
  const value = pool === undefined ? printable : fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...pool) }, { weight: 1, arbitrary: printable });
  return value.map((v): [string, string] => [name, v]);
});

/** A line-level mutation of a head; `i` picks a header modulo their count. */
export type LineOp =
  | { op: 'dup'; i: number }
  | { op: 'case'; i: number; upper: boolean }
  | { op: 'wsBeforeColon'; i: number; ws: string }
  | { op: 'fold'; i: number; ws: string }
  | { op: 'leadingWs'; i: number; ws: string }
  | { op: 'eol'; i: number; eol: string }
  | { op: 'ctl'; i: number; at: number; byte: number }
  | { op: 'drop'; i: number };

const ws = fc.constantFrom(' ', '\t', '  ', '\x0b', '\x0c');
const lineOp: fc.Arbitrary<LineOp> = fc.oneof(
  fc.record({ op: fc.constant('dup' as const), i: fc.nat() }),
  fc.record({ op: fc.constant('case' as const), i: fc.nat(), upper: fc.boolean() }),
  fc.record({ op: fc.constant('wsBeforeColon' as const), i: fc.nat(), ws }),
  fc.record({ op: fc.constant('fold' as const), i: fc.nat(), ws }),
  fc.record({ op: fc.constant('leadingWs' as const), i: fc.nat(), ws }),
  fc.record({ op: fc.constant('eol' as const), i: fc.nat(), eol: fc.constantFrom('\n', '\r', '\r\r\n', '\n\r', '\r\n\r', ' \r\n') }),
  fc.record({ op: fc.constant('ctl' as const), i: fc.nat(), at: fc.nat(), byte: fc.constantFrom(0, 13, 10, 0x7f, 1, 0x1b, 0x0b) }),
  fc.record({ op: fc.constant('drop' as const), i: fc.nat() }),
);

/** A byte-level mutation; positions are taken modulo the length (so they shrink toward the start). */
export type ByteOp = { op: 'insert'; at: number; bytes: number[] } | { op: 'delete'; at: number; n: number } | { op: 'replace'; at: number; byte: number };

const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.array(anyByte, { minLength: 1, maxLength: 4 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), byte: anyByte }),
);

export interface HeadSpec {
  readonly startLine: string;
  readonly headers: readonly (readonly [string, string])[];
  readonly lineOps: readonly LineOp[];
  readonly byteOps: readonly ByteOp[];
}

const method = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'CONNECT', 'get') },
  { weight: 1, arbitrary: token },
);
const pathChars = fc.string({ unit: fc.constantFrom(...'abcxyz019-._~%/?=&;,+!$'.split('')), maxLength: 12 });
const target = fc.oneof(
  { weight: 6, arbitrary: pathChars.map((p) => `/${p}`) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.constantFrom('http://', 'https://', 'HTTP://', 'ftp://', '//'),
        fc.constantFrom('echo', 'other', 'echo:80', '', 'a@b'),
        fc.constantFrom('', '/', '/x', '?q=1', '/x?y#z', '#f'),
      )
      .map(([s, h, p]) => s + h + p),
  },
  { weight: 1, arbitrary: fc.constantFrom('*', 'echo:443', 'x', '/a b', '/\x7f') },
);
const version = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('HTTP/1.1', 'HTTP/1.0') },
  { weight: 1, arbitrary: fc.constantFrom('HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1.', 'HTTP/11.1', 'HTTP/1.1x') },
);

const requestLine = fc.tuple(method, target, version).map(([m, t, v]) => `${m} ${t} ${v}`);
const statusLine = fc
  .tuple(
    fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom('HTTP/1.1', 'HTTP/1.0') },
      { weight: 1, arbitrary: fc.constantFrom('HTTP/1.2', 'http/1.1', 'HTTP/2', 'HTTP/1.1 ') },
    ),
    fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom('200', '204', '304', '101', '100', '404', '503', '599') },
      { weight: 1, arbitrary: fc.constantFrom('099', '20', '2000', '20x', '-20', '') },
    ),
    fc.oneof({ weight: 4, arbitrary: fc.constantFrom(' OK', '', ' ', ' Service Unavailable') }, { weight: 1, arbitrary: printable.map((r) => ` ${r}`) }),
  )
  .map(([v, s, r]) => `${v} ${s}${r}`);

/** Heads that are valid most of the time before their mutations, for `startLine`. */
function headSpec(startLine: fc.Arbitrary<string>, usual: readonly (readonly [string, string])[]): fc.Arbitrary<HeadSpec> {
  return fc.record({
    startLine,
    headers: fc.tuple(fc.subarray([...usual]), fc.array(header, { maxLength: 5 })).map(([u, h]) => [...u, ...h]),
    lineOps: fc.array(lineOp, { maxLength: 3 }),
    byteOps: fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 2, arbitrary: fc.array(byteOp, { minLength: 1, maxLength: 3 }) }),
  });
}

export const requestHeadSpec = headSpec(requestLine, [
  ['Host', 'echo'],
  ['Content-Length', '5'],
  ['Transfer-Encoding', 'chunked'],
  ['Connection', 'keep-alive'],
]);
export const responseHeadSpec = headSpec(statusLine, [
  ['Content-Length', '5'],
  ['Transfer-Encoding', 'chunked'],
  ['Connection', 'keep-alive'],
  ['Content-Type', 'text/plain'],
]);

/** The head's bytes up to (not including) the blank line's final CRLF: lines, each ended by its line end. */
export function renderHead(spec: HeadSpec): Buffer {
  const lines = spec.headers.map(([n, v]) => ({ name: n, value: v, pre: '', mid: '', eol: '\r\n' }));
  for (const o of spec.lineOps) {
    if (lines.length === 0) break;
    const i = o.i % lines.length;
    const l = lines[i]!;
    switch (o.op) {
      case 'dup':
        lines.splice(i, 0, { ...l });
        break;
      case 'case':
        l.name = o.upper ? l.name.toUpperCase() : l.name.toLowerCase();
        break;
      case 'wsBeforeColon':
        l.mid = o.ws;
        break;
      case 'fold': {
        const cut = Math.floor(l.value.length / 2);
        l.value = `${l.value.slice(0, cut)}\r\n${o.ws}${l.value.slice(cut)}`;
        break;
      }
      case 'leadingWs':
        l.pre = o.ws;
        break;
      case 'eol':
        l.eol = o.eol;
        break;
      case 'ctl': {
        const at = o.at % (l.value.length + 1);
        l.value = l.value.slice(0, at) + String.fromCharCode(o.byte) + l.value.slice(at);
        break;
      }
      case 'drop':
        lines.splice(i, 1);
        break;
    }
  }
  let text = `${spec.startLine}\r\n`;
  for (const l of lines) text += `${l.pre}${l.name}${l.mid}: ${l.value}${l.eol}`;
  return mutateBytes(Buffer.from(text, 'latin1'), spec.byteOps);
}

/** A full head (ending in the blank line) from a spec. */
export function headBytes(spec: HeadSpec): Buffer {
  return Buffer.concat([renderHead(spec), Buffer.from('\r\n', 'latin1')]);
}

export function mutateBytes(buf: Buffer, ops: readonly ByteOp[]): Buffer {
  let b = [...buf];
  for (const o of ops) {
    const at = o.at % (b.length + 1);
    if (o.op === 'insert') b = [...b.slice(0, at), ...o.bytes, ...b.slice(at)];
    else if (o.op === 'delete') b.splice(at, o.n);
    else if (at < b.length) b[at] = o.byte;
  }
  return Buffer.from(b);
}

export const byteOps = fc.array(byteOp, { minLength: 1, maxLength: 4 });

/** Random bytes, biased toward the bytes an HTTP/1.1 parser cares about, sometimes with a blank line at the end. */
export const randomHead = fc
  .tuple(fc.array(anyByte, { maxLength: 64 }), fc.boolean())
  .map(([b, end]) => Buffer.concat([Buffer.from(b), Buffer.from(end ? '\r\n\r\n' : '')]));

/** A chunked body: chunk sizes (hex in either case, zero-padded sometimes), extensions and trailers, valid. */
export interface ChunkedSpec {
  readonly chunks: readonly { size: number; upper: boolean; pad: number; ext: string; bws: string }[];
  readonly last: { pad: number; ext: string };
  readonly trailers: readonly string[];
}

const ext = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constantFrom(';a', ';a=b', ';a="q;\\"x"', ' ;a=1', '\t; a = 1', ';a;b=c') },
);
export const chunkedSpec: fc.Arbitrary<ChunkedSpec> = fc.record({
  chunks: fc.array(
    fc.record({
      size: fc.integer({ min: 1, max: 300 }),
      upper: fc.boolean(),
      pad: fc.integer({ min: 0, max: 3 }),
      ext,
      bws: fc.constantFrom('', '', '', ' ', '\t '),
    }),
    { maxLength: 5 },
  ),
  last: fc.record({ pad: fc.integer({ min: 0, max: 3 }), ext }),
  trailers: fc.array(fc.constantFrom('X-Sum: 1', 'grpc-status: 0', 'A:', 'B: \tc d'), { maxLength: 2 }),
});

export function chunkedBytes(spec: ChunkedSpec, fill = 0x61): Buffer {
  const parts: Buffer[] = [];
  for (const c of spec.chunks) {
    let hex = c.size.toString(16);
    hex = '0'.repeat(c.pad) + (c.upper ? hex.toUpperCase() : hex);
    parts.push(Buffer.from(`${hex}${c.bws}${c.ext}\r\n`, 'latin1'), Buffer.alloc(c.size, fill), Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`${'0'.repeat(1 + spec.last.pad)}${spec.last.ext}\r\n${spec.trailers.map((t) => `${t}\r\n`).join('')}\r\n`, 'latin1'));
  return Buffer.concat(parts);
}

/** Cut points for feeding `length` bytes in pieces: sorted, distinct, inside (0, length). */
export function piecesOf(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % buf.length)).filter((c) => c > 0))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of at) {
    out.push(buf.subarray(from, c));
    from = c;
  }
  out.push(buf.subarray(from));
  return out;
}

export const cuts = fc.array(fc.nat(), { maxLength: 8 });

/** Requests a proxy should forward: Host, maybe one framing header, maybe Connection; no mutation. */
export const validRequestSpec: fc.Arbitrary<HeadSpec> = fc.record({
  startLine: fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE'), pathChars).map(([m, p]) => `${m} /${p} HTTP/1.1`),
  headers: fc
    .tuple(
      fc.constantFrom<[string, string][]>([], [['Content-Length', '0']], [['Content-Length', '7']], [['Transfer-Encoding', 'chunked']]),
      fc.subarray<[string, string]>([
        ['Connection', 'keep-alive'],
        ['X-Custom', 'v'],
        ['Accept', '*/*'],
        ['trellis-source', 'web'],
      ]),
      fc.constantFrom('Host', 'host', 'HOST'),
    )
    .map(([framing, extra, host]) => [[host, 'echo'] as [string, string], ...framing, ...extra]),
  lineOps: fc.constant([]),
  byteOps: fc.constant([]),
});

/** Responses a proxy should forward: a status, one framing (or none: read until close), maybe Connection. */
export const validResponseSpec: fc.Arbitrary<HeadSpec> = fc.record({
  startLine: fc.constantFrom('HTTP/1.1 200 OK', 'HTTP/1.1 404 Not Found', 'HTTP/1.1 204 No Content', 'HTTP/1.0 200 OK', 'HTTP/1.1 500 Oops', 'HTTP/1.1 200'),
  headers: fc
    .tuple(
      fc.constantFrom<[string, string][]>(
        [],
        [['Content-Length', '0']],
        [['Content-Length', '7']],
        [['Transfer-Encoding', 'chunked']],
        [
          ['content-length', '7'],
          ['Content-Length', '7'],
        ],
      ),
      fc.subarray<[string, string]>([
        ['Connection', 'keep-alive'],
        ['Connection', 'close'],
        ['Content-Type', 'text/plain'],
        ['X-A', 'b'],
      ]),
    )
    .map(([framing, extra]) => [...framing, ...extra]),
  lineOps: fc.constant([]),
  byteOps: fc.constant([]),
});
