// The sidecar's DNS responder (src/proxy/dns/dns-responder.ts) on its own: mesh names
// answered from the resolver it is given, other names forwarded to a stand-in upstream
// resolver (UDP and TCP), asked through node's own dns.Resolver, and hostile packets
// (short, oversized, responses, bad opcodes and counts, compression-pointer loops,
// random bytes) each dropped or answered FORMERR/NOTIMP/SERVFAIL with a metric, never
// a crash. Timeouts run on node:test's mock timers.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import { after, afterEach, before, describe, mock, test } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { DnsResponder, type DnsLimits, type MeshResolver } from '../../src/proxy/dns/dns-responder.js';
import { Registry } from '../../src/telemetry/prom-client-parts.js';
import { eventually } from '../helpers/eventually.js';

const MESH: Record<string, string> = { backend: '127.255.1.2', 'backend.default': '127.255.1.2', 'echo.ns-a.svc.cluster.local': '127.255.3.4' };
const meshOf: MeshResolver = (name) => MESH[name];

/** A stand-in upstream resolver on UDP and TCP: answers `*.example.test` with 192.0.2.1; `silent` stops it answering. */
class UpstreamResolver {
  udp = dgram.createSocket('udp4');
  readonly tcp = net.createServer((s) => this.#onTcp(s));
  silent = false;
  received = 0;
  port = 0;
  /**
   * UDP and TCP on one port, as a name server listens: a free UDP port's number may be
   * taken for TCP (another process's connection), so a port is tried until both bind.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await new Promise<void>((r) => this.udp.bind(0, '127.0.0.1', r));
      this.port = this.udp.address().port;
      const listened = await new Promise<Error | undefined>((r) => {
        this.tcp.once('error', r);
        this.tcp.listen(this.port, '127.0.0.1', () => {
          this.tcp.removeListener('error', r);
          r(undefined);
        });
      });
      if (listened === undefined) break;
      this.udp.close();
      if (attempt >= 20) throw listened;
      this.udp = dgram.createSocket('udp4');
    }
    this.udp.on('message', (msg, r) => {
      this.received++;
      if (!this.silent) this.udp.send(this.#answer(msg), r.port, r.address);
    });
  }
  #answer(msg: Buffer): Buffer {
    const q = dnsPacket.decode(msg);
    const question = q.questions?.[0];
    const name = question?.name ?? '';
    return dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED,
      questions: q.questions ?? [],
      answers: name.endsWith('example.test') && question?.type === 'A' ? [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }] : [],
    });
  }
  #onTcp(s: net.Socket): void {
    s.on('error', () => s.destroy());
    s.once('data', (d: Buffer) => {
      this.received++;
      if (this.silent) return;
      const answer = this.#answer(d.subarray(2));
      const len = Buffer.alloc(2);
      len.writeUInt16BE(answer.length);
      s.end(Buffer.concat([len, answer]));
    });
  }
  close(): void {
    this.udp.close();
    this.tcp.close();
  }
}

async function responder(upstreamPort: number, limits: Partial<DnsLimits> = {}, resolveMesh: MeshResolver = meshOf) {
  const registry = new Registry();
  const r = new DnsResponder({
    listen: { host: '127.0.0.1', port: 0 },
    upstreams: [{ host: '127.0.0.1', port: upstreamPort }],
    registry,
    limits,
    resolveMesh,
    log: () => {},
  });
  const at = await r.start();
  return { r, at, registry };
}

/** The value of trellis_dns_queries_total{result,reason}. */
async function counted(registry: Registry, result: string, reason: string): Promise<number> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`trellis_dns_queries_total{result="${result}",reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Sends one datagram from a fresh socket; resolves with the first reply, or undefined once `until` holds and none came. */
async function exchange(port: number, packet: Buffer, until?: () => Promise<boolean>): Promise<Buffer | undefined> {
  const s = dgram.createSocket('udp4');
  try {
    const reply = new Promise<Buffer>((resolve) => s.once('message', (m) => resolve(m)));
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    s.send(packet, port, '127.0.0.1');
    if (until === undefined) return await reply;
    let got: Buffer | undefined;
    void reply.then((m) => {
      got = m;
    });
    await eventually(async () => got !== undefined || (await until()));
    return got;
  } finally {
    s.close();
  }
}

const query = (name: string, type: dnsPacket.RecordType = 'A', id = 4242): Buffer =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });

const rcodeOf = (b: Buffer): number => b.readUInt16BE(2) & 0xf;

describe('the DNS responder', () => {
  const upstream = new UpstreamResolver();
  let r: DnsResponder;
  let at: { host: string; port: number };
  let registry: Registry;
  before(async () => {
    await upstream.start();
    ({ r, at, registry } = await responder(upstream.port));
  });
  after(async () => {
    await r.close();
    upstream.close();
  });

  test("node's resolver gets a mesh name's loopback address, and other names from the upstream resolver", async () => {
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${at.port}`]);
    assert.deepEqual(await resolver.resolve4('backend'), ['127.255.1.2']);
    assert.deepEqual(await resolver.resolve4('BACKEND.default.'), ['127.255.1.2'], 'names are matched without case or a trailing dot');
    assert.deepEqual(await resolver.resolve4('echo.ns-a.svc.cluster.local'), ['127.255.3.4']);
    await assert.rejects(resolver.resolve6('backend'), { code: 'ENODATA' }, 'AAAA of a mesh name: no records, so clients use A');
    assert.deepEqual(await resolver.resolve4('www.example.test'), ['192.0.2.1'], 'forwarded');
    assert.equal(await counted(registry, 'mesh', 'a'), 3);
    assert.equal(await counted(registry, 'forwarded', 'udp'), 1);
  });

  test('the answer keeps the client id and question; the forwarded query goes out with another id', async () => {
    const seen: number[] = [];
    const spy = (m: Buffer): number => seen.push(m.readUInt16BE(0));
    upstream.udp.prependListener('message', spy);
    try {
      const reply = await exchange(at.port, query('a.example.test', 'A', 777));
      assert.ok(reply);
      const p = dnsPacket.decode(reply);
      assert.equal(p.id, 777);
      assert.equal(p.questions?.[0]?.name, 'a.example.test');
      assert.equal(seen.length, 1);
      assert.notEqual(seen[0], 777);
    } finally {
      upstream.udp.off('message', spy);
    }
  });

  test('over TCP: a mesh name is answered, and another is forwarded over TCP', async () => {
    const ask = (packet: Buffer): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const s = net.connect(at.port, '127.0.0.1');
        const len = Buffer.alloc(2);
        len.writeUInt16BE(packet.length);
        s.write(Buffer.concat([len, packet]));
        let got = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
            s.destroy();
            resolve(got.subarray(2, 2 + got.readUInt16BE(0)));
          }
        });
        s.on('error', reject);
      });
    const mesh = dnsPacket.decode(await ask(query('backend')));
    assert.deepEqual(
      mesh.answers?.map((a) => (a as dnsPacket.StringAnswer).data),
      ['127.255.1.2'],
    );
    const before = upstream.received;
    const other = dnsPacket.decode(await ask(query('t.example.test')));
    assert.deepEqual(
      other.answers?.map((a) => (a as dnsPacket.StringAnswer).data),
      ['192.0.2.1'],
    );
    assert.equal(upstream.received, before + 1);
    assert.equal(await counted(registry, 'forwarded', 'tcp'), 1);
  });

  test('hostile packets are dropped or refused, each counted, and the responder keeps answering', async () => {
    // Shorter than a header: nothing to answer with.
    assert.equal(await exchange(at.port, Buffer.from([1, 2, 3]), async () => (await counted(registry, 'dropped', 'short')) === 1), undefined);
    // A response (QR set): never answered, so two responders cannot ping-pong.
    const response = query('backend');
    response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
    assert.equal(await exchange(at.port, response, async () => (await counted(registry, 'dropped', 'response')) === 1), undefined);
    // Larger than maxQueryBytes.
    assert.equal(await exchange(at.port, Buffer.alloc(4000, 1), async () => (await counted(registry, 'dropped', 'too_large')) === 1), undefined);
    // An opcode other than QUERY (2: STATUS).
    const status = query('backend');
    status.writeUInt16BE(status.readUInt16BE(2) | (2 << 11), 2);
    assert.equal(rcodeOf((await exchange(at.port, status)) as Buffer), 4, 'NOTIMP');
    // Two questions.
    const two = dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [
        { type: 'A', name: 'backend' },
        { type: 'A', name: 'backend' },
      ],
    });
    assert.equal(rcodeOf((await exchange(at.port, two)) as Buffer), 1, 'FORMERR');
    // A name that is a compression pointer to itself (a loop), and one pointing forward.
    const header = Buffer.from([0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    const loop = Buffer.concat([header, Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
    assert.equal(rcodeOf((await exchange(at.port, loop)) as Buffer), 1, 'a pointer loop: FORMERR');
    const forward = Buffer.concat([header, Buffer.from([0xc0, 40, 0, 1, 0, 1])]);
    assert.equal(rcodeOf((await exchange(at.port, forward)) as Buffer), 1, 'a forward pointer: FORMERR');
    // A label running past the end, and a question cut short.
    assert.equal(rcodeOf((await exchange(at.port, Buffer.concat([header, Buffer.from([60, 97, 98])]))) as Buffer), 1);
    assert.equal(rcodeOf((await exchange(at.port, query('backend').subarray(0, 20))) as Buffer), 1);
    assert.ok((await counted(registry, 'formerr', 'malformed')) >= 4);
    // Still answering.
    const ok = await exchange(at.port, query('backend'));
    assert.equal(rcodeOf(ok as Buffer), 0);
    assert.equal(r.inFlight, 0);
  });

  test('over TCP, a length past the limit closes the connection; empty and short frames are dropped one by one', async () => {
    const closed = (s: net.Socket): Promise<void> => new Promise((resolve) => s.once('close', () => resolve()));
    const big = net.connect(at.port, '127.0.0.1');
    big.on('error', () => {});
    big.write(Buffer.from([0xff, 0xff, 1, 2, 3]));
    await closed(big);
    assert.equal(await counted(registry, 'dropped', 'too_large'), 2, 'with the UDP one before');
    // Zero-length and short frames are dropped one by one; the connection answers the next good one.
    const ok = net.connect(at.port, '127.0.0.1');
    const q = query('backend');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(q.length);
    const answered = new Promise<Buffer>((resolve) => ok.once('data', (d: Buffer) => resolve(d)));
    ok.write(Buffer.concat([Buffer.from([0, 0, 0, 3, 1, 2, 3]), len, q]));
    const d = await answered;
    assert.equal(dnsPacket.decode(d.subarray(2)).answers?.length, 1);
    ok.destroy();
  });

  test('random bytes, and valid queries with random bytes changed, never end the responder', async () => {
    const before = await registry.metrics();
    const base = query('backend.default');
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 600 }),
          fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((edits) => {
            const b = Buffer.from(base);
            for (const [i, v] of edits) b[i] = v;
            return new Uint8Array(b);
          }),
        ),
        async (bytes) => {
          const s = dgram.createSocket('udp4');
          await new Promise<void>((res) => s.bind(0, '127.0.0.1', res));
          s.send(Buffer.from(bytes), at.port, '127.0.0.1');
          s.close();
        },
      ),
      { numRuns: 300 },
    );
    // Whatever those were (some forwarded), the responder answers a good query, and settles.
    assert.equal(rcodeOf((await exchange(at.port, query('backend'))) as Buffer), 0);
    await eventually(() => r.inFlight === 0);
    assert.notEqual(await registry.metrics(), before);
  });
});

describe('the DNS responder under load and with a silent upstream', () => {
  afterEach(() => mock.timers.reset());

  test('a forward that gets no answer is SERVFAIL after the timeout, and the in-flight table is bounded', async () => {
    const upstream = new UpstreamResolver();
    await upstream.start();
    upstream.silent = true;
    const { r, at, registry } = await responder(upstream.port, { maxInFlight: 2, forwardTimeoutMs: 4000 });
    const clients = [dgram.createSocket('udp4'), dgram.createSocket('udp4'), dgram.createSocket('udp4')];
    try {
      mock.timers.enable({ apis: ['setTimeout'] });
      const replies = clients.map((c) => new Promise<Buffer>((res) => c.once('message', res)));
      for (const c of clients) await new Promise<void>((res) => c.bind(0, '127.0.0.1', res));
      clients[0]?.send(query('a.example.test'), at.port, '127.0.0.1');
      clients[1]?.send(query('b.example.test'), at.port, '127.0.0.1');
      await eventually(() => upstream.received === 2 && r.inFlight === 2);
      // The table is full: the third is refused at once.
      clients[2]?.send(query('c.example.test'), at.port, '127.0.0.1');
      assert.equal(rcodeOf(await (replies[2] as Promise<Buffer>)), 2, 'SERVFAIL');
      assert.equal(await counted(registry, 'servfail', 'in_flight_full'), 1);
      // A mesh name needs no upstream: answered even now.
      assert.equal(rcodeOf((await exchange(at.port, query('backend'))) as Buffer), 0);
      mock.timers.tick(4000);
      assert.equal(rcodeOf(await (replies[0] as Promise<Buffer>)), 2);
      assert.equal(rcodeOf(await (replies[1] as Promise<Buffer>)), 2);
      assert.equal(await counted(registry, 'servfail', 'upstream_timeout'), 2);
      assert.equal(r.inFlight, 0);
    } finally {
      for (const c of clients) c.close();
      mock.timers.reset();
      await r.close();
      upstream.close();
    }
  });

  test('a reply from an address the query was not sent to is dropped', async () => {
    const upstream = new UpstreamResolver();
    await upstream.start();
    upstream.silent = true;
    const { r, at, registry } = await responder(upstream.port, { forwardTimeoutMs: 60_000 });
    const seen: Buffer[] = [];
    upstream.udp.on('message', (m) => seen.push(m));
    const client = dgram.createSocket('udp4');
    const spoofer = dgram.createSocket('udp4');
    try {
      let got: Buffer | undefined;
      client.on('message', (m) => {
        got = m;
      });
      await new Promise<void>((res) => client.bind(0, '127.0.0.1', res));
      await new Promise<void>((res) => spoofer.bind(0, '127.0.0.1', res));
      client.send(query('x.example.test'), at.port, '127.0.0.1');
      const sent = await eventually(() => seen[0] ?? false);
      // A reply with the right id, from the wrong port: to the forwarding socket, which we find from the upstream's view.
      const forged = dnsPacket.encode({
        type: 'response',
        id: sent.readUInt16BE(0),
        questions: [{ type: 'A', name: 'x.example.test' }],
        answers: [{ type: 'A', name: 'x.example.test', data: '203.0.113.9' }],
      });
      const from = await new Promise<dgram.RemoteInfo>((res) => {
        upstream.udp.once('message', (_m, rinfo) => res(rinfo));
        client.send(query('y.example.test'), at.port, '127.0.0.1');
      });
      spoofer.send(forged, from.port, '127.0.0.1');
      await eventually(async () => (await counted(registry, 'dropped', 'unexpected_reply')) === 1);
      assert.equal(got, undefined, 'the forged answer never reached the client');
    } finally {
      client.close();
      spoofer.close();
      await r.close();
      upstream.close();
    }
  });

  test('a mesh resolver that throws or rejects costs one query, not the process', async () => {
    const { r, at, registry } = await responder(1, {}, (name) => {
      if (name === 'boom') throw new Error('boom');
      if (name === 'later') return Promise.reject(new Error('no'));
      return undefined;
    });
    try {
      assert.equal(await exchange(at.port, query('boom'), async () => (await counted(registry, 'dropped', 'internal')) === 1), undefined);
      assert.equal(rcodeOf((await exchange(at.port, query('later'))) as Buffer), 2);
      assert.equal(r.inFlight, 0);
    } finally {
      await r.close();
    }
  });
});

test('with port 0, the responder finds a port free for both UDP and TCP, though TCP holds many UDP-free numbers', async () => {
  // 5,000 TCP listeners on 127.0.0.1 take about 18% of the ephemeral range: a UDP port
  // drawn at random then has its number taken for TCP about one time in six, so fifty
  // responders that never drew again would all start with a chance of 0.82^50 (6e-5).
  const held: net.Server[] = [];
  const responders: DnsResponder[] = [];
  try {
    for (let i = 0; i < 5000; i++) {
      const s = net.createServer();
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
      held.push(s);
    }
    for (let i = 0; i < 50; i++) {
      const r = new DnsResponder({ listen: { host: '127.0.0.1', port: 0 }, upstreams: [], registry: new Registry(), resolveMesh: meshOf, log: () => {} });
      responders.push(r);
      const at = await r.start();
      assert.ok(at.port > 0);
    }
    // Each answers on its port over TCP as over UDP.
    const last = responders.at(-1)!.address!;
    const c = net.connect(last.port, last.host);
    await new Promise<void>((resolve, reject) => {
      c.once('connect', resolve);
      c.once('error', reject);
    });
    c.destroy();
  } finally {
    await Promise.all(responders.map((r) => r.close()));
    await Promise.all(held.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
});
