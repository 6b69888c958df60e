// Property-based fuzzing of the HTTP/1.1 head parsers (http1-parser.ts) against a
// reference written independently from RFC 9112, on random bytes and on mutated valid
// heads: the parsers never throw, accept exactly what the reference accepts (with the
// same method, target, framing), and an accepted request head survives
// serialize → parse with its meaning intact. See test/helpers/fuzz.ts for replaying a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  findHeadEnd,
  isFailure,
  parseRequestHead,
  parseResponseHead,
  sameAuthority,
  serializeRequestHead,
  type RequestHead,
} from '../../src/http1/http1-parser.js';
import { parserRuns, SEED, Tally } from '../helpers/fuzz.js';
import { cuts, headBytes, piecesOf, randomHead, requestHeadSpec, responseHeadSpec } from '../helpers/http1-fuzz.js';

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** uri-host [ ":" port ] (RFC 9110 §7.2), or empty. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::\d*)?$/;

type Fields = Map<string, string[]>;

/** Splits the lines of a head (without its blank line) into the start line and fields, or says why they are malformed. */
function refLines(head: string): { start: string; fields: Fields } | string {
  const lines = head.split('\r\n');
  if (lines.some((l) => l.includes('\r') || l.includes('\n'))) return 'bare CR or LF';
  const fields: Fields = new Map();
  for (const line of lines.slice(1)) {
    const m = /^([^:]*):(.*)$/s.exec(line);
    if (m === null || !TOKEN.test(m[1]!)) return 'field name is not a token (folded line, whitespace before colon, no colon)';
    if (!FIELD_VALUE.test(m[2]!)) return 'control character in a field value';
    const name = m[1]!.toLowerCase();
    fields.set(name, [...(fields.get(name) ?? []), m[2]!.replace(/^[ \t]+|[ \t]+$/g, '')]);
  }
  return { start: lines[0]!, fields };
}

interface RefRequest {
  method: string;
  target: string;
  minor: number;
  contentLength: number;
  chunked: boolean;
  host: string;
  absolute: boolean;
}

/** What RFC 9112 makes of a request head (bytes before the blank line), strictly: anything two parsers could read differently is refused. */
function refRequest(head: string): RefRequest | string {
  while (head.startsWith('\r\n')) head = head.slice(2); // RFC 9112 §2.2: empty lines before the request line are ignored
  const parsed = refLines(head);
  if (typeof parsed === 'string') return parsed;
  const { start, fields } = parsed;
  const rl = /^([^ ]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/.exec(start);
  if (rl === null || !TOKEN.test(rl[1]!)) return 'request line';
  const [, method, rawTarget] = rl as unknown as [string, string, string];
  const minor = Number(rl[3]);
  // Stricter than RFC 9112, by policy: the mesh opens no tunnel to an address a client names.
  if (method === 'CONNECT') return 'CONNECT';
  const cl = fields.get('content-length') ?? [];
  const te = fields.get('transfer-encoding') ?? [];
  const hosts = fields.get('host') ?? [];
  if (cl.length > 1) return 'more than one Content-Length';
  if (cl.length === 1 && !/^\d{1,15}$/.test(cl[0]!)) return 'invalid Content-Length';
  if (te.length > 1 || (te.length === 1 && te[0]!.toLowerCase() !== 'chunked')) return 'Transfer-Encoding other than chunked';
  if (cl.length > 0 && te.length > 0) return 'both Content-Length and Transfer-Encoding';
  if (te.length > 0 && minor === 0) return 'Transfer-Encoding in HTTP/1.0';
  if (hosts.length > 1) return 'more than one Host';
  if (hosts.length === 0 && minor === 1) return 'no Host';
  if (hosts.length === 1 && !HOST.test(hosts[0]!)) return 'invalid Host';
  let target = rawTarget;
  let host = hosts[0] ?? '';
  let absolute = false;
  if (!rawTarget.startsWith('/')) {
    const m = /^https?:\/\/([^/?#]*)([^#]*)$/i.exec(rawTarget);
    if (m !== null) {
      absolute = true;
      // RFC 9112 §3.2.2: the target's authority replaces the Host header; RFC 9110 §4.2.1: it may not be empty.
      if (m[1] === '' || !HOST.test(m[1]!)) return 'absolute-form target with an empty or invalid host';
      // Stricter than RFC 9112 §3.2.2 (where the target's authority wins): a Host that names
      // another authority is refused, so no two hops can route on different hosts.
      if (hosts.length === 1 && !sameAuthority(hosts[0]!, m[1]!, /^https/i.test(rawTarget) ? ':443' : ':80')) return 'absolute-form target contradicts Host';
      host = m[1]!;
      target = m[2] === '' ? '/' : m[2]!.startsWith('?') ? `/${m[2]}` : m[2]!;
    } else if (rawTarget !== '*' || method !== 'OPTIONS') {
      return 'request target';
    }
  }
  return { method, target, minor, contentLength: cl.length ? Number(cl[0]) : -1, chunked: te.length > 0, host, absolute };
}

const CL_AND_TE = 'both Content-Length and Transfer-Encoding';

interface RefResponse {
  status: number;
  minor: number;
  contentLength: number;
  chunked: boolean;
  close: boolean;
}

/** What RFC 9112 makes of a response head, as a proxy reading it must (bytes before the blank line). */
function refResponse(head: string): RefResponse | string {
  const parsed = refLines(head);
  if (typeof parsed === 'string') return parsed;
  const { start, fields } = parsed;
  // RFC 9112 §2.3: the HTTP name is case-sensitive.
  const sl = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/.exec(start);
  if (sl === null) return 'status line';
  const minor = Number(sl[1]);
  const cl = fields.get('content-length') ?? [];
  const te = fields.get('transfer-encoding') ?? [];
  if (cl.some((v) => !/^\d{1,15}$/.test(v))) return 'invalid Content-Length';
  // Stricter than RFC 9112 §6.3 (which lets a recipient take equal repeats as one): any repeat, as the request side.
  if (cl.length > 1) return 'more than one Content-Length';
  if (cl.length > 0 && te.length > 0) return CL_AND_TE;
  // Stricter than RFC 9112 (which reads several lines as one list), as the request side is:
  // one Transfer-Encoding line, so no two readers can disagree on the list.
  if (te.length > 1) return 'more than one Transfer-Encoding line';
  // RFC 9110 §8.6, RFC 9112 §6.1: a server MUST NOT send either on a 1xx or 204; a proxy refuses, as it can't tell what follows.
  const status = Number(sl[2]);
  if ((status < 200 || status === 204) && (cl.length > 0 || te.length > 0)) return 'length headers on a 1xx or 204 response';
  // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing; a proxy refuses it.
  if (te.length > 0 && minor === 0) return 'Transfer-Encoding in HTTP/1.0';
  const codings = te
    .join(',')
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
  // RFC 9112 §6.1: chunked is applied once, last; the parser refuses any other use of it, and an empty or non-token list.
  if (te.length > 0) {
    const names = codings.map((c) => c.split(';')[0]!.trim());
    if (names.length === 0 || names.some((n) => !TOKEN.test(n))) return 'invalid Transfer-Encoding';
    const at = names.indexOf('chunked');
    if (at !== -1 && (at !== names.length - 1 || names.lastIndexOf('chunked') !== at)) return 'chunked not once and last';
  }
  const chunked = te.length > 0 && codings[codings.length - 1] === 'chunked';
  const tokens = (fields.get('connection') ?? [])
    .join(',')
    .split(',')
    .map((t) => t.trim().toLowerCase());
  const close = tokens.includes('close') || (minor === 0 && !tokens.includes('keep-alive')) || (te.length > 0 && !chunked);
  return { status: Number(sl[2]), minor, contentLength: te.length > 0 || cl.length === 0 ? -1 : Number(cl[0]), chunked, close };
}

const show = (b: Buffer): string => JSON.stringify(b.toString('latin1'));

/** The head's end and its text (without the blank line), or undefined when there is no complete head. */
function headOf(buf: Buffer): { end: number; text: string } | undefined {
  const end = findHeadEnd(buf, 0, buf.length);
  return end === -1 ? undefined : { end, text: buf.toString('latin1', 0, end - 4) };
}

/**
 * `absoluteForm`: also check absolute-form targets (their host, and the Host the
 * serialized head carries); off in the suites that pass today (see the todo test).
 */
function checkRequest(buf: Buffer, tally: Tally, absoluteForm = false): void {
  const h = headOf(buf);
  if (h === undefined) return void tally.add('no head');
  let r: ReturnType<typeof parseRequestHead>;
  try {
    r = parseRequestHead(buf, h.end);
  } catch (err) {
    assert.fail(`parseRequestHead threw ${String(err)} on ${show(buf)}`);
  }
  const ref = refRequest(h.text);
  if (!absoluteForm && (typeof ref === 'string' ? /absolute-form/.test(ref) : ref.absolute)) return void tally.add('absolute-form');
  if (isFailure(r)) {
    tally.add('refused');
    assert.equal(typeof ref, 'string', `refused (${r.reason}) a head RFC 9112 accepts: ${show(buf)}`);
    return;
  }
  tally.add('accepted');
  assert.notEqual(typeof ref, 'string', `accepted a head RFC 9112 refuses (${String(ref)}): ${show(buf)}`);
  const want = ref as RefRequest;
  const got = { method: r.method, target: r.target, minor: r.minor, contentLength: r.contentLength, chunked: r.chunked, host: r.host, absolute: want.absolute };
  assert.deepEqual(got, want, `parsed differently from RFC 9112: ${show(buf)}`);
  roundTrip(r, buf);
}

/** What the proxy sends upstream for a rewritten head must parse to the same request and framing. */
function roundTrip(r: RequestHead, buf: Buffer): void {
  const out = Buffer.from(serializeRequestHead(r, ''), 'latin1');
  const end = findHeadEnd(out, 0, out.length);
  assert.equal(end, out.length, `serialized head has one blank line, at its end: ${show(out)} from ${show(buf)}`);
  const again = parseRequestHead(out, end);
  if (isFailure(again)) assert.fail(`serialized head refused (${again.reason}): ${show(out)} from ${show(buf)}`);
  // Hop-by-hop headers, and those any Connection line names, stay behind (RFC 9110 §7.6.1); framing and Host never do.
  const named = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authorization']);
  for (const l of r.lines) if (/^connection:/i.test(l)) for (const t of l.slice(11).split(',')) named.add(t.trim().toLowerCase());
  for (const name of ['content-length', 'transfer-encoding', 'host']) named.delete(name);
  for (const l of again.lines) assert.ok(!named.has(l.slice(0, l.indexOf(':')).toLowerCase()), `forwarded hop-by-hop "${l}": ${show(out)} from ${show(buf)}`);
  const pick = (x: RequestHead): object => ({ method: x.method, target: x.target, minor: x.minor, contentLength: x.contentLength, chunked: x.chunked });
  assert.deepEqual(pick(again), pick(r), `serialize → parse changed the request: ${show(out)} from ${show(buf)}`);
  // The same authority (an explicit default port may go): the next hop routes on the host this one did.
  assert.ok(sameAuthority(again.host, r.host, ':80'), `serialize → parse changed the host (${r.host} → ${again.host}): ${show(out)} from ${show(buf)}`);
}

/** `clAndTe`: also check heads with both Content-Length and Transfer-Encoding (issue 10 defect 9; see the todo test). */
function checkResponse(buf: Buffer, tally: Tally, clAndTe = false): void {
  const h = headOf(buf);
  if (h === undefined) return void tally.add('no head');
  let r: ReturnType<typeof parseResponseHead>;
  try {
    r = parseResponseHead(buf, h.end);
  } catch (err) {
    assert.fail(`parseResponseHead threw ${String(err)} on ${show(buf)}`);
  }
  const ref = refResponse(h.text);
  if (!clAndTe && ref === CL_AND_TE) return void tally.add('CL and TE');
  if (isFailure(r)) {
    tally.add('refused');
    assert.equal(typeof ref, 'string', `refused (${r.reason}) a response head RFC 9112 accepts: ${show(buf)}`);
    return;
  }
  tally.add('accepted');
  assert.notEqual(typeof ref, 'string', `accepted a response head RFC 9112 refuses (${String(ref)}): ${show(buf)}`);
  const got = { status: r.status, minor: r.minor, contentLength: r.contentLength, chunked: r.chunked, close: r.close };
  assert.deepEqual(got, ref, `parsed differently from RFC 9112: ${show(buf)}`);
}

function run(name: string, prop: fc.IProperty<[Buffer]>, params: fc.Parameters<[Buffer]>, tally: Tally, t: { diagnostic(s: string): void }): void {
  fc.assert(prop, params);
  t.diagnostic(`${name}: ${params.numRuns} inputs, seed ${SEED}: ${tally}`);
}

test('request heads: random bytes never throw and are refused unless RFC 9112 accepts them', (t) => {
  const tally = new Tally();
  run(
    'random',
    fc.property(randomHead, (b) => checkRequest(b, tally)),
    parserRuns(3000),
    tally,
    t,
  );
});

test('request heads: mutated valid heads are parsed as RFC 9112 says and round-trip through serialize', (t) => {
  const tally = new Tally();
  run(
    'mutated',
    fc.property(requestHeadSpec.map(headBytes), (b) => checkRequest(b, tally)),
    parserRuns(3000),
    tally,
    t,
  );
  assert.ok(tally.get('accepted') > 0 && tally.get('refused') > 0, `the generator reaches both outcomes: ${tally}`);
});

test('request heads: each smuggling feature added to a valid head is refused', () => {
  const base = 'POST /x HTTP/1.1\r\nHost: echo\r\n';
  const bad = [
    'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n',
    'Content-Length: 5\r\nContent-Length: 6\r\n',
    'X-A: 1\r\n folded\r\n',
    'X-A: 1\rX-B: 2\r\n',
    'X-A: 1\nContent-Length: 5\r\n',
    'X-A: 1\x002\r\n',
    'Content-Length : 5\r\n',
    'Content-Length\t: 5\r\n',
  ];
  fc.assert(
    fc.property(fc.constantFrom(...bad), fc.constantFrom('', 'Accept: */*\r\n'), (feature, other) => {
      const buf = Buffer.from(`${base}${other}${feature}\r\n`, 'latin1');
      const r = parseRequestHead(buf, findHeadEnd(buf, 0, buf.length));
      assert.ok(isFailure(r), `accepted ${show(buf)}`);
    }),
    parserRuns(100, 1000),
  );
});

test('response heads: random bytes never throw and are refused unless RFC 9112 accepts them', (t) => {
  const tally = new Tally();
  run(
    'random',
    fc.property(
      randomHead.map((b) => Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\n'), b])),
      (b) => checkResponse(b, tally),
    ),
    parserRuns(3000),
    tally,
    t,
  );
});

test('response heads: mutated valid heads are parsed as RFC 9112 says', (t) => {
  const tally = new Tally();
  run(
    'mutated',
    fc.property(responseHeadSpec.map(headBytes), (b) => checkResponse(b, tally)),
    parserRuns(3000),
    tally,
    t,
  );
  assert.ok(tally.get('accepted') > 0 && tally.get('refused') > 0, `the generator reaches both outcomes: ${tally}`);
});

test('findHeadEnd finds the same end whether the head arrives whole or in pieces', () => {
  fc.assert(
    fc.property(fc.oneof(requestHeadSpec.map(headBytes), randomHead), cuts, (whole, at) => {
      const expected = whole.indexOf('\r\n\r\n', 0, 'latin1');
      assert.equal(findHeadEnd(whole, 0, whole.length), expected === -1 ? -1 : expected + 4);
      // As the connection does: the buffer grows, and each search starts 3 bytes before its old end.
      let buf = Buffer.alloc(0);
      let from = 0;
      let found = -1;
      for (const piece of piecesOf(whole, at)) {
        buf = Buffer.concat([buf, piece]);
        found = findHeadEnd(buf, from, buf.length);
        if (found !== -1) break;
        from = buf.length - 3;
      }
      assert.equal(found, expected === -1 ? -1 : expected + 4, `split ${JSON.stringify(at)} of ${show(whole)}`);
    }),
    parserRuns(2000),
  );
});

// Found by this fuzzer (issue 10): an absolute-form request kept the client's Host line
// when serialized, so the next hop read another host than the one routed on
// ("absolute-form-other-host"), or none; and a response with both Content-Length and
// Transfer-Encoding was accepted (defect 9).
test('request heads: absolute-form targets name their host, and it reaches the next hop', () => {
  const tally = new Tally();
  fc.assert(
    fc.property(requestHeadSpec.map(headBytes), (b) => checkRequest(b, tally, true)),
    parserRuns(3000),
  );
});

test('response heads: both Content-Length and Transfer-Encoding are refused', () => {
  const tally = new Tally();
  fc.assert(
    fc.property(responseHeadSpec.map(headBytes), (b) => checkResponse(b, tally, true)),
    parserRuns(3000),
  );
});
