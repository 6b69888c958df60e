import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { ProxyView } from '../../src/api/admin.js';
import type { CheckResult } from '../../src/control/sources/health-checker.js';
import { connect, gateway, getJson, MESH_YAML, openStream, routesYaml, sidecar, tempDir, type FakeProxy, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { eventually } from '../helpers/eventually.js';

let plane: ControlPlane;
let files: Awaited<ReturnType<typeof tempDir>>;
const logs: string[] = [];
const open: FakeProxy[] = [];
/** Instances whose app the fake probe reports as down. */
const down = new Set<string>();

before(async () => {
  files = await tempDir();
  const mesh = await files.write('mesh.yaml', MESH_YAML);
  await files.write('routes.yaml', routesYaml('backend-v1'));
  plane = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    log: (l) => logs.push(l),
    pushDebounceMs: 5,
    health: {
      probe: async (target): Promise<CheckResult> => (down.has(String(target.port)) ? { ok: false, error: 'refused' } : { ok: true }),
    },
  });
});

after(async () => {
  for (const p of open) p.socket.destroy();
  await plane.close();
  await files.remove();
});

async function proxy(): Promise<FakeProxy> {
  const p = await connect(plane.address);
  open.push(p);
  return p;
}

async function proxies(): Promise<ProxyView[]> {
  return (await getJson<{ proxies: ProxyView[] }>(plane, '/v1/proxies')).body.proxies;
}

test('a proxy that says hello gets its snapshot, and its ACK is recorded', async () => {
  const front = await proxy();
  front.send({ type: 'hello', proxy: sidecar('frontend-a', 'frontend') });
  const msg = await front.snapshot();
  assert.equal(msg.version, 1);
  assert.equal(msg.snapshot.version, 1);
  assert.equal(msg.snapshot.service, 'frontend');
  assert.deepEqual(Object.keys(msg.snapshot.upstreams), ['backend']);
  front.send({ type: 'ack', version: 1 });
  const p = await eventually(async () => {
    const found = (await proxies()).find((x) => x.id === 'frontend-a' && x.ackedVersion === 1);
    assert.ok(found, 'ack');
    return found;
  });
  assert.deepEqual([p.kind, p.service, p.connected, p.sentVersion, p.lastNack], ['sidecar', 'frontend', true, 1, null]);
  const sent = await getJson<{ version: number }>(plane, '/v1/snapshots/frontend-a');
  assert.equal(sent.body.version, 1);
  await front.close();
});

test('a new healthy instance is pushed to the proxies that call it; a NACK keeps the acked version and shows why', async () => {
  const front = await proxy();
  front.send({ type: 'hello', proxy: sidecar('frontend-b', 'frontend') });
  const first = await front.snapshot();
  front.send({ type: 'ack', version: first.version });

  const back = await proxy();
  const info = sidecar('backend-v1-b', 'backend', 'v1');
  back.send({ type: 'hello', proxy: info });
  const own = await back.snapshot();
  assert.equal(own.snapshot.service, 'backend');
  assert.deepEqual(own.snapshot.upstreams, {});

  const pushed = await front.snapshot();
  assert.equal(pushed.version, first.version + 1);
  const endpoints = pushed.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints;
  assert.deepEqual(endpoints, [{ id: 'backend-v1-b', host: info.inbound!.host, port: info.inbound!.port, version: 'v1', app: info.app }]);

  front.send({ type: 'nack', version: pushed.version, error: 'route regex does not compile' });
  const p = await eventually(async () => {
    const found = (await proxies()).find((x) => x.id === 'frontend-b' && x.lastNack);
    assert.ok(found, 'nack');
    return found;
  });
  assert.equal(p.ackedVersion, first.version);
  assert.equal(p.sentVersion, pushed.version);
  assert.equal(p.lastNack!.version, pushed.version);
  assert.equal(p.lastNack!.error, 'route regex does not compile');
  assert.ok(p.lastNack!.at);
  assert.ok(logs.some((l) => l.startsWith('control: proxy frontend-b rejected snapshot') && l.includes('route regex')));

  // Disconnecting removes the instance, and the callers get a snapshot without it.
  await back.close();
  const without = await front.snapshot();
  assert.equal(without.version, pushed.version + 1);
  assert.deepEqual(without.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints, []);
  const instances = (await getJson<{ instances: { id: string }[] }>(plane, '/v1/instances')).body.instances;
  assert.equal(
    instances.find((i) => i.id === 'backend-v1-b'),
    undefined,
  );
  const gone = (await proxies()).find((x) => x.id === 'backend-v1-b')!;
  assert.equal(gone.connected, false);
  await front.close();
});

test('an instance whose health check fails is not pushed as an endpoint', async () => {
  const front = await proxy();
  front.send({ type: 'hello', proxy: sidecar('frontend-c', 'frontend') });
  const first = await front.snapshot();
  const info = sidecar('backend-v2-c', 'backend', 'v2');
  down.add(String(info.app!.port));
  const back = await proxy();
  back.send({ type: 'hello', proxy: info });
  await back.snapshot();
  await eventually(() => plane.model.health('backend-v2-c')?.status === 'unhealthy', { what: 'unhealthy' });
  assert.deepEqual(
    front.pending().filter((m) => m.type === 'snapshot'),
    [],
    'nothing changed for the caller',
  );
  assert.deepEqual(first.snapshot.upstreams.backend!.backends['backend-v2']!.endpoints, []);
  // A later change the caller must see (a healthy v1 instance) is a barrier on the
  // ordered stream: had the unhealthy instance caused a push, that snapshot would come
  // before this one. So the next snapshot is the barrier's, with still no v2 endpoint.
  const barrier = await proxy();
  barrier.send({ type: 'hello', proxy: sidecar('backend-v1-c', 'backend', 'v1') });
  const next = await front.snapshot();
  assert.deepEqual(
    next.snapshot.upstreams.backend!.backends['backend-v1']!.endpoints.map((e) => e.id),
    ['backend-v1-c'],
    "the barrier's snapshot is the first since",
  );
  assert.deepEqual(next.snapshot.upstreams.backend!.backends['backend-v2']!.endpoints, [], 'nothing changed for the caller');
  await barrier.close();
  await back.close();
  await front.close();
});

test('a hello for a service that is not in the mesh gets TRELLIS_E_UNKNOWN_SERVICE and the stream closes', async () => {
  const p = await proxy();
  p.send({ type: 'hello', proxy: sidecar('ghost-0', 'ghost') });
  const msg = await p.next();
  assert.equal(msg.type, 'error');
  assert.equal(msg.type === 'error' && msg.code, 'TRELLIS_E_UNKNOWN_SERVICE');
  assert.match(msg.type === 'error' ? msg.message : '', /ghost/);
  await p.closed;
  assert.equal(plane.model.instance('ghost-0'), undefined);
});

test('a gateway may use any name and gets the services its hello names', async () => {
  const p = await proxy();
  p.send({ type: 'hello', proxy: gateway('edge-in', ['frontend', 'backend']) });
  const msg = await p.snapshot();
  assert.deepEqual(Object.keys(msg.snapshot.upstreams), ['backend', 'frontend']);
  assert.equal(plane.model.instance('edge-in'), undefined, 'a gateway is not an instance');
  await p.close();
});

test('ping is answered with pong, even before hello', async () => {
  const p = await proxy();
  p.send({ type: 'ping' });
  assert.deepEqual(await p.next(), { type: 'pong' });
  await p.close();
});

test('a malformed message gets an error and the stream closes', async () => {
  const p = await proxy();
  p.sendRaw('this is not json\n');
  const msg = await p.next();
  assert.equal(msg.type === 'error' && msg.code, 'TRELLIS_E_BAD_REQUEST');
  await p.closed;
  const q = await proxy();
  q.send({ type: 'ack', version: 1 });
  const early = await q.next();
  assert.match(early.type === 'error' ? early.message : '', /before hello/);
  await q.closed;
});

test('a hello whose names could forge a log line or a label is refused; a NACK reason is logged escaped', async () => {
  for (const [id, version] of [
    ['frontend-x\ncontrol: forged', 'default'],
    ['frontend-y', 'v1"} 1\n'],
    ['f'.repeat(254), 'default'],
  ]) {
    const p = await proxy();
    p.send({ type: 'hello', proxy: sidecar(id!, 'frontend', version) });
    const msg = await p.next();
    assert.equal(msg.type === 'error' && msg.code, 'TRELLIS_E_BAD_REQUEST', JSON.stringify(msg));
    await p.closed;
  }
  const p = await proxy();
  p.send({ type: 'hello', proxy: sidecar('frontend-n', 'frontend') });
  const snap = await p.snapshot();
  p.send({ type: 'nack', version: snap.version, error: `bad\ncontrol: forged line${'x'.repeat(5000)}` });
  const nacked = await eventually(async () => {
    const found = (await proxies()).find((x) => x.id === 'frontend-n' && x.lastNack);
    assert.ok(found, 'nack');
    return found;
  });
  const error = (nacked.lastNack as { error: string }).error;
  assert.ok(!error.includes('\n') && error.startsWith('bad\\x0acontrol') && error.length <= 1025, error.slice(0, 80));
  await p.close();
});

test('a proxy that connects again with the same id replaces its old stream', async () => {
  const old = await proxy();
  old.send({ type: 'hello', proxy: sidecar('backend-v1-r', 'backend', 'v1') });
  await old.snapshot();
  const fresh = await proxy();
  fresh.send({ type: 'hello', proxy: sidecar('backend-v1-r', 'backend', 'v1') });
  await fresh.snapshot();
  // From the new registration on, every removal of the instance is recorded with whether
  // the new stream was still open, so one caused by the old stream's close counts
  // whenever it lands (one before this point leaves no instance for the check below).
  let freshOpen = true;
  const removals: string[] = [];
  const off = plane.model.on('instance-removed', (i) => {
    if (i.id === 'backend-v1-r') removals.push(freshOpen ? 'while the new stream was open' : 'after');
  });
  try {
    await old.closed;
    assert.ok(plane.model.instance('backend-v1-r'), 'the old stream closing does not remove the new registration');
    freshOpen = false;
    await fresh.close();
    await eventually(() => !plane.model.instance('backend-v1-r'), { what: 'removal' });
  } finally {
    off();
  }
  assert.deepEqual(removals, ['after'], 'the old stream closing does not remove the new registration');
});

test('a plain GET of the stream path is told to upgrade', async () => {
  const res = await getJson<{ code: string }>(plane, '/v1/stream');
  assert.equal(res.status, 426);
});

test('with a join token, a proxy without the right bearer token is refused with 401', async () => {
  const dir = await tempDir();
  const mesh = await dir.write('mesh.yaml', MESH_YAML);
  await dir.write('routes.yaml', routesYaml('backend'));
  const guarded = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [mesh],
    admin: { host: '127.0.0.1', port: 0 },
    token: 's3cret',
    log: () => {},
  });
  try {
    assert.equal(await openStream(guarded.address), 401);
    assert.equal(await openStream(guarded.address, { authorization: 'Bearer wrong' }), 401);
    const p = await connect(guarded.address, { authorization: 'Bearer s3cret' });
    p.send({ type: 'hello', proxy: sidecar('frontend-t', 'frontend') });
    assert.equal((await p.snapshot()).version, 1);
    await p.close();
  } finally {
    await guarded.close();
    await dir.remove();
  }
});
