// The control plane's OTLP/HTTP receiver: spans from real sidecars join a trace it keeps
// and serves (GET /v1/traces, /v1/traces/<id>) and `trellis trace` shows as a tree; the
// receiver refuses oversize, non-JSON and malformed bodies (a bad span is rejected, the
// rest kept), cuts hostile strings, and keeps a bounded number of traces and spans.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import type { Snapshot } from '../../src/api/protocol.js';
import type { TraceListView, TraceSummaryView, TraceView } from '../../src/api/traces.js';
import { renderReceiverNote, renderTraceTree } from '../../src/cli/trace.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { TraceStore } from '../../src/control/traces/trace-store.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { eventually } from '../helpers/eventually.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { trellisCli } from '../helpers/traffic.js';
import { adminAuth, MESH_YAML, routesYaml, tempDir, TEST_BOOTSTRAP_SECRET } from './helpers.js';

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', routesYaml('backend'));
  plane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    log: () => {},
    traces: { maxBodyBytes: 64 * 1024 },
  });
});

after(async () => {
  await plane?.close();
  await files?.remove();
});

function post(body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${plane.url}/v1/traces`, { method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function json<T>(path: string): Promise<T> {
  const r = await fetch(`${plane.url}${path}`, { headers: adminAuth(plane) });
  return (await r.json()) as T;
}

const TRACE = '5bf92f3577b34da6a3ce929d0e0e4736';

function otlp(spans: Record<string, unknown>[], service = 'app'): string {
  return JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] }, scopeSpans: [{ spans }] }] });
}

function span(
  spanId: string,
  parentSpanId: string,
  name: string,
  startMs: number,
  endMs: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { traceId: TRACE, spanId, parentSpanId, name, kind: 2, startTimeUnixNano: `${startMs}000000`, endTimeUnixNano: `${endMs}000000`, ...extra };
}

test('spans two real sidecars export join one trace the control plane serves, and trellis trace shows it as a tree', async () => {
  const app = await listenHttp((_req, res) => res.end('ok'));
  let inbound: Sidecar | undefined;
  let outbound: Sidecar | undefined;
  try {
    inbound = await startInbound('api', 'v1', app.port);
    outbound = await startOutbound('web', {
      api: {
        service: 'api',
        protocol: 'http',
        routes: [{ name: 'default/api/rule/0', match: {}, backends: [{ backend: 'api', weight: 1 }] }],
        backends: { api: { name: 'api', endpoints: [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
      },
    });
    for (const s of [inbound, outbound]) {
      const snap = s.snapshot as Snapshot;
      s.apply({ ...snap, version: 2, tracing: { samplingRate: 1, endpoint: `${plane.url}/v1/traces`, flushIntervalMs: 20 } });
    }
    const r = await get(outbound.addresses.upstreams.api!.port, '/hello');
    assert.equal(r.status, 200);
    const list = await eventually(async () => {
      const l = await json<{ traces: TraceSummaryView[] }>('/v1/traces?service=api');
      assert.equal(l.traces[0]?.spans, 2);
      return l;
    });
    const summary = list.traces[0]!;
    assert.equal(summary.rootService, 'web');
    assert.deepEqual(summary.services, ['api', 'web']);
    const trace = await json<TraceView>(`/v1/traces/${summary.traceId}`);
    const tree = renderTraceTree(trace);
    assert.match(tree, /web +client .*GET api +\(200\)/);
    assert.match(tree, /api +server .*└─ GET api +\(200\)/);
    // The CLI, as a user runs it (with the admin token, which the reads take).
    const tokenFile = await files.write('admin-token', `${plane.adminToken}\n`);
    const denied = await trellisCli(['trace', '--control', plane.url]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /admin API needs its token/);
    const cli = await trellisCli(['trace', '--control', plane.url, '--admin-token-file', tokenFile]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`${summary.traceId} .* web: GET api +api,web`));
    const one = await trellisCli(['trace', summary.traceId, '--control', plane.url, '--admin-token-file', tokenFile]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /^trace [0-9a-f]{32}: 2 spans, 2 services \(api, web\)/);
    assert.match(one.stdout, /└─ GET api/);
    const missing = await trellisCli(['trace', 'f'.repeat(32), '--control', plane.url, '--admin-token-file', tokenFile]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /keeps no trace/);
  } finally {
    await outbound?.close();
    await inbound?.close();
    await closeServer(app.server);
  }
});

test('a tree: children under their parents with offsets and durations', () => {
  const store = new TraceStore();
  store.ingest(
    JSON.parse(otlp([span('a000000000000001', '', 'GET /', 1000, 1010), span('a000000000000003', 'a000000000000002', 'SELECT', 1004, 1006)], 'front')),
  );
  store.ingest(JSON.parse(otlp([span('a000000000000002', 'a000000000000001', 'GET /api', 1002, 1008, { kind: 3 })], 'back')));
  const out = renderTraceTree(store.get(TRACE)!);
  const lines = out.trim().split('\n');
  assert.match(lines[0]!, /3 spans, 2 services \(back, front\), 10\.00ms/);
  assert.match(lines[2]!, /^\+0\.00ms +10\.00ms +front +server +█{24} +GET \/$/);
  assert.match(lines[3]!, /^\+2\.00ms +6\.00ms +back +client +█{14,15} *└─ GET \/api$/);
  assert.match(lines[4]!, /^\+4\.00ms +2\.00ms +front +server .* {3}└─ SELECT$/);
});

test('bodies that are not OTLP JSON are refused with the reason, on arrival when that is cheap to see, else counted when decoded; bad spans are rejected, the rest kept', async () => {
  const before = await json<TraceListView>('/v1/traces');
  const truncated = await post('{"resourceSpans": [', { 'content-type': 'application/json' });
  assert.equal(truncated.status, 400);
  assert.match(truncated.body, /not a JSON object/);
  const proto = await post(Buffer.from([0x0a, 0x01]), { 'content-type': 'application/x-protobuf' });
  assert.equal(proto.status, 415);
  assert.match(proto.body, /http\/json/);
  assert.equal((await post('[]')).status, 400);
  assert.equal((await post(' \n ')).status, 400);
  // A JSON object, so taken: found wrong when decoded (at the next read), and counted.
  assert.equal((await post('{"resourceSpans": 5}')).status, 200);
  assert.equal((await post('{"resourceSpans": 5')).status, 400);
  assert.equal((await post('{"resourceSpans": [}')).status, 200);
  const after = await json<TraceListView>('/v1/traces');
  assert.equal(after.refusedBodies, before.refusedBodies + 5);
  const afterBodies = after.rejected;
  assert.equal(afterBodies.bodies, before.rejected.bodies + 2);
  assert.equal(afterBodies.lastProblem, 'a body is not JSON');
  const mixed = await post(
    otlp([
      span('b000000000000001', '', 'good', 2000, 2001),
      span('zz', '', 'bad id', 2000, 2001),
      span('b000000000000002', '', 'ends first', 2001, 2000),
      { ...span('b000000000000003', '', 'bad kind', 2000, 2001), kind: 9 },
      { ...span('b000000000000004', '', 'bad time', 2000, 2001), startTimeUnixNano: '-1' },
    ]),
  );
  assert.equal(mixed.status, 200);
  assert.deepEqual(JSON.parse(mixed.body), {});
  // Decoded when read: the good span kept, the four bad ones counted with the first one's reason.
  const t = await json<TraceView>(`/v1/traces/${TRACE}`);
  assert.ok(t.spans.some((s) => s.name === 'good'));
  const list = await json<TraceListView>('/v1/traces');
  assert.deepEqual(list.rejected, { bodies: afterBodies.bodies, spans: afterBodies.spans + 4, lastProblem: 'spanId must be 16 hex digits, not all zero' });
  // `trellis trace` says so under its list (the senders were answered 200).
  assert.equal(
    renderReceiverNote(list),
    `The receiver dropped, of what it had accepted: ${list.rejected.bodies} malformed bodies; ${list.rejected.spans} bad spans (the latest: spanId must be 16 hex digits, not all zero).\n`,
  );
  assert.equal(renderReceiverNote({ rejected: { bodies: 0, spans: 0, lastProblem: '' }, skippedBodies: 0 }), '');
  assert.equal(renderReceiverNote({}), '');
  assert.equal(
    renderReceiverNote({ rejected: { bodies: 1, spans: 0, lastProblem: 'a body is not JSON' }, skippedBodies: 3 }),
    'The receiver dropped, of what it had accepted: 1 malformed body (the latest: a body is not JSON); 3 bodies never read (more waited than it keeps).\n',
  );
  assert.equal((await fetch(`${plane.url}/v1/traces/nothex`, { headers: adminAuth(plane) })).status, 404);
  // The reads take the admin token; the receiver took the spans above from this machine without one.
  assert.equal((await fetch(`${plane.url}/v1/traces`)).status, 401);
  assert.equal((await fetch(`${plane.url}/v1/traces/${TRACE}`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  assert.equal((await fetch(`${plane.url}/v1/traces`, { method: 'DELETE' })).status, 405);
});

test('an oversize body is refused 413, whether it says its length or streams it chunked', async () => {
  const big = otlp([span('c000000000000001', '', 'x'.repeat(70 * 1024), 1, 2)]);
  assert.equal((await post(big)).status, 413);
  // Chunked: no content-length, refused once the limit passes.
  const r = await new Promise<number>((resolve, reject) => {
    const req = http.request(
      `${plane.url}/v1/traces`,
      { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.on('error', reject);
    for (let i = 0; i < 20; i++) req.write('x'.repeat(8 * 1024));
    req.end();
  });
  assert.equal(r, 413);
  assert.equal((await fetch(`${plane.url}/healthz`)).status, 200, 'the control plane is fine');
});

test('hostile strings are cut, attributes capped, and odd keys ignored', async () => {
  const attrs = [
    { key: 'long', value: { stringValue: 'y'.repeat(10_000) } },
    { key: '__proto__', value: { stringValue: 'polluted' } },
    { key: 'k'.repeat(500), value: { stringValue: 'long key' } },
    { key: 'arr', value: { arrayValue: { values: [] } } },
    ...Array.from({ length: 100 }, (_, i) => ({ key: `a${i}`, value: { intValue: String(i) } })),
  ];
  const r = await post(otlp([span('d000000000000001', '', 'n'.repeat(5000), 3000, 3001, { attributes: attrs })], 's'.repeat(2000)));
  assert.equal(r.status, 200);
  const t = await json<TraceView>(`/v1/traces/${TRACE}`);
  const s = t.spans.find((x) => x.spanId === 'd000000000000001')!;
  assert.equal(s.name.length, 513);
  assert.equal(s.service.length, 513);
  assert.equal((s.attributes.long as string).length, 513);
  assert.equal(Object.keys(s.attributes).length, 64);
  assert.equal(Object.hasOwn(s.attributes, '__proto__'), false);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('the store keeps a bounded number of traces (the least recently updated go) and spans per trace', () => {
  const store = new TraceStore({ maxTraces: 3, maxSpansPerTrace: 2 });
  const body = (trace: string, spanId: string) =>
    JSON.parse(otlp([{ traceId: trace, spanId, name: 'x', kind: 1, startTimeUnixNano: '1', endTimeUnixNano: '2' }]));
  const ids = ['1', '2', '3', '4', '5'].map((d) => d.repeat(32));
  for (const id of ids) store.ingest(body(id, 'e000000000000001'));
  assert.equal(store.size, 3);
  assert.equal(store.get(ids[0]!), undefined);
  assert.equal(store.evicted, 2);
  for (let i = 2; i <= 5; i++) store.ingest(body(ids[4]!, `e00000000000000${i}`));
  assert.equal(store.get(ids[4]!)!.spans.length, 2);
  assert.equal(store.get(ids[4]!)!.droppedSpans, 3);
});

test('the store reads ids in either case and times with leading zeros as the OTLP JSON mapping allows, and orders times as numbers', () => {
  const store = new TraceStore();
  const base = { name: 'n', kind: 2, startTimeUnixNano: '1000', endTimeUnixNano: '1001' };
  const body = (spans: object[]): object => ({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans }] }] });
  const r = store.ingest(
    body([
      { ...base, traceId: 'ABCDEF0123456789ABCDEF0123456789', spanId: 'A000000000000001', parentSpanId: '0000000000000000' },
      { ...base, traceId: 'abcdef0123456789abcdef0123456789', spanId: 'a000000000000002', startTimeUnixNano: '0999', endTimeUnixNano: '00001000' },
      // 999 ends before 1000, though '999' > '1000' as text.
      { ...base, traceId: 'abcdef0123456789abcdef0123456789', spanId: 'a000000000000003', startTimeUnixNano: '1000', endTimeUnixNano: '999' },
      { ...base, traceId: '00000000000000000000000000000000', spanId: 'a000000000000004' },
      { ...base, traceId: 'abcdef0123456789abcdef0123456789', spanId: 'a000000000000005', parentSpanId: 'G000000000000000' },
      { ...base, traceId: 'abcdef0123456789abcdef0123456789', spanId: 'a000000000000006', startTimeUnixNano: '123456789012345678901' },
      {
        ...base,
        traceId: 'abcdef0123456789abcdef0123456789',
        spanId: 'a000000000000007',
        attributes: [{ key: 'n', value: { intValue: '-42' } }, { key: 'bad', value: { intValue: '4-2' } }, ['x'], { key: 'arr', value: [1] }],
      },
    ]),
  );
  assert.deepEqual(r, { accepted: 3, rejected: 4, firstProblem: 'the span ends before it starts' });
  const spans = store.get('ABCDEF0123456789ABCDEF0123456789')!.spans;
  assert.deepEqual(
    spans.map((s) => [s.spanId, s.parentSpanId, s.startTimeUnixNano, s.endTimeUnixNano]),
    [
      ['a000000000000002', '', '999', '1000'],
      ['a000000000000001', '0000000000000000', '1000', '1001'],
      ['a000000000000007', '', '1000', '1001'],
    ],
  );
  assert.deepEqual(spans[2]!.attributes, { n: -42 });
});
