// GRPCRoute end to end short of a gRPC client (HTTP/2 is another slice): a GRPCRoute
// written in YAML is loaded, validated and compiled by the control plane's code, and
// a sidecar pair routes HTTP/1.1 POSTs to /<service>/<method> with a gRPC content type
// by service, method and header, applying the route's header filters.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { compileRoutes } from '../../src/control/compile/routes.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: grpc }
spec:
  services:
    - name: web
      upstreams: [cart]
    - name: cart
      versions: [{ name: v1 }, { name: v2 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: cart }
spec:
  parentRefs: [{ name: cart }]
  rules:
    - matches:
        - method: { service: shop.Cart, method: Checkout }
          headers: [{ name: x-user, type: RegularExpression, value: ".*@mycorp.com" }]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { add: [{ name: x-canary, value: "true" }] }
      backendRefs: [{ name: cart-v2 }]
    - matches: [{ method: { type: RegularExpression, service: "shop\\\\.Cart", method: "List.*" } }]
      backendRefs: [{ name: cart-v2 }]
    - backendRefs: [{ name: cart-v1 }]
`;

let dir: string;
let apps: { server: http.Server; port: number }[] = [];
let inbounds: Sidecar[] = [];
let outbound: Sidecar;
let port: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-grpc-'));
  const file = join(dir, 'mesh.yaml');
  await writeFile(file, MESH);
  const loaded = await loadConfig([file]);
  assert.deepEqual(loaded.problems, []);
  const routes = compileRoutes('cart', loaded.config!.routes);
  const endpoints = [];
  for (const v of ['v1', 'v2']) {
    const a = await listenHttp((req, res) => {
      res.setHeader('content-type', 'application/grpc');
      res.end(JSON.stringify({ version: v, path: req.url, canary: req.headers['x-canary'] ?? null }));
    });
    apps.push(a);
    const inbound = await startInbound('cart', v, a.port);
    inbounds.push(inbound);
    endpoints.push({ id: `cart-${v}-0`, host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: v });
  }
  outbound = await startOutbound('web', {
    cart: {
      service: 'cart',
      protocol: 'http',
      routes,
      backends: {
        cart: { name: 'cart', endpoints },
        'cart-v1': { name: 'cart-v1', endpoints: [endpoints[0]!] },
        'cart-v2': { name: 'cart-v2', endpoints: [endpoints[1]!] },
      },
    },
  });
  port = outbound.addresses.upstreams.cart!.port;
});

after(async () => {
  await outbound?.close();
  for (const i of inbounds) await i.close();
  for (const a of apps) await closeServer(a.server);
  apps = [];
  inbounds = [];
  await rm(dir, { recursive: true, force: true });
});

function call(
  path: string,
  headers: Record<string, string> = {},
  contentType = 'application/grpc',
): Promise<{ status: number; body: { version: string; path: string; canary: string | null } }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': contentType, te: 'trailers', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    // A gRPC message frame: no compression, length 0.
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

test('service, method and header matches pick the backend; the rule filter applies', async () => {
  const mycorp = await call('/shop.Cart/Checkout', { 'x-user': 'ann@mycorp.com' });
  assert.deepEqual(mycorp.body, { version: 'v2', path: '/shop.Cart/Checkout', canary: 'true' });
  const other = await call('/shop.Cart/Checkout', { 'x-user': 'bob@example.com' });
  assert.deepEqual(other.body, { version: 'v1', path: '/shop.Cart/Checkout', canary: null });
});

test('a RegularExpression method match, and the catch-all rule', async () => {
  assert.equal((await call('/shop.Cart/ListItems')).body.version, 'v2');
  assert.equal((await call('/shop.Cart/Get')).body.version, 'v1');
  assert.equal((await call('/shop.Orders/ListItems')).body.version, 'v1');
});

test('a POST that is not gRPC matches no GRPCRoute rule (404 no-route: the service has no HTTPRoute)', async () => {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/shop.Cart/ListItems', method: 'POST', headers: { 'content-type': 'application/json' } },
      resolve,
    );
    req.on('error', reject);
    req.end('{}');
  });
  res.resume();
  assert.equal(res.statusCode, 404);
  assert.equal(res.headers['trellis-error'], 'no-route');
});
