// What the inbound sidecar knows of its app's HTTP (src/proxy/h2/app-version.ts): the
// probe's reading of an app's first bytes, against real HTTP/1.1 and HTTP/2 servers and
// byte by byte; one probe however many requests wait; a declared protocol pins the
// answer; a forgotten answer is probed again, and a probe started before it was
// forgotten does not bring it back; a gRPC call re-checks an HTTP/1.1 answer only
// once it is 5 s old (an injected clock).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { AppHttpVersion, classifyProbeAnswer, probeAppHttp, type ProbeResult } from '../../src/proxy/h2/app-version.js';
import { closeServer } from '../helpers/proxy-pair.js';

const versionOf = (r: ProbeResult | undefined): string | undefined => (r === undefined ? undefined : 'version' in r ? r.version : `failure: ${r.failure}`);

test('the first bytes after the preface: SETTINGS is HTTP/2, anything else HTTP/1.1, too few bytes undecided', () => {
  const settings = Buffer.from('000006040000000000000300000064', 'hex');
  assert.equal(versionOf(classifyProbeAnswer(settings)), 'h2');
  assert.equal(versionOf(classifyProbeAnswer(settings.subarray(0, 8))), undefined);
  assert.equal(versionOf(classifyProbeAnswer(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))), 'h1');
  assert.equal(versionOf(classifyProbeAnswer(Buffer.from('HTT'))), undefined);
  // A SETTINGS ACK, or a frame on a stream, is not a server's preface.
  assert.equal(versionOf(classifyProbeAnswer(Buffer.from('000000040100000000', 'hex'))), 'h1');
  assert.equal(versionOf(classifyProbeAnswer(Buffer.from('000000040000000001', 'hex'))), 'h1');
  assert.equal(versionOf(classifyProbeAnswer(Buffer.from('220 smtp ready\r\n'))), 'h1');
});

test('probing real servers: node:http is HTTP/1.1, node:http2 is HTTP/2, a closed port is a failure', async () => {
  const h1 = http.createServer((_req, res) => res.end());
  const h2 = http2.createServer();
  const closed = net.createServer();
  await Promise.all([h1, h2, closed].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  const port = (s: net.Server): number => (s.address() as net.AddressInfo).port;
  const gone = port(closed);
  await new Promise<void>((r) => closed.close(() => r()));
  try {
    assert.equal(versionOf(await probeAppHttp({ host: '127.0.0.1', port: port(h1) }, 5000)), 'h1');
    assert.equal(versionOf(await probeAppHttp({ host: '127.0.0.1', port: port(h2) }, 5000)), 'h2');
    assert.match(versionOf(await probeAppHttp({ host: '127.0.0.1', port: gone }, 5000))!, /^failure: .*ECONNREFUSED/);
  } finally {
    await closeServer(h1);
    await new Promise<void>((r) => h2.close(() => r()));
  }
});

/** A probe the test answers by hand. */
function manualProbe(): { probe: () => Promise<ProbeResult>; calls: number; answer: (r: ProbeResult) => Promise<void> } {
  const pending: ((r: ProbeResult) => void)[] = [];
  const m = {
    calls: 0,
    probe: (): Promise<ProbeResult> => {
      m.calls++;
      return new Promise((resolve) => pending.push(resolve));
    },
    answer: async (r: ProbeResult): Promise<void> => {
      pending.shift()!(r);
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
  return m;
}

test('one probe for every request that waits on it, and its answer is kept', async () => {
  const m = manualProbe();
  const v = new AppHttpVersion(m.probe);
  const got: string[] = [];
  for (let i = 0; i < 5; i++) v.resolve((r) => got.push(versionOf(r)!));
  assert.equal(m.calls, 1);
  await m.answer({ version: 'h1', evidence: 'test' });
  assert.deepEqual(got, ['h1', 'h1', 'h1', 'h1', 'h1']);
  assert.equal(v.known, 'h1');
  v.resolve((r) => got.push(versionOf(r)!));
  assert.equal(m.calls, 1);
});

test('a failed probe teaches nothing: the next request probes again', async () => {
  const m = manualProbe();
  const v = new AppHttpVersion(m.probe);
  v.resolve(() => {});
  await m.answer({ failure: 'connect ECONNREFUSED' });
  assert.equal(v.known, undefined);
  v.resolve(() => {});
  assert.equal(m.calls, 2);
});

test('a declared protocol pins the answer and is never probed; undeclaring it goes back to probing', async () => {
  const m = manualProbe();
  const v = new AppHttpVersion(m.probe);
  v.declare('grpc');
  assert.deepEqual([v.declared, v.known], ['h2', 'h2']);
  v.forget();
  v.resolve(() => {});
  assert.equal(m.calls, 0);
  v.declare('http1');
  assert.equal(v.known, 'h1');
  v.declare('http');
  assert.equal(v.known, undefined);
  v.resolve(() => {});
  assert.equal(m.calls, 1);
});

test('a forgotten answer is probed again, and a probe started before the forget does not bring the old answer back', async () => {
  const m = manualProbe();
  const v = new AppHttpVersion(m.probe);
  v.resolve(() => {});
  v.forget(); // e.g. a request failed meanwhile
  await m.answer({ version: 'h1', evidence: 'stale' });
  assert.equal(v.known, undefined);
  v.resolve(() => {});
  await m.answer({ version: 'h2', evidence: 'fresh' });
  assert.equal(v.known, 'h2');
});

test('a gRPC call re-checks an HTTP/1.1 answer only once it is 5 s old', async () => {
  const m = manualProbe();
  let now = 1000;
  const v = new AppHttpVersion(m.probe, undefined, () => now);
  v.resolve(() => {});
  await m.answer({ version: 'h1', evidence: 'test' });
  assert.equal(v.staleForGrpc(), false);
  now += 4999;
  assert.equal(v.staleForGrpc(), false);
  now += 1;
  assert.equal(v.staleForGrpc(), true);
  v.declare('http1');
  assert.equal(v.staleForGrpc(), false, 'a declared answer is never re-checked');
});

test('a declared HTTP/2 that fails is checked by one probe per 5 s, and only an answer in HTTP/1.x contradicts it', async () => {
  const m = manualProbe();
  let now = 0;
  const v = new AppHttpVersion(m.probe, undefined, () => now);
  v.declare('http2');
  v.checkDeclared();
  v.checkDeclared(); // one in flight already
  assert.equal(m.calls, 1);
  await m.answer({ version: 'h1', evidence: 'it closed the connection on the HTTP/2 preface (connection closed)' });
  assert.equal(v.declaredWrongly, false, 'a close may be an app still starting');
  now += 4999;
  v.checkDeclared();
  assert.equal(m.calls, 1);
  now += 1;
  v.checkDeclared();
  await m.answer({ version: 'h1', evidence: 'it answered the HTTP/2 preface in HTTP/1.x' });
  assert.equal(v.declaredWrongly, true);
  assert.equal(v.known, 'h2', 'the declaration stays in force');
  // While it holds, it is checked again (at most once per 5 s); an app fixed to speak HTTP/2 clears it.
  now += 5000;
  assert.equal(v.declaredWrongly, true);
  assert.equal(m.calls, 3);
  await m.answer({ version: 'h2', evidence: 'it answered the HTTP/2 preface with SETTINGS' });
  assert.equal(v.declaredWrongly, false);
});
