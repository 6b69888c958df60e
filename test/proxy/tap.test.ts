// The proxy's tap point (proxy/tap/): a live copy of each finished exchange for the
// readers that ask, filtered in the proxy, and never at the data plane's expense: a
// reader's queue is bounded (events past it dropped and counted), a reader that stays
// behind is let go, taps per proxy are capped, and request values are bounded.
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { after, test } from 'node:test';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import type { TapEvent, TapNotice } from '../../src/api/views.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { TapHub, type TapSink } from '../../src/proxy/tap/tap-hub.js';
import type { Exchange } from '../../src/proxy/stack/exchange.js';
import { renderTapLine } from '../../src/cli/tap.js';
import { closeServer, get, listenHttp, metricsText, startOutbound } from '../helpers/proxy-pair.js';
import { eventually } from '../helpers/eventually.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** A sink whose reader takes nothing until told: `buffered` grows with each line. */
class HeldSink implements TapSink {
  lines: string[] = [];
  ended: string | undefined | null = null;
  taken = 0;
  write(line: string): void {
    this.lines.push(line);
  }
  get buffered(): number {
    return this.lines.slice(this.taken).reduce((n, l) => n + l.length, 0);
  }
  end(last?: string): void {
    this.ended = last;
  }
}

function fakeExchange(method: string, path: string, status = 200): Exchange {
  return {
    req: { method, path, target: path, host: 'api' },
    client: { peer: undefined }, // a plaintext caller: no verified peer
    grpcStatus: '',
    endpoint: undefined,
    responseBytes: 10,
    errorToken: '',
    attempts: 1,
    status,
  } as unknown as Exchange;
}

test('a tap sees only what its filter wants; max events ends it; inactive once the last tap closes', () => {
  const hub = new TapHub('web-0', (t) => t);
  assert.equal(hub.active, false);
  const sink = new HeldSink();
  const t = hub.open({ method: 'GET', pathPrefix: '/api', statusClass: 5, direction: 'outbound', maxEvents: 2 }, sink);
  assert.ok(t);
  assert.equal(hub.active, true);
  hub.publish('outbound', fakeExchange('GET', '/api/a', 500), 'web', 'api', 'r', 500, 0.001);
  hub.publish('outbound', fakeExchange('POST', '/api/a', 500), 'web', 'api', 'r', 500, 0.001);
  hub.publish('outbound', fakeExchange('GET', '/other', 500), 'web', 'api', 'r', 500, 0.001);
  hub.publish('outbound', fakeExchange('GET', '/api/b', 200), 'web', 'api', 'r', 200, 0.001);
  hub.publish('inbound', fakeExchange('GET', '/api/c', 503), 'web', 'api', 'r', 503, 0.001);
  hub.publish('outbound', fakeExchange('GET', '/api/d', 503), 'web', 'api', 'r', 503, 0.001);
  const events = sink.lines.map((l) => JSON.parse(l) as TapEvent);
  assert.deepEqual(
    events.map((e) => e.path),
    ['/api/a', '/api/d'],
  );
  assert.deepEqual(JSON.parse(sink.ended as string), { kind: 'end', reason: 'max-events' });
  assert.equal(hub.active, false, 'the hub is inactive again: the data plane is back to one field read');
});

test("a reader's queue is bounded: events past it are dropped and counted, a reader behind too long is let go, taps are capped", () => {
  let now = 0;
  const hub = new TapHub(
    'web-0',
    (t) => t,
    { maxTaps: 2, maxBufferedBytes: 2000, slowReaderMs: 1000 },
    () => now,
  );
  const slow = new HeldSink();
  const fast = new HeldSink();
  assert.ok(hub.open({}, slow));
  assert.ok(hub.open({}, fast));
  assert.equal(hub.open({}, new HeldSink()), undefined, 'a third tap is refused');
  for (let i = 0; i < 100; i++) {
    hub.publish('outbound', fakeExchange('GET', `/p/${i}`), 'web', 'api', 'r', 200, 0.001);
    fast.taken = fast.lines.length; // the fast reader keeps up
  }
  assert.ok(slow.buffered < 2000 + 400, `the slow reader's queue stays bounded (${slow.buffered} bytes)`);
  assert.equal(fast.lines.length, 100, 'the fast reader got every event');
  const dropped = hub.counts().dropped;
  assert.ok(dropped > 80, `events the slow reader could not take were dropped and counted (${dropped})`);
  // It catches up: its next line says how many it missed.
  slow.taken = slow.lines.length;
  hub.publish('outbound', fakeExchange('GET', '/after'), 'web', 'api', 'r', 200, 0.001);
  const notice = JSON.parse(slow.lines.at(-2)!) as TapNotice;
  assert.deepEqual(notice, { kind: 'dropped', count: dropped });
  // Behind again, and for longer than slowReaderMs: let go.
  for (let i = 0; i < 100; i++) {
    hub.publish('outbound', fakeExchange('GET', `/q/${i}`), 'web', 'api', 'r', 200, 0.001);
    fast.taken = fast.lines.length;
  }
  assert.equal(slow.ended, null);
  now += 1500;
  hub.publish('outbound', fakeExchange('GET', '/late'), 'web', 'api', 'r', 200, 0.001);
  fast.taken = fast.lines.length;
  assert.equal(slow.ended, undefined, 'the slow reader is disconnected, without a last line');
  assert.equal(hub.counts().slowReaders, 1);
  assert.equal(hub.counts().active, 1);
  assert.ok(hub.open({}, new HeldSink()), 'its slot is free again');
});

async function readTap(url: string, want: number): Promise<(TapEvent | TapNotice)[]> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const out: (TapEvent | TapNotice)[] = [];
  let pending = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    pending += Buffer.from(chunk).toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      out.push(JSON.parse(pending.slice(0, nl)) as TapEvent | TapNotice);
      pending = pending.slice(nl + 1);
    }
    if (out.length >= want) break;
  }
  return out;
}

async function apiPair(): Promise<{ out: Sidecar; port: number; admin: string; proxyPort: number }> {
  const app = await listenHttp((req, res) => {
    res.statusCode = req.url?.startsWith('/fail') ? 503 : 200;
    res.end('ok');
  });
  cleanup.push(() => closeServer(app.server));
  const api: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [],
    backends: { api: { name: 'api', endpoints: [{ id: 'api-0', host: '127.0.0.1', port: app.port, version: 'v1' }] } },
  };
  const out = await startOutbound('web', { api }, { httpProxy: true });
  cleanup.push(() => out.close());
  const a = out.addresses.admin!;
  return { out, port: out.addresses.upstreams.api!.port, admin: `http://${a.host}:${a.port}`, proxyPort: out.addresses.httpProxy!.port };
}

test("GET /tap on a sidecar's admin server streams its requests, filtered there", async () => {
  const { out, port, admin } = await apiPair();
  const reading = readTap(`${admin}/tap?method=GET&path=/fail&status=5xx&max=2`, 3);
  await eventually(() => assert.equal(out.tap.active, true));
  const sent = [get(port, '/ok/1'), get(port, '/fail/1'), get(port, '/fail/2'), get(port, '/fail/3')];
  await Promise.all(sent);
  const lines = await reading;
  const events = lines.filter((l): l is TapEvent => l.kind === 'request');
  assert.equal(events.length, 2);
  for (const e of events) {
    assert.equal(e.method, 'GET');
    assert.equal(e.status, 503);
    assert.ok(e.path.startsWith('/fail'));
    assert.equal(e.direction, 'outbound');
    assert.equal(e.caller, 'web');
    assert.equal(e.destination, 'api');
    assert.equal(e.proxy, 'web-out');
    assert.match(e.endpoint ?? '', /^127\.0\.0\.1:\d+$/);
    assert.ok(e.latencyMs >= 0);
  }
  assert.deepEqual(lines.at(-1), { kind: 'end', reason: 'max-events' });
});

test('a bad tap filter is refused with its reason, and the data plane has no tap open', async () => {
  const { out, admin } = await apiPair();
  const res = await fetch(`${admin}/tap?status=abc`);
  assert.equal(res.status, 400);
  assert.equal(res.headers.get('trellis-error'), 'tap-filter');
  assert.match(((await res.json()) as { message: string }).message, /status/);
  assert.equal(out.tap.active, false);
});

test('the CLI prints tap events with every control character made visible (ESC, C1 CSI, bidi overrides), never raw', () => {
  // The proxy's HTTP/1.1 parser refuses control characters in a target or Host (400, before
  // any exchange); an event still comes from a peer over JSON, so the reader escapes all of it.
  const hostile: TapEvent = {
    kind: 'request',
    ts: '2026-01-01T00:00:00.000Z\u001b]0;pwned\u0007',
    proxy: 'web-0\u001b[2J',
    direction: 'outbound',
    method: 'GET\u009b2J',
    authority: 'api\u202e',
    path: '/x\u001b[31mred\r\nfake line',
    status: 200,
    latencyMs: 1.5,
    caller: 'web\u0000',
    destination: 'api',
    route: 'r\u2028',
    endpoint: '127.0.0.1:1',
    bytes: 2,
    error: 'e\u007f',
    attempts: 1,
  };
  const printed = renderTapLine(hostile, hostile.proxy);
  assert.doesNotMatch(printed, /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/, 'nothing unprintable reaches the terminal');
  assert.match(printed, /\/x\\x1b\[31mred\\x0d\\x0afake line/);
  assert.match(printed, /GET\\x9b2J/);
  assert.match(printed, /api\\u\{202e\}/);
  assert.equal(printed.split('\n').length, 1, 'one event, one line');
});

test('a tap reader that never reads: its queue stays bounded, it is let go, and the data plane keeps serving', async () => {
  const app = await listenHttp((_req, res) => res.end('ok'));
  cleanup.push(() => closeServer(app.server));
  const api: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    routes: [],
    backends: { api: { name: 'api', endpoints: [{ id: 'api-0', host: '127.0.0.1', port: app.port, version: 'v1' }] } },
  };
  const out = await startOutbound('web', { api });
  cleanup.push(() => out.close());
  const port = out.addresses.upstreams.api!.port;
  // The reader: opens a tap and reads nothing more.
  const stuck = net.connect(out.addresses.admin!.port, '127.0.0.1');
  cleanup.push(() => void stuck.destroy());
  stuck.write('GET /tap HTTP/1.1\r\nHost: admin\r\n\r\n');
  stuck.pause();
  await eventually(() => assert.equal(out.tap.counts().active, 1));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  cleanup.push(() => agent.destroy());
  // Long paths fill the kernel's socket buffers quickly; then Node's queue for the reader stays under its bound.
  const long = `/${'x'.repeat(1000)}`;
  let ok = 0;
  const started = performance.now();
  await eventually(
    async () => {
      const batch = await Promise.all(Array.from({ length: 200 }, (_, i) => get(port, `${long}/${i}`, {}, agent)));
      ok += batch.filter((r) => r.status === 200).length;
      assert.ok(out.tap.counts().dropped > 0, 'events are dropped once the reader is behind');
    },
    { timeoutMs: 60_000 },
  );
  // Behind for longer than slowReaderMs (5 s): let go at the next event.
  await eventually(
    async () => {
      await Promise.all(Array.from({ length: 20 }, () => get(port, '/after', {}, agent)));
      assert.equal(out.tap.counts().slowReaders, 1);
    },
    { timeoutMs: 20_000 },
  );
  assert.equal(out.tap.counts().active, 0);
  assert.equal(out.tap.active, false);
  const text = await metricsText(out);
  assert.match(text, /trellis_proxy_tap_slow_readers_total\{[^}]*\} 1\n/);
  assert.match(text, /trellis_proxy_tap_events_dropped_total\{[^}]*\} [1-9]/);
  const statuses = await Promise.all(Array.from({ length: 50 }, () => get(port, '/still', {}, agent)));
  assert.ok(
    statuses.every((r) => r.status === 200),
    'every request was answered',
  );
  assert.ok(ok > 0, `served ${ok} requests in ${Math.round(performance.now() - started)} ms meanwhile`);
});

test("with the mesh's admin credential set, a proxy's /tap and /explain need it; its other admin endpoints are unchanged", async () => {
  const { Sidecar } = await import('../../src/proxy/sidecar.js');
  const s = new Sidecar({
    service: 'web',
    version: 'default',
    id: 'web-locked',
    kind: 'gateway',
    control: 'http://127.0.0.1:1',
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: () => {},
    adminToken: 's3cret',
  });
  await s.start();
  cleanup.push(() => s.close());
  const base = `http://127.0.0.1:${s.addresses.admin!.port}`;
  for (const [path, init] of [
    ['/tap?max=1', {}],
    ['/explain', { method: 'POST', body: '{}' }],
  ] as const) {
    const refused = await fetch(`${base}${path}`, init);
    assert.equal(refused.status, 401, path);
    assert.equal(refused.headers.get('trellis-error'), 'proxy-admin-unauthorized');
    await refused.body?.cancel();
    const wrong = await fetch(`${base}${path}`, { ...init, headers: { authorization: 'Bearer s3creT' } });
    assert.equal(wrong.status, 401, path);
    await wrong.body?.cancel();
  }
  const ac = new AbortController();
  const ok = await fetch(`${base}/tap?max=1`, { headers: { authorization: 'Bearer s3cret' }, signal: ac.signal });
  assert.equal(ok.status, 200);
  ac.abort();
  const explained = await fetch(`${base}/explain`, {
    method: 'POST',
    headers: { authorization: 'Bearer s3cret' },
    body: JSON.stringify({ method: 'GET', authority: 'api', target: '/' }),
  });
  assert.equal(explained.status, 200);
  assert.equal(((await explained.json()) as { error?: { token: string } }).error?.token, 'no-config');
  assert.equal((await fetch(`${base}/ready`)).status, 503, '/ready needs no credential');
});
