// Generators of raw HTTP/2 connections for fuzzing a live listener: the preface, then
// frames built by hand (RFC 9113 §4.1 and §6), valid and not: SETTINGS, HEADERS with
// a header block in HPACK literal-without-indexing form (RFC 7541 §6.2.2, easy to write
// by hand), CONTINUATION, DATA, RST_STREAM, PING, GOAWAY, WINDOW_UPDATE, PRIORITY,
// PUSH_PROMISE from a client, unknown types, bad lengths, flags and stream ids, and
// plain junk. Each frame is kept as a small record so a shrunk counterexample reads
// as the frames it is.
import fc from 'fast-check';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const T = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

export interface FrameSpec {
  /** What the frame is meant to be, for reading counterexamples. */
  readonly kind: string;
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: readonly number[];
  /** Added to the true payload length in the frame header (a lie about the length). */
  readonly lengthDelta: number;
}

export function frameBytes(f: FrameSpec): Buffer {
  const len = Math.max(0, Math.min(0xffffff, f.payload.length + f.lengthDelta));
  const h = Buffer.alloc(9);
  h.writeUIntBE(len, 0, 3);
  h[3] = f.type & 0xff;
  h[4] = f.flags & 0xff;
  h.writeUInt32BE(f.stream >>> 0, 5);
  return Buffer.concat([h, Buffer.from(f.payload)]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1), the prefix byte's high bits in `first`. */
function hpackInt(value: number, prefix: number, first: number): number[] {
  const max = (1 << prefix) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

const str = (s: string): number[] => [...hpackInt(s.length, 7, 0), ...Buffer.from(s, 'latin1')];

/** A header block of literal fields without indexing, new names (RFC 7541 §6.2.2). */
export function hpackBlock(headers: readonly (readonly [string, string])[]): number[] {
  const out: number[] = [];
  for (const [n, v] of headers) out.push(0x00, ...str(n), ...str(v));
  return out;
}

const u32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

const streamId = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(1, 3, 5) },
  { weight: 2, arbitrary: fc.constantFrom(0, 2, 4, 0x7fffffff, 0x80000001) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x7fffffff }) },
);
const interesting32 = fc.constantFrom(0, 1, 2, 100, 16383, 16384, 65535, 65536, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 0xffffffff);
const lengthDelta = fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(-9, -1, 1, 3, 100, 16384, 0xffffff) });
const bytes = (max: number): fc.Arbitrary<number[]> => fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: max });

const requestHeaders: fc.Arbitrary<[string, string][]> = fc
  .tuple(
    fc.oneof(
      { weight: 6, arbitrary: fc.constant('valid') },
      { weight: 1, arbitrary: fc.constantFrom('no-path', 'no-method', 'dup-method', 'empty-path', 'pseudo-after', 'connect', 'bad-scheme') },
    ),
    fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'OPTIONS', 'get', ''),
    fc.constantFrom('/', '/x', '/raw/', '*', 'x', '/a?b=c', '//'),
    fc.constantFrom('echo', 'echo:80', 'other', '', 'a b', 'echo-detect'),
    fc.array(
      fc.constantFrom<[string, string]>(
        ['content-type', 'application/grpc'],
        ['content-length', '5'],
        ['content-length', 'abc'],
        ['te', 'trailers'],
        ['te', 'gzip'],
        ['connection', 'close'],
        ['Upper-Case', 'x'],
        ['x-custom', 'v'],
        ['trellis-source', 'evil'],
        ['host', 'other'],
        ['cookie', 'a=b'],
        [':unknown', 'x'],
        ['upgrade', 'h2c'],
        ['x-bad', 'a\r\nb'],
        ['', 'empty-name'],
      ),
      { maxLength: 3 },
    ),
  )
  .map(([shape, method, path, authority, extra]) => {
    const h: [string, string][] = [
      [':method', method],
      [':scheme', 'http'],
      [':path', path],
      [':authority', authority],
    ];
    if (shape === 'no-path') h.splice(2, 1);
    if (shape === 'no-method') h.splice(0, 1);
    if (shape === 'dup-method') h.push([':method', 'POST']);
    if (shape === 'empty-path') h[2] = [':path', ''];
    if (shape === 'connect') h.splice(0, 4, [':method', 'CONNECT'], [':authority', 'echo:80']);
    if (shape === 'bad-scheme') h[1] = [':scheme', 'gopher'];
    h.push(...extra);
    if (shape === 'pseudo-after') h.push([':path', '/late']);
    return h;
  });

/** A header block: mostly a hand-encoded request, sometimes junk that is not HPACK at all. */
const headerBlock = fc.oneof(
  { weight: 8, arbitrary: requestHeaders.map(hpackBlock) },
  { weight: 1, arbitrary: fc.constantFrom<number[]>([0x82, 0x86, 0x84], [0x3f, 0xe1, 0x1f], [0x20], [0xff, 0xff, 0xff, 0xff, 0x0f]) },
  { weight: 1, arbitrary: bytes(16) },
);

const frame = <K extends string>(
  kind: K,
  type: number,
  flags: fc.Arbitrary<number>,
  stream: fc.Arbitrary<number>,
  payload: fc.Arbitrary<number[]>,
): fc.Arbitrary<FrameSpec> => fc.record({ kind: fc.constant(kind), type: fc.constant(type), flags, stream, payload, lengthDelta });

const padded = (flags: number, body: number[], pad: number): number[] => ((flags & F.PADDED) !== 0 ? [pad, ...body, ...new Array<number>(pad).fill(0)] : body);

export const frameSpec: fc.Arbitrary<FrameSpec> = fc.oneof(
  {
    weight: 3,
    arbitrary: frame(
      'SETTINGS',
      T.SETTINGS,
      fc.constantFrom(0, 0, 0, F.ACK),
      fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: streamId }),
      fc
        .array(fc.tuple(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 0xffff })), interesting32), { maxLength: 4 })
        .map((ps) => ps.flatMap(([id, v]) => [id >> 8, id & 0xff, ...u32(v)])),
    ),
  },
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        fc.constantFrom(
          F.END_HEADERS | F.END_STREAM,
          F.END_HEADERS | F.END_STREAM,
          F.END_HEADERS,
          F.END_STREAM,
          0,
          F.END_HEADERS | F.PADDED,
          F.END_HEADERS | F.PRIORITY | F.END_STREAM,
        ),
        streamId,
        headerBlock,
        fc.integer({ min: 0, max: 20 }),
        lengthDelta,
      )
      .map(([flags, stream, block, pad, delta]): FrameSpec => {
        let body = block;
        if ((flags & F.PRIORITY) !== 0) body = [...u32(stream), 16, ...body]; // depends on itself: a stream error
        return { kind: 'HEADERS', type: T.HEADERS, flags, stream, payload: padded(flags, body, pad), lengthDelta: delta };
      }),
  },
  { weight: 2, arbitrary: frame('CONTINUATION', T.CONTINUATION, fc.constantFrom(F.END_HEADERS, 0), streamId, headerBlock) },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom(0, F.END_STREAM, F.PADDED | F.END_STREAM), streamId, bytes(64), fc.integer({ min: 0, max: 300 }), lengthDelta).map(
      ([flags, stream, body, pad, delta]): FrameSpec => ({
        kind: 'DATA',
        type: T.DATA,
        flags,
        stream,
        payload: padded(flags, body, pad),
        lengthDelta: delta,
      }),
    ),
  },
  {
    weight: 2,
    arbitrary: frame(
      'RST_STREAM',
      T.RST_STREAM,
      fc.constant(0),
      streamId,
      fc.oneof({ weight: 5, arbitrary: fc.constantFrom(0, 1, 2, 5, 8, 0xff).map(u32) }, { weight: 1, arbitrary: bytes(6) }),
    ),
  },
  {
    weight: 2,
    arbitrary: frame(
      'PING',
      T.PING,
      fc.constantFrom(0, F.ACK),
      fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: streamId }),
      fc.oneof({ weight: 5, arbitrary: fc.constant<number[]>([1, 2, 3, 4, 5, 6, 7, 8]) }, { weight: 1, arbitrary: bytes(10) }),
    ),
  },
  {
    weight: 4,
    arbitrary: frame(
      'GOAWAY',
      T.GOAWAY,
      fc.constant(0),
      fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: streamId }),
      fc
        .tuple(fc.constantFrom(0, 1, 3, 0x7fffffff), fc.constantFrom(0, 1, 2, 0xb), bytes(4))
        .map(([last, code, debug]) => [...u32(last), ...u32(code), ...debug]),
    ),
  },
  {
    weight: 2,
    arbitrary: frame(
      'WINDOW_UPDATE',
      T.WINDOW_UPDATE,
      fc.constant(0),
      fc.oneof(fc.constant(0), streamId),
      fc.oneof({ weight: 5, arbitrary: fc.constantFrom(0, 1, 65535, 2 ** 31 - 1, 2 ** 31).map(u32) }, { weight: 1, arbitrary: bytes(6) }),
    ),
  },
  {
    weight: 1,
    arbitrary: frame(
      'PRIORITY',
      T.PRIORITY,
      fc.constant(0),
      streamId,
      fc.oneof(
        fc.tuple(fc.constantFrom(0, 1, 3, 0x80000001), fc.nat(255)).map(([dep, w]) => [...u32(dep), w]),
        bytes(6),
      ),
    ),
  },
  {
    weight: 1,
    arbitrary: frame(
      'PUSH_PROMISE',
      T.PUSH_PROMISE,
      fc.constantFrom(F.END_HEADERS, 0),
      streamId,
      fc.tuple(fc.constantFrom(2, 4), headerBlock).map(([p, b]) => [...u32(p), ...b]),
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 255 }).chain((type) => frame('unknown', type, fc.nat(255), streamId, bytes(16))) },
);

/** A raw connection: maybe the preface (sometimes damaged), frames, or junk between them. */
export interface H2Input {
  readonly preface: 'whole' | 'none' | 'truncated';
  readonly frames: readonly (FrameSpec | { kind: 'junk'; bytes: readonly number[] })[];
}

/** The client's usual first frame: an empty SETTINGS. */
export const SETTINGS: FrameSpec = { kind: 'SETTINGS', type: T.SETTINGS, flags: 0, stream: 0, payload: [], lengthDelta: 0 };

export const h2Input: fc.Arbitrary<H2Input> = fc.record({
  preface: fc.oneof({ weight: 20, arbitrary: fc.constant('whole' as const) }, { weight: 1, arbitrary: fc.constantFrom('none' as const, 'truncated' as const) }),
  frames: fc
    .tuple(
      // A client's first frame is SETTINGS (RFC 9113 §3.4); usually the empty one.
      fc.oneof({ weight: 6, arbitrary: fc.constant(SETTINGS) }, { weight: 1, arbitrary: frameSpec }),
      fc.array(fc.oneof({ weight: 20, arbitrary: frameSpec }, { weight: 1, arbitrary: bytes(12).map((b) => ({ kind: 'junk' as const, bytes: b })) }), {
        maxLength: 8,
      }),
    )
    .map(([first, rest]) => [first, ...rest]),
});

export function h2Bytes(input: H2Input): Buffer {
  const parts: Buffer[] = [];
  if (input.preface === 'whole') parts.push(PREFACE);
  else if (input.preface === 'truncated') parts.push(PREFACE.subarray(0, 10));
  for (const f of input.frames) parts.push('bytes' in f ? Buffer.from(f.bytes) : frameBytes(f));
  return Buffer.concat(parts);
}

/**
 * Whether `received` (what a server sent on a connection) holds a GOAWAY frame with an
 * error code: the server has ended the connection (RFC 9113 §5.4.1).
 */
export function hasGoawayError(received: Buffer): boolean {
  let i = 0;
  while (i + 9 <= received.length) {
    const len = received.readUIntBE(i, 3);
    if (received[i + 3] === T.GOAWAY && i + 9 + 8 <= received.length && received.readUInt32BE(i + 9 + 4) !== 0) return true;
    i += 9 + len;
  }
  return false;
}
