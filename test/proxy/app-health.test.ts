// The sidecar's /live and /app-health/... (src/proxy/app-health.ts): the kubelet's probes
// of an injected pod's app (src/k8s/inject.ts rewrites them to the sidecar's admin port),
// made by the sidecar against the app on 127.0.0.1. Only the probes the pod spec gave it
// can be run; what the app answers decides, and an app that is down is 503.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { adminRefusal } from '../../src/proxy/admin-access.js';
import { parseAppProbes, runAppProbe } from '../../src/proxy/app-health.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { NO_CONTROL, quietLog } from '../helpers/proxy-pair.js';
import { giveIdentity } from '../helpers/test-identity.js';
import { eventually } from '../helpers/eventually.js';

let app: http.Server;
let appPort = 0;
let sidecar: Sidecar;
let appStatus = 200;
const seen: string[] = [];

before(async () => {
  app = http.createServer((req, res) => {
    seen.push(`${req.url} ${req.headers['x-probe'] ?? ''}`);
    res.statusCode = appStatus;
    res.end();
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appPort = (app.address() as AddressInfo).port;
  const probes = JSON.stringify({
    '/app-health/web/readiness': { httpGet: { path: '/healthz', port: appPort, scheme: 'HTTP', httpHeaders: [{ name: 'x-probe', value: 'yes' }] } },
    '/app-health/web/liveness': { httpGet: { path: '/livez', port: 1, scheme: 'HTTP' } },
  });
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
    appProbes: parseAppProbes(probes),
  });
  await giveIdentity(sidecar, 'web');
  await sidecar.start();
});

after(async () => {
  await sidecar?.close();
  await new Promise<void>((resolve) => app.close(() => resolve()));
});

async function get(path: string): Promise<number> {
  const { host, port } = sidecar.addresses.admin!;
  const res = await fetch(`http://${host}:${port}${path}`);
  await res.text();
  return res.status;
}

test('/live answers while the process does, without a control plane', async () => {
  assert.equal(await get('/live'), 200);
  assert.equal(await get('/ready'), 503, 'not ready without a snapshot: readiness and liveness differ');
});

test("/app-health runs the pod's probe against the app and answers with its outcome", async () => {
  appStatus = 200;
  assert.equal(await get('/app-health/web/readiness'), 200);
  assert.equal(seen.at(-1), '/healthz yes', 'the probe path and headers from the pod spec');
  appStatus = 500;
  assert.equal(await get('/app-health/web/readiness'), 503);
  assert.equal(await get('/app-health/web/liveness'), 503, 'an app that does not answer is 503');
  assert.equal(await get('/app-health/web/startup'), 404, 'only the probes the pod spec gave');
  assert.equal(await get('/app-health/other/readiness?x=1'), 404);
});

test('the kubelet reaches /live and /app-health from the node address; the rest stays loopback-only', () => {
  const req = { method: 'GET', socket: { remoteAddress: '10.0.0.7' } } as unknown as IncomingMessage;
  assert.equal(adminRefusal(req, '/live'), undefined);
  assert.equal(adminRefusal(req, '/app-health/web/readiness'), undefined);
  assert.equal(adminRefusal(req, '/config')?.code, 'TRELLIS_E_ADMIN_LOOPBACK_ONLY');
});

test('probe definitions that do not check out are dropped', async () => {
  assert.equal(parseAppProbes(undefined).size, 0);
  assert.equal(parseAppProbes('{').size, 0);
  assert.equal(parseAppProbes('[1]').size, 0);
  const p = parseAppProbes(
    JSON.stringify({
      '/elsewhere': { httpGet: { port: 80 } },
      '/app-health/a/readiness': { httpGet: { port: 70000 } },
      '/app-health/b/readiness': { httpGet: { port: 'http' } },
      '/app-health/c/readiness': { httpGet: { port: 8080, path: 'no-slash' } },
    }),
  );
  assert.deepEqual([...p.keys()], ['/app-health/c/readiness']);
  assert.equal(p.get('/app-health/c/readiness')?.path, '/');
  assert.equal(await runAppProbe({ port: 1, path: '/', scheme: 'HTTP', headers: {} }, 1_000), 503);
});

test('/app-health runs at most --app-probe-concurrency probes at once; more are 503 app-probe-limit at once, and counted', async () => {
  // An app that holds every probe until released: each one in flight is a probe the sidecar waits on.
  const held: http.ServerResponse[] = [];
  const slow = http.createServer((_req, res) => void held.push(res));
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  const port = (slow.address() as AddressInfo).port;
  const capped = new Sidecar({
    service: 'web',
    version: 'default',
    id: 'web-1',
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
    appProbes: parseAppProbes(JSON.stringify({ '/app-health/web/readiness': { httpGet: { path: '/healthz', port } } })),
    appProbeConcurrency: 2,
  });
  const release = (): void => {
    for (const res of held.splice(0)) res.end();
  };
  try {
    await giveIdentity(capped, 'web');
    await capped.start();
    const { host, port: adminPort } = capped.addresses.admin!;
    const url = `http://${host}:${adminPort}/app-health/web/readiness`;
    const inFlight = [fetch(url), fetch(url)];
    await eventually(() => held.length === 2, { what: 'two probes held by the app' });
    const over = await fetch(url);
    assert.equal(over.status, 503);
    assert.equal(over.headers.get('trellis-error'), 'app-probe-limit');
    assert.equal(over.headers.get('retry-after'), '1');
    assert.match(await over.text(), /TRELLIS_E_APP_PROBE_LIMIT/);
    assert.equal(held.length, 2, 'the refused request never reached the app');
    const metrics = await (await fetch(`http://${host}:${adminPort}/metrics`)).text();
    assert.match(metrics, /^trellis_proxy_app_probes_refused_total(\{[^}]*\})? 1$/m);
    assert.match(metrics, /^trellis_proxy_app_probes_active(\{[^}]*\})? 2$/m);
    release();
    for (const r of await Promise.all(inFlight)) {
      assert.equal(r.status, 200);
      await r.text();
    }
    // The slots are free again.
    const next = fetch(url);
    await eventually(() => held.length === 1, { what: 'the next probe at the app' });
    release();
    assert.equal((await next).status, 200);
  } finally {
    release();
    await capped.close();
    slow.closeAllConnections();
    await new Promise<void>((resolve) => slow.close(() => resolve()));
  }
});
