// A Gateway's listener is the mesh's edge: the sampling decision a request from outside
// carries (traceparent's sampled flag) is the client's wish, not the mesh's. By default
// the edge samples at its own rate, keeping the client's trace id, so no client can make
// the mesh trace and export every request it sends; `trustIncomingSampling` keeps the
// client's decision, for a mesh behind a trusted front end that samples for it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Snapshot, TracingSnapshot } from '../../src/api/protocol.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { startCollector, type Collector } from '../helpers/otlp-collector.js';
import { closeServer, listenHttp, NO_CONTROL, quietLog, startInbound } from '../helpers/proxy-pair.js';

let app: { server: http.Server; port: number };
let gw: Sidecar;
let inbound: Sidecar;
let collector: Collector;
let port = 0;
let version = 0;

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const sampled = `00-${TRACE_ID}-b7ad6b7169203331-01`;
const unsampled = `00-${TRACE_ID}-b7ad6b7169203331-00`;

function snapshot(tracing: TracingSnapshot): Snapshot {
  return {
    version: ++version,
    service: 'gw',
    inboundProtocol: 'http',
    meshServices: ['app', 'gw'],
    tracing,
    upstreams: {
      'default/gw/8080': {
        service: 'default/gw/8080',
        protocol: 'http',
        explicitRoutes: true,
        routes: [{ name: 'default/site/rule/0', match: { path: { type: 'PathPrefix', value: '/' } }, backends: [{ backend: 'app', weight: 1 }] }],
        backends: { app: { name: 'app', endpoints: [{ id: 'app-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'default' }] } },
      },
    },
    gateway: { name: 'default/gw', ports: [{ port: 8080, protocol: 'HTTP', listeners: ['http'], upstream: 'default/gw/8080' }] },
  };
}

before(async () => {
  collector = await startCollector();
  app = await listenHttp((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ traceparent: req.headers.traceparent ?? null }));
  });
  // The app's sidecar traces nothing: what reaches the app is what the gateway sent.
  inbound = await startInbound('app', 'default', app.port, 'http', { meshServices: ['app', 'gw'] });
  gw = new Sidecar({
    service: 'gw',
    version: 'default',
    id: 'gw-0',
    kind: 'gateway',
    control: NO_CONTROL,
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
    gatewayListen: { ports: new Map([[8080, 0]]) },
  });
  await gw.start();
});

after(async () => {
  await gw?.close();
  await inbound?.close();
  if (app) await closeServer(app.server);
  await collector?.close();
});

async function configure(tracing: Omit<TracingSnapshot, 'endpoint' | 'flushIntervalMs'>): Promise<void> {
  gw.apply(snapshot({ ...tracing, endpoint: collector.url, flushIntervalMs: 20 }));
  await gw.whenGatewayApplied();
  port = gw.gatewayAddresses()['8080']!.port;
}

/** One request from outside with `traceparent`; the traceparent the app got. */
function send(traceparent: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host: 'site.example.test', traceparent }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}: ${body}`));
        resolve((JSON.parse(body) as { traceparent: string }).traceparent);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function spansOfTrace(): Promise<number> {
  await gw.tracer.flush();
  return collector.spans.filter((s) => s.traceId === TRACE_ID).length;
}

test('a client cannot force sampling at the edge: its sampled flag is re-decided at the rate, its trace id kept', async () => {
  await configure({ samplingRate: 0 });
  const before = await spansOfTrace();
  const got = await send(sampled);
  assert.match(got, new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-00$`), 'the trace id is kept, the sampled flag is the edge’s (0%)');
  assert.equal(await spansOfTrace(), before, 'the gateway exported no span of it');
});

test("a client's 'not sampled' does not stop the edge from sampling at its rate", async () => {
  await configure({ samplingRate: 1 });
  const before = await spansOfTrace();
  const got = await send(unsampled);
  assert.match(got, new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
  assert.equal(await spansOfTrace(), before + 1, "the gateway's span joins the client's trace");
});

test('with trustIncomingSampling the edge keeps the client’s decision', async () => {
  await configure({ samplingRate: 0, trustIncomingSampling: true });
  const before = await spansOfTrace();
  const got = await send(sampled);
  assert.match(got, new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
  assert.equal(await spansOfTrace(), before + 1);
  await configure({ samplingRate: 1, trustIncomingSampling: true });
  assert.equal(await send(unsampled), unsampled, 'an unsampled request passes untouched');
});
