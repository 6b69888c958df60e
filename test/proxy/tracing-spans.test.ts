// Spans per hop through real sidecars, over HTTP/1.1 and HTTP/2 alike: the outbound
// sidecar's client span, the inbound one's server span as its child, the app seeing the
// server span as its parent; retries as spans of their own; a caller's "not sampled"
// kept (nothing made, headers untouched); failed requests exported whatever the rate.
import assert from 'node:assert/strict';
import type http from 'node:http';
import type http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import type { RouteEntry, Snapshot, TracingSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { openClient, WIRE_PROTOCOLS } from '../helpers/client.js';
import { eventually } from '../helpers/eventually.js';
import { listenH1AndH2 } from '../helpers/h2.js';
import { startCollector, type CollectedSpan, type Collector } from '../helpers/otlp-collector.js';
import { closeServer, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let collector: Collector;
let app: Awaited<ReturnType<typeof listenH1AndH2>>;
let inbound: Sidecar;
let outbound: Sidecar;
/** The traceparent each request reached the app with, by its `x-test` id. */
const seen = new Map<string, string | undefined>();
const failures = new Map<string, number>();

function traced(s: Sidecar, tracing: TracingSnapshot): void {
  const snap = s.snapshot as Snapshot;
  s.apply({ ...snap, version: snap.version + 1, tracing });
}

before(async () => {
  collector = await startCollector();
  app = await listenH1AndH2((req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const id = String(req.headers['x-test']);
    const tp = req.headers.traceparent;
    seen.set(`${id}#${(failures.get(id) ?? 0) + 1}`, typeof tp === 'string' ? tp : undefined);
    if (req.url === '/fail-once' && !failures.has(id)) {
      failures.set(id, 1);
      res.writeHead(503);
      return void res.end('again');
    }
    res.writeHead(req.url === '/boom' ? 500 : 200);
    res.end('ok');
  });
  inbound = await startInbound('api', 'v1', app.port);
  const routes: RouteEntry[] = [
    {
      name: 'default/api/rule/0',
      match: {},
      backends: [{ backend: 'api', weight: 1 }],
      retry: { codes: [503], attempts: 2, backoffMs: 1, nonIdempotent: false, maxBodyBytes: 0 },
    },
  ];
  outbound = await startOutbound('web', {
    api: {
      service: 'api',
      protocol: 'http',
      routes,
      backends: { api: { name: 'api', endpoints: [{ id: 'api-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
    },
  });
});

after(async () => {
  await outbound?.close();
  await inbound?.close();
  if (app) await closeServer(app.server);
  await collector?.close();
});

function tracing(samplingRate: number): TracingSnapshot {
  return { samplingRate, endpoint: collector.url, flushIntervalMs: 20 };
}

function spansOf(traceId: string): CollectedSpan[] {
  return collector.spans.filter((s) => s.traceId === traceId);
}

for (const protocol of WIRE_PROTOCOLS) {
  describe(`tracing over ${protocol}`, () => {
    test('each sidecar makes its span of the hop, and the app sees the server span as its parent', async () => {
      traced(outbound, tracing(1));
      traced(inbound, tracing(1));
      const client = openClient(protocol, outbound.addresses.upstreams.api!.port);
      const id = `ok-${protocol}`;
      try {
        const r = await client.request('GET', '/ok', { 'x-test': id });
        assert.equal(r.status, 200);
      } finally {
        await client.close();
      }
      const tp = seen.get(`${id}#1`);
      assert.match(tp ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'the app gets a sampled traceparent');
      const traceId = tp!.slice(3, 35);
      await eventually(() => assert.equal(spansOf(traceId).length, 2));
      const [client1] = spansOf(traceId).filter((s) => s.kind === 3);
      const [server1] = spansOf(traceId).filter((s) => s.kind === 2);
      assert.ok(client1 && server1);
      assert.equal(client1.service, 'web');
      assert.equal(client1.parentSpanId, '', 'no context came from the app: the client span is the root');
      assert.equal(client1.attributes['http.route'], 'default/api/rule/0');
      assert.equal(client1.attributes['trellis.destination.service'], 'api');
      assert.equal(client1.attributes['trellis.destination.version'], 'v1');
      assert.equal(client1.attributes['trellis.endpoint'], 'api-v1-0');
      assert.equal(client1.attributes['http.response.status_code'], 200);
      assert.equal(client1.attributes['http.request.method'], 'GET');
      assert.equal(server1.service, 'api');
      assert.equal(server1.parentSpanId, client1.spanId, 'the server span is the client span’s child');
      assert.equal(server1.attributes['trellis.source'], 'web');
      assert.equal(tp!.slice(36, 52), server1.spanId, "the app's parent is the server span");
      assert.ok(client1.start <= server1.start && server1.end <= client1.end, 'the server span lies within the client span');
    });

    test('a retry is a span of its own, and the peer’s span of each attempt is the right one’s child', async () => {
      traced(outbound, tracing(1));
      traced(inbound, tracing(1));
      const client = openClient(protocol, outbound.addresses.upstreams.api!.port);
      const id = `retry-${protocol}`;
      try {
        const r = await client.request('GET', '/fail-once', { 'x-test': id });
        assert.equal(r.status, 200);
      } finally {
        await client.close();
      }
      const traceId = seen.get(`${id}#1`)!.slice(3, 35);
      await eventually(() => assert.equal(spansOf(traceId).length, 4));
      const spans = spansOf(traceId);
      const hop = spans.find((s) => s.kind === 3 && s.attributes['trellis.retry.attempt'] === undefined)!;
      const retrySpan = spans.find((s) => s.attributes['trellis.retry.attempt'] === 2)!;
      assert.equal(hop.attributes['http.request.resend_count'], 1);
      assert.equal(hop.attributes['http.response.status_code'], 200);
      assert.equal(retrySpan.parentSpanId, hop.spanId);
      assert.equal(retrySpan.attributes['http.response.status_code'], 200);
      const servers = spans.filter((s) => s.kind === 2);
      assert.deepEqual(servers.map((s) => s.attributes['http.response.status_code']).sort(), [200, 503]);
      assert.equal(servers.find((s) => s.attributes['http.response.status_code'] === 503)!.parentSpanId, hop.spanId, 'the first attempt is the hop span');
      assert.equal(
        servers.find((s) => s.attributes['http.response.status_code'] === 200)!.parentSpanId,
        retrySpan.spanId,
        'the retry’s server span is the retry span’s child',
      );
      assert.equal(seen.get(`${id}#2`)!.slice(3, 35), traceId, 'the retry carries the same trace');
    });

    test("a caller's decision not to sample is kept: nothing is made, and the header reaches the app as sent", async () => {
      traced(outbound, tracing(1));
      traced(inbound, tracing(1));
      const before = collector.spans.length;
      const sent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
      const client = openClient(protocol, outbound.addresses.upstreams.api!.port);
      const id = `unsampled-${protocol}`;
      try {
        await client.request('GET', '/ok', { 'x-test': id, traceparent: sent });
      } finally {
        await client.close();
      }
      assert.equal(seen.get(`${id}#1`), sent);
      await outbound.tracer.flush();
      await inbound.tracer.flush();
      assert.equal(collector.spans.filter((s) => s.traceId === '0af7651916cd43dd8448eb211c80319c').length, 0);
      assert.equal(collector.spans.length, before);
    });

    test('a failed request is exported even when its trace is not sampled; a good one is not', async () => {
      traced(outbound, tracing(0));
      traced(inbound, tracing(0));
      const client = openClient(protocol, outbound.addresses.upstreams.api!.port);
      const okId = `zero-ok-${protocol}`;
      const boomId = `zero-boom-${protocol}`;
      try {
        await client.request('GET', '/ok', { 'x-test': okId });
        assert.equal((await client.request('GET', '/boom', { 'x-test': boomId })).status, 500);
      } finally {
        await client.close();
      }
      const okTp = seen.get(`${okId}#1`)!;
      assert.match(okTp, /-00$/, 'a new trace not sampled still carries its id, flagged not sampled');
      const boomTp = seen.get(`${boomId}#1`)!;
      const traceId = boomTp.slice(3, 35);
      await eventually(() => assert.equal(spansOf(traceId).length, 2));
      const [c, s] = [spansOf(traceId).find((x) => x.kind === 3)!, spansOf(traceId).find((x) => x.kind === 2)!];
      assert.equal(c.error, true);
      assert.equal(c.attributes['trellis.sampled_by'], 'error');
      assert.equal(s.parentSpanId, c.spanId, 'the error spans still join: the server span is the client span’s child');
      await outbound.tracer.flush();
      assert.equal(spansOf(okTp.slice(3, 35)).length, 0);
    });
  });
}

test("the inbound server span names the caller's certificate and authorization's decision; a denied request is exported unsampled", async () => {
  const snap = inbound.snapshot as Snapshot;
  const authorization: Snapshot['authorization'] = {
    trustDomain: 'cluster.local',
    policies: [
      { name: 'default/web-reads', action: 'ALLOW', rules: [{ from: [{ principals: ['cluster.local/ns/default/sa/web'] }], to: [{ paths: ['/ok'] }] }] },
    ],
  };
  inbound.apply({ ...snap, version: snap.version + 1, tracing: tracing(1), authorization });
  traced(outbound, tracing(1));
  const client = openClient('HTTP/1.1', outbound.addresses.upstreams.api!.port);
  try {
    assert.equal((await client.request('GET', '/ok', { 'x-test': 'authz-ok' })).status, 200);
    traced(outbound, tracing(0));
    const s2 = inbound.snapshot as Snapshot;
    inbound.apply({ ...s2, version: s2.version + 1, tracing: tracing(0) });
    assert.equal((await client.request('GET', '/other', { 'x-test': 'authz-denied' })).status, 403);
  } finally {
    await client.close();
    const s3 = inbound.snapshot as Snapshot;
    inbound.apply({ ...s3, version: s3.version + 1, authorization: undefined });
  }
  const okTrace = seen.get('authz-ok#1')!.slice(3, 35);
  await eventually(() => assert.ok(spansOf(okTrace).some((x) => x.kind === 2)));
  const allowed = spansOf(okTrace).find((x) => x.kind === 2)!;
  assert.equal(allowed.attributes['trellis.peer'], 'spiffe://cluster.local/ns/default/sa/web');
  assert.equal(allowed.attributes['trellis.authz.decision'], 'allow');
  assert.equal(allowed.attributes['trellis.authz.policy'], 'default/web-reads');
  // The denied request never reached the app; its server span is found by its attributes.
  const denied = await eventually(() => {
    const d = collector.spans.find((x) => x.kind === 2 && x.attributes['trellis.authz.decision'] === 'deny');
    assert.ok(d, 'the denied request has a server span');
    return d;
  });
  assert.equal(denied.attributes['trellis.authz.policy'], 'default/web-reads');
  assert.equal(denied.attributes['trellis.peer'], 'spiffe://cluster.local/ns/default/sa/web');
  assert.equal(denied.attributes['http.response.status_code'], 403);
  assert.equal(denied.attributes['error.type'], 'forbidden');
  assert.equal(denied.attributes['trellis.sampled_by'], 'error', 'exported though its trace was not sampled');
});

test('the latency histogram carries the trace id of a sampled request as an exemplar, in OpenMetrics only', async () => {
  traced(outbound, tracing(1));
  traced(inbound, tracing(1));
  const client = openClient('HTTP/1.1', outbound.addresses.upstreams.api!.port);
  try {
    await client.request('GET', '/ok', { 'x-test': 'exemplar' });
  } finally {
    await client.close();
  }
  const traceId = seen.get('exemplar#1')!.slice(3, 35);
  const admin = `http://127.0.0.1:${outbound.addresses.admin!.port}/metrics`;
  const om = await fetch(admin, { headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' } });
  assert.match(om.headers.get('content-type') ?? '', /^application\/openmetrics-text; version=1.0.0/);
  const text = await om.text();
  assert.match(
    text,
    new RegExp(
      `trellis_http_request_duration_seconds_bucket\\{le="[^"]+",direction="outbound".*\\} \\d+ # \\{trace_id="${traceId}"\\} [0-9.e-]+ \\d+\\.\\d{3}\\n`,
    ),
  );
  assert.match(text, /# TYPE trellis_http_requests counter\n/);
  assert.match(text, /# TYPE trellis_proxy_spans_dropped counter\n/);
  assert.match(text, /\ntrellis_proxy_spans_exported_total\{/);
  assert.ok(text.endsWith('# EOF\n'));
  assert.equal(/\n\n/.test(text), false, 'OpenMetrics has no blank lines');
  const plain = await (await fetch(admin)).text();
  assert.equal(plain.includes('trace_id'), false, 'Prometheus text 0.0.4 has no exemplars');
  assert.match(plain, /# TYPE trellis_http_requests_total counter\n/);
});
