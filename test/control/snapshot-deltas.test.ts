// Delta correctness (issue 17): a proxy that assembles every message the distributor sends
// it (one full snapshot per stream, then deltas) ends with exactly the snapshot a full
// compile of the final model gives, whatever happened on the way: instances registering,
// turning healthy or unhealthy and leaving in any order, config edits, proxies
// reconnecting or asking for a resync, and push rounds anywhere in between. Property
// based (fast-check): the distributor is the real one, on in-memory streams.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import type { ControlMessage, ProxyInfo, Snapshot } from '../../src/api/protocol.js';
import { SnapshotAssembler } from '../../src/api/snapshot-delta.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { Distributor, routableInstances } from '../../src/control/distribute/distributor.js';
import type { DebounceClock } from '../../src/control/distribute/push-debounce.js';
import { MeshModel } from '../../src/control/model.js';
import type { ControlConfig } from '../../src/control/sources/mesh-config.js';
import { config, listeners, route, service, sidecar } from './helpers.js';

/** The proxy's end of an in-memory stream: what the distributor writes is assembled here. */
class MemoryStream extends Duplex {
  readonly assembler = new SnapshotAssembler();
  readonly messages: ControlMessage[] = [];
  #partial = '';
  #upgraded = false;

  override _read(): void {}

  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let text = this.#partial + chunk.toString();
    if (!this.#upgraded) {
      // The 101 answer comes first.
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) {
        this.#partial = text;
        return cb();
      }
      this.#upgraded = true;
      text = text.slice(end + 4);
    }
    const lines = text.split('\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') this.#onMessage(JSON.parse(line) as ControlMessage);
    cb();
  }

  #onMessage(msg: ControlMessage): void {
    this.messages.push(msg);
    if (msg.type === 'snapshot') this.assembler.full(msg.snapshot, msg.resources);
    else if (msg.type === 'delta') {
      const r = this.assembler.delta(msg);
      if (r.kind === 'resync') this.send({ type: 'resync' });
      else if (r.kind === 'malformed') throw new Error(`a malformed delta: ${r.error}`);
    }
  }

  /** Proxy → control plane. */
  send(msg: object): void {
    this.push(`${JSON.stringify(msg)}\n`);
  }
}

const neverClock: DebounceClock = { now: () => 0, setTimeout: () => 0, clearTimeout: () => {} };

function upgradeRequest(): IncomingMessage {
  return { method: 'GET', url: '/v1/stream', headers: { upgrade: 'trellis-stream' }, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
}

/** An instance registered without a stream (as the model sees a sidecar's hello). */
function instance(id: string, svc: string, version = 'default') {
  const { app, inbound, admin, pid } = sidecar(id, svc, version);
  return { id, service: svc, version, ...(app ? { app } : {}), ...(inbound ? { inbound } : {}), admin, pid };
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** The configs the edits switch between: weights move, a service gains and loses upstreams, a version appears, a base changes. */
function configs(): ControlConfig[] {
  const services = (frontUpstreams: string[], backendVersions: string[], frontProtocol: 'http' | 'http1' = 'http') => [
    // The frontend's own protocol is in its base: the third config changes it.
    service('frontend', { upstreams: frontUpstreams, protocol: frontProtocol }),
    service('backend', { versions: backendVersions, upstreams: ['db'] }),
    service('db'),
    service('cache'),
  ];
  return [
    config(services(['backend'], ['v1', 'v2']), [
      route('split', 'backend', [
        {
          backendRefs: [
            { name: 'backend-v1', weight: 90 },
            { name: 'backend-v2', weight: 10 },
          ],
        },
      ]),
    ]),
    config(services(['backend', 'cache'], ['v1', 'v2']), [
      route('split', 'backend', [
        {
          backendRefs: [
            { name: 'backend-v1', weight: 40 },
            { name: 'backend-v2', weight: 60 },
          ],
        },
      ]),
    ]),
    config(services(['cache'], ['v1', 'v2', 'v3'], 'http1'), [
      route('split', 'backend', [{ backendRefs: [{ name: 'backend-v3' }] }]),
      route('c', 'cache', [{ backendRefs: [{ name: 'db' }] }]),
    ]),
  ];
}

/** The proxies whose streams are watched: each assembles what it is sent. */
const WATCHED: ProxyInfo[] = [
  sidecar('frontend-w', 'frontend', 'default', { upstreams: listeners('backend') }),
  sidecar('backend-w', 'backend', 'v1'),
  sidecar('cache-w', 'cache'),
  // No listeners of its own: its upstreams are its service's, which the config edits add and remove.
  sidecar('frontend-x', 'frontend'),
];

type Command =
  | { kind: 'add'; n: number; service: 'backend' | 'db' | 'cache'; version: 'v1' | 'v2' | 'v3' | 'default' }
  | { kind: 'health'; n: number; status: 'healthy' | 'unhealthy' }
  | { kind: 'remove'; n: number }
  | { kind: 'config'; which: number }
  | { kind: 'push' }
  | { kind: 'reconnect'; w: number }
  | { kind: 'resync'; w: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    kind: fc.constant('add' as const),
    n: fc.integer({ min: 0, max: 5 }),
    service: fc.constantFrom('backend' as const, 'db' as const, 'cache' as const),
    version: fc.constantFrom('v1' as const, 'v2' as const, 'v3' as const, 'default' as const),
  }),
  fc.record({ kind: fc.constant('health' as const), n: fc.integer({ min: 0, max: 5 }), status: fc.constantFrom('healthy' as const, 'unhealthy' as const) }),
  fc.record({ kind: fc.constant('remove' as const), n: fc.integer({ min: 0, max: 5 }) }),
  fc.record({ kind: fc.constant('config' as const), which: fc.integer({ min: 0, max: 2 }) }),
  fc.constant({ kind: 'push' as const }),
  fc.record({ kind: fc.constant('reconnect' as const), w: fc.integer({ min: 0, max: WATCHED.length - 1 }) }),
  fc.record({ kind: fc.constant('resync' as const), w: fc.integer({ min: 0, max: WATCHED.length - 1 }) }),
);

/** Until the distributor's push round in progress (sliced) has sent to every proxy. */
async function roundDone(distributor: Distributor): Promise<void> {
  for (let i = 0; i < 1000 && distributor.pushing; i++) await settle();
  assert.equal(distributor.pushing, false, 'the push round ends');
}

/** `sliceMs` 0: a push round yields after every proxy, so the commands land in the middle of rounds. */
async function run(commands: readonly Command[], sliceMs?: number): Promise<void> {
  const variants = configs();
  const model = new MeshModel();
  model.setConfig(variants[0]!, ['mesh.yaml']);
  const distributor = new Distributor({ model, clock: neverClock, ...(sliceMs !== undefined ? { sliceMs } : {}) });
  distributor.start();
  const streams: MemoryStream[] = [];
  const open = async (w: number): Promise<void> => {
    const s = new MemoryStream();
    streams[w] = s;
    distributor.handleUpgrade(upgradeRequest(), s, Buffer.alloc(0));
    s.send({ type: 'hello', proxy: WATCHED[w] });
    await settle();
  };
  try {
    for (let w = 0; w < WATCHED.length; w++) await open(w);
    for (const c of commands) {
      const id = `i-${'n' in c ? c.n : 0}`;
      if (c.kind === 'add') model.addInstance(instance(id, c.service, c.version));
      else if (c.kind === 'health') {
        const prev = model.health(id);
        if (prev) model.setHealth(id, { ...prev, status: c.status, since: 0 });
      } else if (c.kind === 'remove') model.removeInstance(id);
      else if (c.kind === 'config') model.setConfig(variants[c.which]!, ['mesh.yaml']);
      else if (c.kind === 'push') distributor.pushAll();
      else if (c.kind === 'reconnect') {
        streams[c.w]!.destroy();
        await settle();
        await open(c.w);
      } else streams[c.w]!.send({ type: 'resync' });
      await settle();
    }
    distributor.pushAll();
    await roundDone(distributor);
    await settle();
    await settle();
    for (const [w, proxy] of WATCHED.entries()) {
      const held = streams[w]!.assembler.current;
      assert.ok(held, `${proxy.id} holds a snapshot`);
      const fullProxy = model.proxy(proxy.id)?.info ?? proxy;
      const expected = compileSnapshot({ config: model.config, instances: routableInstances(model), proxy: fullProxy });
      const { version: _v, ...got } = held as Snapshot;
      assert.deepStrictEqual(got, expected, `${proxy.id}: the assembled snapshot is the full compile`);
      // Key for key, in the compiler's order.
      assert.deepEqual(Object.keys(got.upstreams), Object.keys(expected.upstreams));
      // What the control plane recorded as sent is what the proxy holds.
      assert.deepStrictEqual(model.proxy(proxy.id)?.lastSnapshot, held);
    }
  } finally {
    distributor.stop();
  }
}

test('a proxy that applies every delta ends with the snapshot a full compile gives (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(command, { maxLength: 40 }), (commands) => run(commands)),
    { numRuns: 150 },
  );
});

test('the same when push rounds are sliced to one proxy each and the changes land between the slices (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(command, { maxLength: 40 }), (commands) => run(commands, 0)),
    { numRuns: 150 },
  );
});

test('a push round yields the event loop between slices and still reaches every proxy once', async () => {
  const model = new MeshModel();
  model.setConfig(configs()[1]!, ['mesh.yaml']);
  const distributor = new Distributor({ model, clock: neverClock, sliceMs: 0 });
  distributor.start();
  try {
    const streams = WATCHED.map(() => new MemoryStream());
    for (const [w, s] of streams.entries()) {
      distributor.handleUpgrade(upgradeRequest(), s, Buffer.alloc(0));
      s.send({ type: 'hello', proxy: WATCHED[w] });
    }
    // The streams' lines are handled from the distributor's inbox, a turn of the loop later.
    for (let i = 0; i < 100 && distributor.connected < WATCHED.length; i++) await settle();
    assert.equal(distributor.connected, WATCHED.length);
    await roundDone(distributor);
    // A config edit changes the backend's routes (the frontends') and the frontend's upstreams.
    model.setConfig(configs()[0]!, ['mesh.yaml']);
    const before = streams.map((s) => s.messages.length);
    distributor.pushAll();
    assert.equal(distributor.pushing, true, 'the round is not done in one go');
    let between = false;
    setImmediate(() => (between = distributor.pushing));
    await roundDone(distributor);
    assert.equal(between, true, 'other work ran while the round was under way');
    const sent = streams.map((s, i) => s.messages.length - (before[i] ?? 0));
    assert.ok(
      sent.every((n) => n <= 1),
      `no proxy is sent twice in one round: ${sent.join(',')}`,
    );
    for (const [w, proxy] of WATCHED.entries()) {
      const { version: _v, ...got } = streams[w]!.assembler.current as Snapshot;
      assert.deepStrictEqual(got, compileSnapshot({ config: model.config, instances: routableInstances(model), proxy: model.proxy(proxy.id)?.info ?? proxy }));
    }
    // A round replaced by a newer one before it ended: the newer one covers everyone.
    model.setConfig(configs()[2]!, ['mesh.yaml']);
    distributor.pushAll();
    model.setConfig(configs()[1]!, ['mesh.yaml']);
    distributor.pushAll();
    await roundDone(distributor);
    for (const [w, proxy] of WATCHED.entries()) {
      const { version: _v, ...got } = streams[w]!.assembler.current as Snapshot;
      assert.deepStrictEqual(got, compileSnapshot({ config: model.config, instances: routableInstances(model), proxy: model.proxy(proxy.id)?.info ?? proxy }));
    }
  } finally {
    distributor.stop();
  }
});

test('a change to one service reaches only the proxies that call it, as a delta of that upstream alone', async () => {
  const model = new MeshModel();
  model.setConfig(configs()[1]!, ['mesh.yaml']);
  const distributor = new Distributor({ model, clock: neverClock });
  distributor.start();
  try {
    const streams = WATCHED.map(() => new MemoryStream());
    for (const [w, s] of streams.entries()) {
      distributor.handleUpgrade(upgradeRequest(), s, Buffer.alloc(0));
      s.send({ type: 'hello', proxy: WATCHED[w] });
    }
    await settle();
    distributor.pushAll();
    await settle();
    const before = streams.map((s) => s.messages.length);
    assert.deepEqual(
      streams.map((s) => s.messages[0]?.type),
      ['snapshot', 'snapshot', 'snapshot', 'snapshot'],
      'each stream starts with a full snapshot',
    );
    // A db instance turns healthy: only the backend calls db.
    model.addInstance(instance('db-0', 'db'));
    const h = model.health('db-0');
    assert.ok(h);
    model.setHealth('db-0', { ...h, status: 'healthy' });
    distributor.pushAll();
    await settle();
    assert.deepEqual(
      streams.map((s, i) => s.messages.length - (before[i] ?? 0)),
      [0, 1, 0, 0],
      'only the backend, which calls db, was sent something',
    );
    const delta = streams[1]!.messages.at(-1);
    assert.equal(delta?.type, 'delta');
    if (delta?.type !== 'delta') return;
    assert.deepEqual(Object.keys(delta.upstreams ?? {}), ['db'], 'the delta holds the db upstream alone');
    assert.equal(delta.base, undefined, 'and not the base, which did not change');
    assert.deepEqual(
      streams[1]!.assembler.current?.upstreams.db?.backends.db?.endpoints.map((e) => e.id),
      ['db-0'],
    );
    // A round with no change sends nothing at all.
    const count = streams.map((s) => s.messages.length);
    distributor.pushAll();
    await settle();
    assert.deepEqual(
      streams.map((s) => s.messages.length),
      count,
    );
  } finally {
    distributor.stop();
  }
});

test('a storm of hellos read at once is handled in slices: the event loop gets turns between them, every proxy its one snapshot', async () => {
  const model = new MeshModel();
  model.setConfig(configs()[1]!, ['mesh.yaml']);
  // sliceMs 0: one line a turn.
  const distributor = new Distributor({ model, clock: neverClock, sliceMs: 0 });
  distributor.start();
  try {
    const proxies = Array.from({ length: 20 }, (_, i) => sidecar(`cache-${i}`, 'cache'));
    const streams = proxies.map(() => new MemoryStream());
    for (const [i, s] of streams.entries()) {
      distributor.handleUpgrade(upgradeRequest(), s, Buffer.alloc(0));
      s.send({ type: 'hello', proxy: proxies[i] });
    }
    const seen: number[] = [];
    for (let i = 0; i < 200 && distributor.connected < proxies.length; i++) {
      await settle();
      seen.push(distributor.connected);
    }
    assert.equal(distributor.connected, proxies.length);
    assert.ok(seen.filter((n) => n > 0 && n < proxies.length).length >= 5, `other turns ran between the hellos: ${seen.join(',')}`);
    for (const s of streams)
      assert.deepEqual(
        s.messages.map((m) => m.type),
        ['snapshot'],
      );
  } finally {
    distributor.stop();
  }
});

test('a stream that queues more lines than the limit before they are handled is ended with the reason', async () => {
  const model = new MeshModel();
  model.setConfig(configs()[1]!, ['mesh.yaml']);
  const distributor = new Distributor({ model, clock: neverClock });
  distributor.start();
  try {
    const s = new MemoryStream();
    distributor.handleUpgrade(upgradeRequest(), s, Buffer.alloc(0));
    s.push(`${JSON.stringify({ type: 'hello', proxy: sidecar('cache-flood', 'cache') })}\n${'{"type":"ping"}\n'.repeat(300)}`);
    for (let i = 0; i < 20 && !s.messages.some((m) => m.type === 'error'); i++) await settle();
    const error = s.messages.find((m) => m.type === 'error');
    assert.ok(error && error.type === 'error' && /too many messages waiting/.test(error.message), JSON.stringify(s.messages.slice(0, 3)));
    assert.equal(distributor.connected, 0, 'nothing of the flood was handled');
  } finally {
    distributor.stop();
  }
});

test('a stream that queues more than 4 MiB of lines before they are handled is ended, whatever their number', async () => {
  const model = new MeshModel();
  model.setConfig(configs()[1]!, ['mesh.yaml']);
  const distributor = new Distributor({ model, clock: neverClock });
  distributor.start();
  try {
    const s = new MemoryStream();
    distributor.handleUpgrade(upgradeRequest(), s, Buffer.alloc(0));
    // Five lines just under the 1 MiB line limit, before any hello: 5 MiB held for a stranger.
    const line = `{"type":"ping","pad":"${'x'.repeat(1024 * 1024 - 64)}"}\n`;
    s.push(line.repeat(5));
    for (let i = 0; i < 20 && !s.messages.some((m) => m.type === 'error'); i++) await settle();
    const error = s.messages.find((m) => m.type === 'error');
    assert.ok(error && error.type === 'error' && /too many messages waiting/.test(error.message), JSON.stringify(s.messages.slice(0, 3)).slice(0, 300));
  } finally {
    distributor.stop();
  }
});

test('a storm of hellos and a push round share one slice a turn: together they hold the event loop no longer than one of them', async () => {
  // Every message written to a stream costs 6 ms on the distributor's clock; the slice is
  // 10 ms, so one turn may write two (the second starts at 6 ms, before the end), never more.
  let now = 0;
  const clock: DebounceClock = { now: () => now, setTimeout: () => 0, clearTimeout: () => {} };
  const model = new MeshModel();
  model.setConfig(configs()[1]!, ['mesh.yaml']);
  const distributor = new Distributor({ model, clock, sliceMs: 10 });
  distributor.start();
  let writes = 0;
  const costly = (): MemoryStream => {
    const s = new MemoryStream();
    const write = s.write.bind(s) as (...args: unknown[]) => boolean;
    s.write = ((...args: unknown[]) => {
      // A message may be written in pieces: it costs its 6 ms once, at its end.
      const chunk = args[0];
      if ((typeof chunk === 'string' || Buffer.isBuffer(chunk)) && chunk.at(-1) === (typeof chunk === 'string' ? '\n' : 10)) {
        now += 6;
        writes++;
      }
      return write(...args);
    }) as typeof s.write;
    return s;
  };
  try {
    const open = (proxy: ProxyInfo): MemoryStream => {
      const s = costly();
      distributor.handleUpgrade(upgradeRequest(), s, Buffer.alloc(0));
      s.send({ type: 'hello', proxy });
      return s;
    };
    const frontends = Array.from({ length: 20 }, (_, i) => open(sidecar(`frontend-${i}`, 'frontend')));
    for (let i = 0; i < 200 && distributor.connected < 20; i++) await settle();
    assert.equal(distributor.connected, 20);
    // A config edit drops the frontends' cache upstream: a round with a delta for each of
    // them, while 20 more proxies' hellos wait in the inbox.
    const caches = Array.from({ length: 20 }, (_, i) => open(sidecar(`cache-${i}`, 'cache')));
    model.setConfig(configs()[0]!, ['mesh.yaml']);
    writes = 0;
    distributor.pushAll();
    const perTurn = [writes];
    for (let i = 0; i < 200 && (distributor.pushing || distributor.connected < 40); i++) {
      writes = 0;
      await settle();
      perTurn.push(writes);
    }
    assert.equal(distributor.pushing, false, 'the round ended');
    assert.equal(distributor.connected, 40, 'every hello was answered');
    assert.ok(Math.max(...perTurn) <= 2, `at most two writes (one slice) a turn: ${perTurn.join(',')}`);
    for (const s of frontends) assert.equal(s.messages.at(-1)?.type, 'delta');
    for (const s of caches)
      assert.deepEqual(
        s.messages.map((m) => m.type),
        ['snapshot'],
      );
  } finally {
    distributor.stop();
  }
});
