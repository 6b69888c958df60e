// A proxy's /metrics responses are bounded (src/proxy/scrape-gate.ts): at most
// proxyLimits.maxConcurrentScrapes are sent at once, more are answered 503 scrape-limit
// at once with Retry-After, and a response not sent within proxyLimits.scrapeTimeout has
// its connection destroyed. A scraper that never reads would otherwise hold its
// exposition in the proxy forever, one per connection.
//
// A response that never finishes needs a client that never reads and a body larger than
// what the kernel buffers between the two sockets on loopback (the send buffer grows to
// net.ipv4.tcp_wmem's maximum, 4 MiB here, the reader's to its initial 128 KiB when it
// never reads): the tests pad the exposition to about 10 MB with series of their own.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import client from 'prom-client';
import { Sidecar } from '../../src/proxy/sidecar.js';
import type { ProxyLimitsSnapshot } from '../../src/api/protocol.js';
import { eventually } from '../helpers/eventually.js';
import { NO_CONTROL, quietLog } from '../helpers/proxy-pair.js';
import { giveIdentity } from '../helpers/test-identity.js';

const PAD_SERIES = 2000;
const PAD_VALUE = 'x'.repeat(5000);

let sidecar: Sidecar;
let version = 0;
const open: net.Socket[] = [];

before(async () => {
  sidecar = new Sidecar({
    service: 'web',
    version: 'default',
    id: 'web-0',
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
  });
  await giveIdentity(sidecar, 'web');
  await sidecar.start();
  const pad = new client.Gauge({
    name: 'test_padding',
    help: 'Makes the exposition about 10 MB.',
    labelNames: ['i', 'pad'],
    registers: [sidecar.metrics.registry],
  });
  for (let i = 0; i < PAD_SERIES; i++) pad.labels(String(i), PAD_VALUE).set(1);
});

after(async () => {
  for (const s of open) s.destroy();
  await sidecar?.close();
});

function withLimits(limits: ProxyLimitsSnapshot): void {
  sidecar.apply({ version: ++version, service: 'web', inboundProtocol: 'http', upstreams: {}, limits });
}

function url(path: string): string {
  const { host, port } = sidecar.addresses.admin!;
  return `http://${host}:${port}${path}`;
}

/** One series' value, read from the registry (a scrape through /metrics could be refused). */
async function series(name: string): Promise<number> {
  const text = await sidecar.metrics.registry.getSingleMetricAsString(name);
  const line = text.split('\n').find((l) => l.startsWith(name) && !l.startsWith('#'));
  assert.ok(line, `${name} has a series`);
  return Number(line.split(' ').at(-1));
}

/** A client that asks for /metrics and never reads the answer (it stops at its stream's high-water mark). */
async function neverReading(): Promise<net.Socket> {
  const { host, port } = sidecar.addresses.admin!;
  const s = net.connect(port, host);
  open.push(s);
  s.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.pause();
  s.write('GET /metrics HTTP/1.1\r\nhost: proxy\r\n\r\n');
  return s;
}

test('scrapes over maxConcurrentScrapes are answered 503 scrape-limit at once, with Retry-After, and counted; a slot frees when its response closes', async () => {
  withLimits({ maxConcurrentScrapes: 2, scrapeTimeoutMs: 600_000 });
  const held = [await neverReading(), await neverReading()];
  await eventually(async () => assert.equal(await series('trellis_proxy_scrapes_active'), 2), { what: 'two /metrics responses held' });

  const over = await fetch(url('/metrics'));
  assert.equal(over.status, 503);
  assert.equal(over.headers.get('trellis-error'), 'scrape-limit');
  assert.equal(over.headers.get('retry-after'), '1');
  assert.match(await over.text(), /TRELLIS_E_SCRAPE_LIMIT/);
  assert.equal(await series('trellis_proxy_scrapes_refused_total'), 1);
  assert.equal(await series('trellis_proxy_scrapes_active'), 2, 'a refused scrape holds no slot');

  for (const s of held) s.destroy();
  await eventually(async () => assert.equal(await series('trellis_proxy_scrapes_active'), 0), { what: 'the held responses closed' });
  const ok = await eventually(async () => {
    const res = await fetch(url('/metrics'));
    const text = await res.text();
    assert.equal(res.status, 200);
    return text;
  });
  assert.match(ok, /^trellis_proxy_scrapes_refused_total(\{[^}]*\})? 1$/m);
  assert.equal(await series('trellis_proxy_scrapes_timed_out_total'), 0);
});

test('a /metrics response not sent within scrapeTimeout has its connection destroyed, and is counted', async () => {
  withLimits({ maxConcurrentScrapes: 2, scrapeTimeoutMs: 1000 });
  const before = await series('trellis_proxy_scrapes_timed_out_total');
  const s = await neverReading();
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  await eventually(async () => assert.equal(await series('trellis_proxy_scrapes_timed_out_total'), before + 1), { what: 'the response timed out' });
  await eventually(async () => assert.equal(await series('trellis_proxy_scrapes_active'), 0), { what: 'its slot freed' });

  // Reading now, the client gets what the kernels held, then the end: less than the body it was promised.
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.resume();
  await closed;
  // (On a slow machine the timeout may even come before the exposition was built: no head at all.)
  const received = Buffer.concat(chunks);
  const headEnd = received.indexOf('\r\n\r\n');
  if (headEnd > 0) {
    const length = Number(/content-length: (\d+)/i.exec(received.subarray(0, headEnd).toString('latin1'))?.[1]);
    assert.ok(length > 0, 'the response had a length');
    assert.ok(received.length - headEnd - 4 < length, 'the body was cut short');
  }

  // A scraper that reads is still served.
  withLimits({ maxConcurrentScrapes: 2, scrapeTimeoutMs: 600_000 });
  const res = await fetch(url('/metrics'));
  assert.equal(res.status, 200);
  assert.match(await res.text(), /^trellis_proxy_scrapes_timed_out_total(\{[^}]*\})? 1$/m);
});
