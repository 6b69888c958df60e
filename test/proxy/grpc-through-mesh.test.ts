// gRPC with @grpc/grpc-js through a sidecar pair (client → outbound → inbound → server,
// HTTP/2 all the way): unary, server-streaming and bidi-streaming calls, metadata and
// trailers, an error status passing through (and counted as a failure in /metrics),
// deadlines and cancellation reaching the server, a GRPCRoute sending calls to two
// backends by method, and the proxy's own errors answered as gRPC statuses.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadConfig } from '../../src/config/load.js';
import { compileRoutes } from '../../src/control/compile/routes.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { startInbound, startOutbound } from '../helpers/proxy-pair.js';

// Messages are JSON in a Buffer: no .proto needed.
const serialize = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const deserialize = (b: Buffer): unknown => JSON.parse(b.toString());
const method = (name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<unknown, unknown> => ({
  path: `/shop.Cart/${name}`,
  requestStream,
  responseStream,
  requestSerialize: serialize,
  requestDeserialize: deserialize,
  responseSerialize: serialize,
  responseDeserialize: deserialize,
});
const CART = {
  Get: method('Get', false, false),
  List: method('List', false, true),
  Chat: method('Chat', true, true),
  Fail: method('Fail', false, false),
  Slow: method('Slow', false, false),
} satisfies grpc.ServiceDefinition;
const CartClient = grpc.makeGenericClientConstructor(CART, 'Cart');
type Client = InstanceType<typeof CartClient>;

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
    - matches: [{ method: { service: shop.Cart, method: List } }]
      backendRefs: [{ name: cart-v2 }]
    - matches: [{ method: { service: shop.Cart } }]
      backendRefs: [{ name: cart-v1 }]
`;

let dir: string;
const servers: grpc.Server[] = [];
const inbounds: Sidecar[] = [];
let outbound: Sidecar;
let client: Client;
/** Calls the servers saw cancelled, by method. */
const cancelled: Record<string, (() => void)[]> = { Slow: [], List: [] };

function waitCancelled(name: 'Slow' | 'List'): Promise<void> {
  return new Promise((resolve) => cancelled[name]!.push(resolve));
}

async function startServer(version: string): Promise<number> {
  const server = new grpc.Server();
  server.addService(CART, {
    Get(call: grpc.ServerUnaryCall<{ id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      const md = new grpc.Metadata();
      md.set('x-served-by', version);
      call.sendMetadata(md);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', `done-${call.request.id}`);
      cb(null, { id: call.request.id, version, user: call.metadata.get('x-user')[0] ?? null, source: call.metadata.get('trellis-source')[0] ?? null }, trailer);
    },
    List(call: grpc.ServerWritableStream<{ n: number }, unknown>) {
      call.on('cancelled', () => {
        for (const r of cancelled.List!.splice(0)) r();
      });
      const n = call.request.n;
      // n < 0: stream until cancelled.
      let i = 0;
      const next = (): void => {
        if (call.cancelled) return;
        if (n >= 0 && i >= n) return void call.end();
        call.write({ i: i++, version });
        setTimeout(next, n >= 0 ? 0 : 10); // the app's pace of messages, not a wait
      };
      next();
    },
    Chat(call: grpc.ServerDuplexStream<{ text: string }, unknown>) {
      call.on('data', (m: { text: string }) => call.write({ echo: m.text.toUpperCase(), version }));
      call.on('end', () => call.end());
    },
    Fail(_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
      const md = new grpc.Metadata();
      md.set('x-why', 'out-of-stock');
      cb({ code: grpc.status.NOT_FOUND, details: 'no such item', metadata: md });
    },
    Slow(call: grpc.ServerUnaryCall<unknown, unknown>) {
      // Never answers: the caller's deadline or cancel must reach here.
      call.on('cancelled', () => {
        for (const r of cancelled.Slow!.splice(0)) r();
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  servers.push(server);
  return port;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-grpc-mesh-'));
  const file = join(dir, 'mesh.yaml');
  await writeFile(file, MESH);
  const loaded = await loadConfig([file]);
  assert.deepEqual(loaded.problems, []);
  const endpoints = [];
  for (const v of ['v1', 'v2']) {
    const inbound = await startInbound('cart', v, await startServer(v));
    inbounds.push(inbound);
    endpoints.push({ id: `cart-${v}-0`, host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: v });
  }
  outbound = await startOutbound('web', {
    cart: {
      service: 'cart',
      protocol: 'http',
      routes: compileRoutes('cart', loaded.config!.routes),
      backends: {
        cart: { name: 'cart', endpoints },
        'cart-v1': { name: 'cart-v1', endpoints: [endpoints[0]!] },
        'cart-v2': { name: 'cart-v2', endpoints: [endpoints[1]!] },
      },
    },
  });
  client = new CartClient(`127.0.0.1:${outbound.addresses.upstreams.cart!.port}`, grpc.credentials.createInsecure());
});

after(async () => {
  client?.close();
  await outbound?.close();
  for (const i of inbounds) await i.close();
  for (const s of servers) s.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

interface UnaryResult {
  error: grpc.ServiceError | null;
  value: unknown;
  metadata: grpc.Metadata | undefined;
  status: grpc.StatusObject | undefined;
}

function unary(c: Client, name: string, req: unknown, md = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let metadata: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    let error: grpc.ServiceError | null = null;
    let value: unknown;
    let pending = 2;
    const done = (): void => {
      if (--pending === 0) resolve({ error, value, metadata, status });
    };
    const call = (c as unknown as Record<string, (...args: unknown[]) => grpc.ClientUnaryCall>)[name]!.call(
      c,
      req,
      md,
      options,
      (err: grpc.ServiceError | null, v: unknown) => {
        error = err;
        value = v;
        done();
      },
    ) as grpc.ClientUnaryCall;
    call.on('metadata', (m: grpc.Metadata) => {
      metadata = m;
    });
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      done();
    });
  });
}

test('a unary call passes through with its metadata, response headers and trailers', async () => {
  const md = new grpc.Metadata();
  md.set('x-user', 'ann@example.com');
  const r = await unary(client, 'Get', { id: 'a1' }, md);
  assert.equal(r.error, null);
  assert.deepEqual(r.value, { id: 'a1', version: 'v1', user: 'ann@example.com', source: 'web' });
  assert.deepEqual(r.metadata?.get('x-served-by'), ['v1']);
  assert.equal(r.status?.code, grpc.status.OK);
  assert.deepEqual(r.status?.metadata.get('x-trailer'), ['done-a1']);
});

test('a server-streaming call delivers every message, in order (and the GRPCRoute sends List to v2)', async () => {
  const call = client.List({ n: 50 }) as unknown as grpc.ClientReadableStream<{ i: number; version: string }>;
  const got: { i: number; version: string }[] = [];
  for await (const m of call) got.push(m as { i: number; version: string });
  assert.deepEqual(
    got.map((m) => m.i),
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.ok(got.every((m) => m.version === 'v2'));
});

test('a bidi-streaming call: messages both ways on one stream', async () => {
  const call = client.Chat() as unknown as grpc.ClientDuplexStream<{ text: string }, { echo: string; version: string }>;
  const got: string[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    call.on('data', (m: { echo: string }) => {
      got.push(m.echo);
      if (got.length < 3) call.write({ text: `msg${got.length}` });
      else call.end();
    });
    call.on('end', resolve);
    call.on('error', reject);
  });
  call.write({ text: 'msg0' });
  await ended;
  assert.deepEqual(got, ['MSG0', 'MSG1', 'MSG2']);
});

test('GRPCRoute: calls go to the backend their method matches', async () => {
  const get = await unary(client, 'Get', { id: 'b' });
  assert.equal((get.value as { version: string }).version, 'v1');
  const call = client.List({ n: 1 }) as unknown as grpc.ClientReadableStream<{ version: string }>;
  for await (const m of call) assert.equal((m as { version: string }).version, 'v2');
});

test('a gRPC error status passes through with its message and trailers, and counts as a gRPC error in /metrics', async () => {
  const r = await unary(client, 'Fail', {});
  assert.equal(r.error?.code, grpc.status.NOT_FOUND);
  assert.equal(r.error?.details, 'no such item');
  assert.deepEqual(r.status?.metadata.get('x-why'), ['out-of-stock']);
  const text = await outbound.metrics.text();
  assert.match(
    text,
    /trellis_http_requests_total\{direction="outbound",source="web",destination="cart",destination_version="v1",route="[^"]*",status="200",grpc_status="5",[^}]*\} 1/,
  );
  const inText = await inbounds[0]!.metrics.text();
  assert.match(
    inText,
    /trellis_http_requests_total\{direction="inbound",source="web",destination="cart",destination_version="v1",route="inbound",status="200",grpc_status="5",/,
  );
  assert.match(text, /status="200",grpc_status="0",/);
});

test('a deadline (grpc-timeout) reaches the server, and the caller gets DEADLINE_EXCEEDED', async () => {
  const seen = waitCancelled('Slow');
  const r = await unary(client, 'Slow', {}, new grpc.Metadata(), { deadline: Date.now() + 300 });
  assert.equal(r.error?.code, grpc.status.DEADLINE_EXCEEDED);
  await seen;
});

test('cancelling a streaming call reaches the server, and counts as CANCELLED (not a success) in /metrics', async () => {
  const seen = waitCancelled('List');
  const call = client.List({ n: -1 }) as unknown as grpc.ClientReadableStream<unknown>;
  call.on('error', () => {}); // CANCELLED, expected
  await new Promise<void>((resolve) => call.once('data', () => resolve()));
  call.cancel();
  await seen;
  // The response had started (HTTP 200) but no grpc-status came: the call did not succeed.
  assert.match(await outbound.metrics.text(), /destination_version="v2",route="[^"]*",status="200",grpc_status="1",/);
});

test('errors the proxy makes for a gRPC call are gRPC statuses, with trellis-error', async () => {
  // No rule matches a service other than shop.Cart: no route → UNIMPLEMENTED.
  const other = grpc.makeGenericClientConstructor({ Get: { ...CART.Get, path: '/shop.Orders/Get' } }, 'Orders');
  const orders = new other(`127.0.0.1:${outbound.addresses.upstreams.cart!.port}`, grpc.credentials.createInsecure());
  try {
    const r = await unary(orders as unknown as Client, 'Get', {});
    assert.equal(r.error?.code, grpc.status.UNIMPLEMENTED);
    assert.match(r.error!.details, /TRELLIS_E_NO_ROUTE/);
    assert.deepEqual(r.status?.metadata.get('trellis-error'), ['no-route']);
  } finally {
    orders.close();
  }

  // A service whose only endpoint refuses connections → UNAVAILABLE, connect-failed.
  const dead = await startOutbound('web', {
    cart: {
      service: 'cart',
      protocol: 'http',
      routes: [],
      backends: { cart: { name: 'cart', endpoints: [{ id: 'gone', host: '127.0.0.1', port: 1, version: 'v1' }] } },
    },
  });
  const c = new CartClient(`127.0.0.1:${dead.addresses.upstreams.cart!.port}`, grpc.credentials.createInsecure());
  try {
    const r = await unary(c, 'Get', { id: 'x' });
    assert.equal(r.error?.code, grpc.status.UNAVAILABLE);
    assert.deepEqual(r.status?.metadata.get('trellis-error'), ['connect-failed']);
    assert.match(await dead.metrics.text(), /status="200",grpc_status="14",/);
  } finally {
    c.close();
    await dead.close();
  }

  // No endpoints at all → UNAVAILABLE, no-endpoints.
  const empty = await startOutbound('web', { cart: { service: 'cart', protocol: 'http', routes: [], backends: { cart: { name: 'cart', endpoints: [] } } } });
  const e = new CartClient(`127.0.0.1:${empty.addresses.upstreams.cart!.port}`, grpc.credentials.createInsecure());
  try {
    const r = await unary(e, 'Get', { id: 'x' });
    assert.equal(r.error?.code, grpc.status.UNAVAILABLE);
    assert.deepEqual(r.status?.metadata.get('trellis-error'), ['no-endpoints']);
  } finally {
    e.close();
    await empty.close();
  }
});

test('a dead endpoint is skipped: the call is retried on another one', async () => {
  const good = inbounds[0]!.addresses.inbound!.port;
  const flaky = await startOutbound('web', {
    cart: {
      service: 'cart',
      protocol: 'http',
      routes: [],
      backends: {
        cart: {
          name: 'cart',
          endpoints: [
            { id: 'gone', host: '127.0.0.1', port: 1, version: 'v0' },
            { id: 'ok', host: '127.0.0.1', port: good, version: 'v1' },
          ],
        },
      },
    },
  });
  const c = new CartClient(`127.0.0.1:${flaky.addresses.upstreams.cart!.port}`, grpc.credentials.createInsecure());
  try {
    for (let i = 0; i < 4; i++) {
      const r = await unary(c, 'Get', { id: String(i) });
      assert.equal(r.error, null);
    }
  } finally {
    c.close();
    await flaky.close();
  }
});

test('a server that dies mid-stream ends the call with an error instead of leaving it hanging', async () => {
  const port = await startServer('v9');
  const dying = servers.pop()!;
  const inbound = await startInbound('cart', 'v9', port);
  const pair = await startOutbound('web', {
    cart: {
      service: 'cart',
      protocol: 'http',
      routes: [],
      backends: { cart: { name: 'cart', endpoints: [{ id: 'v9', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v9' }] } },
    },
  });
  const c = new CartClient(`127.0.0.1:${pair.addresses.upstreams.cart!.port}`, grpc.credentials.createInsecure());
  try {
    const call = c.List({ n: -1 }) as unknown as grpc.ClientReadableStream<unknown>;
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    call.on('data', () => {});
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    dying.forceShutdown();
    assert.notEqual((await status).code, grpc.status.OK);
  } finally {
    c.close();
    await pair.close();
    await inbound.close();
  }
});
