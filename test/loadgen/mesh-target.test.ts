// Service targets: resolved through the control plane's admin API and the sidecars'
// admin /config, and load sent from inside the mesh through a real sidecar pair.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TrellisError } from '../../src/errors.js';
import { fetchJson, resolveServiceTarget } from '../../src/loadgen/mesh-target.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { startInbound, startOutbound } from '../helpers/proxy-pair.js';
import { jsonApi, Servers, trellis } from './helpers.js';

const CONTROL = 'http://127.0.0.1:15000';

const services = [
  { name: 'frontend', protocol: 'http', public: { port: 8080 }, upstreams: [{ service: 'backend' }] },
  { name: 'backend', protocol: 'http', public: null, upstreams: [{ service: 'postgres' }] },
  { name: 'admin', protocol: 'http', public: null, upstreams: [{ service: 'postgres' }] },
  { name: 'postgres', protocol: 'tcp', public: null, upstreams: [] },
];

/** A fake admin API (control plane and proxies' admin ports) as getJson sees it. */
function fake(pages: Record<string, unknown>): { getJson: (url: string) => Promise<unknown>; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    getJson: async (url) => {
      asked.push(url);
      if (!(url in pages)) throw new Error('answered 404');
      return pages[url];
    },
  };
}

const base = {
  [`${CONTROL}/v1/services`]: { services },
  [`${CONTROL}/v1/proxies`]: {
    proxies: [
      { id: 'frontend-1', service: 'frontend', kind: 'sidecar', connected: false },
      { id: 'frontend-0', service: 'frontend', kind: 'sidecar', connected: true },
      { id: 'trellis-ingress', service: 'trellis-ingress', kind: 'gateway', connected: true, admin: { host: '127.0.0.1', port: 7002 } },
    ],
  },
  [`${CONTROL}/v1/instances`]: {
    instances: [
      { id: 'frontend-0', service: 'frontend', admin: { host: '127.0.0.1', port: 7000 } },
      { id: 'frontend-1', service: 'frontend', admin: { host: '127.0.0.1', port: 7001 } },
    ],
  },
  'http://127.0.0.1:7000/config': { addresses: { upstreams: { backend: { host: '127.0.0.1', port: 9001 } }, httpProxy: { host: '127.0.0.1', port: 9002 } } },
  'http://127.0.0.1:7002/config': { addresses: { upstreams: { frontend: { host: '127.0.0.1', port: 8080 } } } },
};

async function usage(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_E_USAGE' && message.test(e.message));
}

describe('resolving a service target', () => {
  it("--from: the connected sidecar's outbound listener for the service", async () => {
    const f = fake(base);
    const t = await resolveServiceTarget({ control: CONTROL, service: 'backend', path: '/api?x=1', from: 'frontend', getJson: f.getJson });
    assert.equal(t.url, 'http://127.0.0.1:9001/api?x=1');
    assert.deepEqual(t.headers, []);
    assert.match(t.via, /backend via frontend's sidecar frontend-0/);
  });

  it('--from: the HTTP proxy listener with Host: <service> when there is no listener for it', async () => {
    const f = fake({ ...base, 'http://127.0.0.1:7000/config': { addresses: { upstreams: {}, httpProxy: { host: '127.0.0.1', port: 9002 } } } });
    const t = await resolveServiceTarget({ control: CONTROL, service: 'backend', path: '/', from: 'frontend', getJson: f.getJson });
    assert.equal(t.url, 'http://127.0.0.1:9002/');
    assert.deepEqual(t.headers, [['Host', 'backend']]);
  });

  it('--from: a service that declares no upstreams reaches no service, not even through its HTTP proxy listener', async () => {
    const open = services.map((s) => (s.name === 'frontend' ? { ...s, upstreams: [] } : s));
    const f = fake({
      ...base,
      [`${CONTROL}/v1/services`]: { services: open },
      'http://127.0.0.1:7000/config': { addresses: { upstreams: {}, httpProxy: { host: '127.0.0.1', port: 9002 } } },
    });
    await usage(
      resolveServiceTarget({ control: CONTROL, service: 'backend', path: '/', from: 'frontend', getJson: f.getJson }),
      /frontend does not call backend/,
    );
  });

  it('--from: takes the admin address from /v1/proxies when the control plane lists it there', async () => {
    const f = fake({
      ...base,
      [`${CONTROL}/v1/proxies`]: {
        proxies: [{ id: 'frontend-0', service: 'frontend', kind: 'sidecar', connected: true, admin: { host: '127.0.0.1', port: 7000 } }],
      },
      [`${CONTROL}/v1/instances`]: undefined,
    });
    const t = await resolveServiceTarget({ control: CONTROL, service: 'backend', path: '/', from: 'frontend', getJson: f.getJson });
    assert.equal(t.url, 'http://127.0.0.1:9001/');
    assert.ok(!f.asked.some((u) => u.endsWith('/v1/instances')));
  });

  it('without --from: the public listener of a public service on the ingress proxy', async () => {
    const t = await resolveServiceTarget({ control: CONTROL, service: 'frontend', path: '/', getJson: fake(base).getJson });
    assert.equal(t.url, 'http://127.0.0.1:8080/');
    assert.match(t.via, /public listener on trellis-ingress/);
  });

  it('refuses unknown services, non-public ones without --from, callers that do not call the service, and TCP services', async () => {
    const getJson = fake(base).getJson;
    await usage(
      resolveServiceTarget({ control: CONTROL, service: 'nosuch', path: '/', getJson }),
      /no service named "nosuch" .*its services are: frontend, backend, admin, postgres/,
    );
    await usage(
      resolveServiceTarget({ control: CONTROL, service: 'backend', path: '/', getJson }),
      /backend is not public.*--from SERVICE.*services that call backend: frontend/,
    );
    await usage(
      resolveServiceTarget({ control: CONTROL, service: 'backend', path: '/', from: 'admin', getJson }),
      /admin does not call backend.*services that call backend: frontend/,
    );
    await usage(resolveServiceTarget({ control: CONTROL, service: 'postgres', path: '/', from: 'backend', getJson }), /postgres is a TCP service/);
  });

  it('says when the control plane cannot be reached', async () => {
    await assert.rejects(
      resolveServiceTarget({ control: CONTROL, service: 'backend', path: '/', getJson: fake({}).getJson }),
      (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_E_CONTROL_UNREACHABLE',
    );
  });
});

describe('reading an admin endpoint', () => {
  it('fails with TRELLIS_E_ADMIN_UNREACHABLE naming the URL: an error answer or nothing listening', async () => {
    const server = http.createServer((_req, res) => res.writeHead(500).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/services`;
      await assert.rejects(
        fetchJson(url),
        (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_E_ADMIN_UNREACHABLE' && e.message === `GET ${url} failed: answered 500`,
      );
    } finally {
      await new Promise((r) => server.close(r));
    }
    // The port of a server that was just closed: nothing listens there.
    const gone = http.createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const control = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
    await new Promise((r) => gone.close(r));
    await assert.rejects(resolveServiceTarget({ control, service: 'backend', path: '/' }), (e: unknown) => {
      assert.ok(e instanceof TrellisError && e.code === 'TRELLIS_E_CONTROL_UNREACHABLE');
      assert.equal(
        e.message,
        `cannot reach the control plane at ${control}: GET /v1/services: ECONNREFUSED; is \`trellis control\` (or \`trellis up\`) running?`,
      );
      return true;
    });
  });
});

describe('trellis load --from through a real sidecar', () => {
  const servers = new Servers();
  let inbound: Sidecar;
  let outbound: Sidecar;
  let control: string;
  const seen: { source: string | undefined; path: string | undefined }[] = [];

  before(async () => {
    const app = await servers.http((req, res) => {
      seen.push({ source: req.headers['trellis-source'] as string | undefined, path: req.url });
      res.end('from backend');
    });
    inbound = await startInbound('backend', 'v1', app.port, 'http', { meshServices: ['backend', 'frontend'] });
    const endpoints = [{ id: 'backend-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }];
    outbound = await startOutbound(
      'frontend',
      {
        backend: { service: 'backend', protocol: 'http', routes: [], backends: { backend: { name: 'backend', endpoints } } },
      },
      { httpProxy: true },
    );
    // The control plane's admin API as it answers today: proxies without their admin
    // address, which /v1/instances gives.
    control = (
      await servers.http(
        jsonApi({
          '/v1/services': { services: services.slice(0, 2) },
          '/v1/proxies': { proxies: [{ id: 'frontend-0', service: 'frontend', version: 'default', kind: 'sidecar', connected: true }] },
          '/v1/instances': { instances: [{ id: 'frontend-0', service: 'frontend', version: 'default', admin: outbound.addresses.admin }] },
        }),
      )
    ).url.replace(/\/$/, '');
  });

  after(async () => {
    await outbound.close();
    await inbound.close();
    await servers.close();
  });

  it("sends the load through the calling service's sidecar, which names it to the target", async () => {
    const r = await trellis('load', 'backend/products', '--from', 'frontend', '--control', control, '--rate', '50', '--duration', '1s', '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { url: string; via: string; completed: number; statuses: Record<string, number> };
    assert.equal(j.url, `http://127.0.0.1:${outbound.addresses.upstreams.backend!.port}/products`);
    assert.match(j.via, /frontend's sidecar frontend-0/);
    assert.equal(j.completed, 50);
    assert.deepEqual(j.statuses, { 200: 50 });
    assert.equal(seen.length, 50);
    assert.ok(
      seen.every((s) => s.source === 'frontend' && s.path === '/products'),
      JSON.stringify(seen[0]),
    );
  });
});
