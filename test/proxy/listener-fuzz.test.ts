// Fuzzing live listeners: raw HTTP/2 frame sequences and raw HTTP/1.1 byte sequences
// (mutated valid requests, pipelined), sent in one packet or in pieces, against a real
// sidecar pair running in a child process (test/helpers/fuzz-listener-child.ts), on
// each of its HTTP listeners; and raw responses from its app. Properties: the proxy
// process never exits and always answers a ping, every connection is answered or
// closed within a bound after the client's FIN, and afterwards ordinary HTTP/1.1 and
// HTTP/2 requests through every listener still succeed. See test/helpers/fuzz.ts for
// replaying a failure.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { liveRuns, SEED, Tally } from '../helpers/fuzz.js';
import { F, h2Bytes, h2Input, hasGoawayError, hpackBlock, SETTINGS, T, type FrameSpec, type H2Input } from '../helpers/h2-fuzz.js';
import {
  byteOps,
  chunkedBytes,
  chunkedSpec,
  cuts,
  headBytes,
  mutateBytes,
  piecesOf,
  requestHeadSpec,
  responseHeadSpec,
  validRequestSpec,
  validResponseSpec,
  type HeadSpec,
} from '../helpers/http1-fuzz.js';
import { h1Get, h2Get, LISTENERS, LiveProxy, play, type ListenerName } from '../helpers/live-listener.js';

const proxy = new LiveProxy();

before(async () => {
  await proxy.ensure();
});

after(async () => {
  await proxy.stop();
});

/** One packet most of the time, else cut at random points. */
const split = fc.oneof({ weight: 2, arbitrary: fc.constant<number[]>([]) }, { weight: 1, arbitrary: cuts });
const ending = fc.constantFrom<'fin' | 'reset'>('fin', 'fin', 'reset');
const listener = fc.constantFrom(...LISTENERS);

async function playOn(
  name: ListenerName,
  bytes: Buffer,
  at: readonly number[],
  end: 'fin' | 'reset',
  tally: Tally,
  declaredDead?: (received: Buffer) => boolean,
): Promise<void> {
  await proxy.ensure();
  const t0 = Date.now();
  const played = await play(proxy.ports[name], piecesOf(bytes, at), end, declaredDead);
  // What came back: the status of each HTTP/1.1 response in it, or that it was HTTP/2 frames.
  const statuses = played.received
    .toString('latin1')
    .match(/HTTP\/1\.[01] \d{3}/g)
    ?.map((x) => x.slice(9))
    .join('+');
  tally.add(`${statuses ?? (played.answered ? 'bytes' : 'silent')}/${played.ended}`);
  if (process.env.FUZZ_TRACE) {
    const text = (b: Buffer, n: number): string => JSON.stringify(b.toString('latin1').slice(0, n));
    process.stderr.write(`${name} ${end} ${Date.now() - t0}ms ${played.ended} ${text(bytes, 300)} -> ${text(played.received, 200)}\n`);
  }
  await proxy.alive();
}

/** Ordinary requests through every listener, in both protocols, after a run. */
async function stillServes(): Promise<void> {
  await proxy.alive();
  for (const name of LISTENERS) {
    const port = proxy.ports[name];
    const h1 = await h1Get(port, `/after-h1-${name}`);
    assert.deepEqual(h1, { status: 200, body: `ok GET /after-h1-${name}` }, `HTTP/1.1 through ${name}`);
    const h2 = await h2Get(port, `/after-h2-${name}`);
    assert.deepEqual(h2, { status: 200, body: `ok GET /after-h2-${name}` }, `HTTP/2 through ${name}`);
  }
}

test('the pair serves ordinary HTTP/1.1 and HTTP/2 on every listener before the fuzzing', stillServes);

// Inputs that once ended the proxy, replayed on every listener on every run (a seed corpus).
const HEADERS_GET = hpackBlock([
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'echo'],
]);
const CRASHERS: Record<string, H2Input> = {
  // Issue 10 defect 1: a connection error in the packet that opened a stream (here, HEADERS on the same stream again).
  'HEADERS twice on one stream': { preface: 'whole', frames: [SETTINGS, headers(1, HEADERS_GET), headers(1, HEADERS_GET)] },
  'HEADERS then GOAWAY': {
    preface: 'whole',
    frames: [SETTINGS, headers(1, HEADERS_GET), { kind: 'GOAWAY', type: T.GOAWAY, flags: 0, stream: 0, payload: [0, 0, 0, 0, 0, 0, 0, 1], lengthDelta: 0 }],
  },
  // An HTTP/2 CONNECT: the forwarder resent what node's client refused until the stack overflowed.
  CONNECT: {
    preface: 'whole',
    frames: [
      SETTINGS,
      headers(
        1,
        hpackBlock([
          [':method', 'CONNECT'],
          [':authority', 'echo:80'],
        ]),
      ),
    ],
  },
};

function headers(stream: number, block: number[]): FrameSpec {
  return { kind: 'HEADERS', type: T.HEADERS, flags: F.END_HEADERS | F.END_STREAM, stream, payload: block, lengthDelta: 0 };
}

test('HTTP/2 inputs that once ended the proxy do not, on any listener', async () => {
  const tally = new Tally();
  for (const [what, input] of Object.entries(CRASHERS)) {
    for (const name of LISTENERS) {
      await assert.doesNotReject(playOn(name, h2Bytes(input), [], 'fin', tally, hasGoawayError), `${what} on ${name}`);
    }
  }
});

test('raw HTTP/2 frame sequences never end the proxy or hang a connection', async (t) => {
  const tally = new Tally();
  const params = liveRuns<[H2Input, ListenerName, number[], 'fin' | 'reset']>(120);
  await fc.assert(
    fc.asyncProperty(h2Input, listener, split, ending, async (input, name, at, end) => {
      await playOn(name, h2Bytes(input), at, end, tally, hasGoawayError);
    }),
    params,
  );
  t.diagnostic(`h2: ${tally.total} inputs (at most ${params.numRuns}), seed ${SEED}, proxy starts ${proxy.starts}: ${tally}`);
  await stillServes();
});

/** One to three requests, each with a body its (unmutated) framing headers promise. */
const someRequest = fc.oneof({ weight: 3, arbitrary: validRequestSpec }, { weight: 1, arbitrary: requestHeadSpec });
const pipelined = fc
  .array(fc.tuple(someRequest, chunkedSpec, fc.integer({ min: 0, max: 16 })), { minLength: 1, maxLength: 3 })
  .map((reqs) => Buffer.concat(reqs.flatMap(([spec, chunks, n]) => [headBytes(spec), bodyFor(spec, chunks, n)])));

function bodyFor(spec: HeadSpec, chunks: Parameters<typeof chunkedBytes>[0], n: number): Buffer {
  const value = (name: string): string | undefined => spec.headers.find(([h]) => h.toLowerCase() === name)?.[1];
  if (value('transfer-encoding')?.toLowerCase() === 'chunked') return chunkedBytes(chunks);
  const cl = Number(value('content-length'));
  return Buffer.alloc(Number.isInteger(cl) && cl >= 0 && cl < 4096 ? cl : n, 0x62);
}

test('raw HTTP/1.1 byte sequences (mutated, pipelined) never end the proxy or hang a connection', async (t) => {
  const tally = new Tally();
  const bytes = fc.oneof({ weight: 3, arbitrary: pipelined }, { weight: 1, arbitrary: fc.tuple(pipelined, byteOps).map(([b, ops]) => mutateBytes(b, ops)) });
  const params = liveRuns<[Buffer, ListenerName, number[], 'fin' | 'reset']>(120);
  await fc.assert(
    fc.asyncProperty(bytes, listener, split, ending, async (b, name, at, end) => {
      await playOn(name, b, at, end, tally);
    }),
    params,
  );
  t.diagnostic(`h1: ${tally.total} inputs (at most ${params.numRuns}), seed ${SEED}, proxy starts ${proxy.starts}: ${tally}`);
  await stillServes();
});

test('raw HTTP/1.1 responses from the app (mutated, with bodies, pipelined) never end the proxy or hang its client', async (t) => {
  const tally = new Tally();
  const someResponse = fc.oneof({ weight: 3, arbitrary: validResponseSpec }, { weight: 2, arbitrary: responseHeadSpec });
  const response = fc
    .tuple(someResponse, chunkedSpec, fc.integer({ min: 0, max: 40 }), fc.option(byteOps, { nil: undefined }), fc.boolean())
    .map(([spec, chunks, n, ops, twice]) => {
      const one = Buffer.concat([headBytes(spec), bodyFor(spec, chunks, n)]);
      const all = twice ? Buffer.concat([one, one]) : one;
      return ops === undefined ? all : mutateBytes(all, ops);
    });
  const params = liveRuns<[Buffer, ListenerName, boolean]>(80);
  await fc.assert(
    fc.asyncProperty(response, fc.constantFrom<ListenerName>('outbound', 'httpProxy', 'inbound'), fc.boolean(), async (raw, name, keepAlive) => {
      const req = `GET /raw/${raw.toString('base64url')} HTTP/1.1\r\nHost: echo\r\n${keepAlive ? '' : 'Connection: close\r\n'}\r\n`;
      await playOn(name, Buffer.from(req, 'latin1'), [], 'fin', tally);
    }),
    params,
  );
  t.diagnostic(`responses: ${tally.total} inputs (at most ${params.numRuns}), seed ${SEED}, proxy starts ${proxy.starts}: ${tally}`);
  await stillServes();
});
