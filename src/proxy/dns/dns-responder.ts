// The sidecar's DNS responder (`trellis proxy --dns-listen`): what lets an app reach a
// mesh service by its ordinary name without HTTP_PROXY. The pod's init step redirects
// the app's DNS queries (UDP and TCP port 53) here; a query for a mesh service's name
// (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<cluster domain>`) is answered with the
// loopback address where the sidecar listens for that service (loopback-addresses.ts),
// and every other query is forwarded, as it came, to the resolvers of /etc/resolv.conf.
// Istio's DNS proxy (ISTIO_META_DNS_CAPTURE) does the same, answering with the ClusterIP
// and catching the connection with a catch-all redirect; Node cannot ask the kernel for
// a redirected connection's original address, so the answer is an address the sidecar
// listens on itself.
//
// Every packet is hostile until parsed: anything shorter than a header, larger than the
// limit, or a response is dropped; a header we can read but a query we cannot is answered
// FORMERR (NOTIMP for an opcode other than QUERY); a forward that times out, or that finds
// the in-flight table full, is answered SERVFAIL. Each outcome is counted
// (trellis_dns_queries_total{result,reason}, labels from fixed lists only). Memory is
// bounded by the in-flight table, the TCP connection cap and the largest message.
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as DnsPacket from 'dns-packet';
import type { HostPort } from '../../api/protocol.js';
import { Counter, Gauge, type Registry } from '../../telemetry/prom-client-parts.js';

// dns-packet is CommonJS, taken with require: an ES import of a CommonJS package makes
// Node 20 start its CommonJS export lexer (a WebAssembly module) in the process, about
// 2-5 MB of a sidecar's resident memory (test/proxy/sidecar-import-graph.test.ts).
const dnsPacket = createRequire(import.meta.url)('dns-packet') as typeof DnsPacket;

/** How many UDP ports start() draws, with port 0 asked for, before giving up on one whose number is free for TCP too. */
const SAME_PORT_TRIES = 20;

/** Every limit of the responder; each can be set (SidecarOptions.dnsLimits). */
export interface DnsLimits {
  /** Forwarded (and mesh-pending) queries at once; more are answered SERVFAIL. */
  readonly maxInFlight: number;
  /** How long a forwarded query waits for the upstream resolver before SERVFAIL. */
  readonly forwardTimeoutMs: number;
  /** The largest query taken (over UDP or TCP): a query is one question, well under this. */
  readonly maxQueryBytes: number;
  /** The largest reply relayed from upstream over TCP. */
  readonly maxReplyBytes: number;
  /** TTL of a mesh answer: short, so an app asks again soon after a service is gone. */
  readonly ttlSeconds: number;
  /** Open TCP client connections at once; more are closed at accept. */
  readonly maxTcpConnections: number;
  /** A TCP client connection idle this long is closed. */
  readonly tcpIdleMs: number;
}

export const DEFAULT_DNS_LIMITS: DnsLimits = {
  maxInFlight: 1024,
  // glibc's default per-try timeout is 5 s; answering SERVFAIL before it lets the client retry.
  forwardTimeoutMs: 4000,
  // RFC 8020-era clients send EDNS queries well under 512 bytes; 1232 is the DNS flag day 2020 payload size.
  maxQueryBytes: 1232,
  maxReplyBytes: 65535,
  ttlSeconds: 5,
  maxTcpConnections: 64,
  tcpIdleMs: 10_000,
};

/** What the responder asks the sidecar: the address of a mesh name (lower case, no trailing dot), or undefined to forward it. */
export type MeshResolver = (name: string) => string | undefined | Promise<string | undefined>;

export interface DnsResponderOptions {
  readonly listen: HostPort;
  readonly resolveMesh: MeshResolver;
  /** Where other names are sent (the resolv.conf name servers); empty: they are answered SERVFAIL. */
  readonly upstreams: readonly HostPort[];
  readonly registry: Registry;
  readonly limits?: Partial<DnsLimits>;
  readonly log: (line: string) => void;
}

/** The outcome of one query, the metric's `result` label. */
type Result = 'mesh' | 'forwarded' | 'formerr' | 'notimp' | 'servfail' | 'dropped';

const HEADER_BYTES = 12;
/** Answers a TCP client may leave unread before its connection is closed. */
const TCP_UNREAD_BYTES = 256 * 1024;
const RCODE = { FORMERR: 1, SERVFAIL: 2, NOTIMP: 4 } as const;

interface Pending {
  readonly id: number;
  readonly upstream: HostPort;
  readonly reply: (b: Buffer) => void;
  readonly query: Buffer;
  readonly timer: NodeJS.Timeout;
}

export class DnsResponder {
  readonly #o: DnsResponderOptions;
  readonly #limits: DnsLimits;
  readonly #queries: Counter;
  readonly #inFlightGauge: Gauge;
  /** Forwarded UDP queries by the id they were sent upstream with. */
  readonly #pending = new Map<number, Pending>();
  /** Queries being worked on (forwarded over UDP or TCP, or waiting for a mesh listener): bounded by maxInFlight. */
  #inFlight = 0;
  #udp: dgram.Socket | undefined;
  #tcp: net.Server | undefined;
  readonly #tcpClients = new Set<net.Socket>();
  /** The sockets queries are forwarded from, one per address family, opened on first use. */
  readonly #out = new Map<4 | 6, dgram.Socket>();
  #next = 0;
  #closed = false;
  address: HostPort | undefined;

  constructor(options: DnsResponderOptions) {
    this.#o = options;
    this.#limits = { ...DEFAULT_DNS_LIMITS, ...options.limits };
    this.#queries = new Counter({
      name: 'trellis_dns_queries_total',
      help: 'DNS queries the sidecar took, by result (mesh: answered with a mesh address; forwarded; formerr, notimp, servfail: answered so; dropped: not answered) and reason.',
      labelNames: ['result', 'reason'],
      registers: [options.registry],
    });
    this.#inFlightGauge = new Gauge({
      name: 'trellis_dns_in_flight',
      help: 'DNS queries being forwarded or answered now.',
      registers: [options.registry],
      collect: () => this.#inFlightGauge.set(this.#inFlight),
    });
  }

  /**
   * Listens on UDP and TCP at the same address (the TCP port is the UDP one, when 0 was
   * asked for). A free UDP port's number may be in use for TCP (any process's outgoing
   * connection takes its local port from the same range), so with port 0 another UDP
   * port is drawn until both bind, at most {@link SAME_PORT_TRIES} times.
   */
  async start(): Promise<HostPort> {
    const at = this.#o.listen;
    for (let attempt = 1; ; attempt++) {
      const udp = dgram.createSocket({ type: net.isIPv6(at.host) ? 'udp6' : 'udp4' });
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(at.port, at.host, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      const port = udp.address().port;
      const tcp = net.createServer((socket) => this.#onTcp(socket));
      const listened = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        tcp.once('error', resolve);
        tcp.listen(port, at.host, () => {
          tcp.off('error', resolve);
          resolve(undefined);
        });
      });
      if (listened !== undefined) {
        udp.close();
        if (at.port !== 0 || listened.code !== 'EADDRINUSE' || attempt >= SAME_PORT_TRIES) throw listened;
        continue;
      }
      this.#udp = udp;
      udp.on('message', (msg, rinfo) => this.#onMessage(msg, (b) => this.#sendUdp(udp, b, rinfo.port, rinfo.address), 'udp'));
      // A send to a client that has gone (ICMP unreachable) surfaces here: never fatal.
      udp.on('error', (err) => this.#o.log(`dns: udp socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
      this.#tcp = tcp;
      tcp.maxConnections = this.#limits.maxTcpConnections;
      tcp.on('drop', () => this.#count('dropped', 'tcp_connections'));
      tcp.on('error', (err: NodeJS.ErrnoException) => this.#o.log(`dns: tcp listener error: ${err.code ?? err.message}`));
      this.address = { host: at.host, port };
      return this.address;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    for (const s of this.#tcpClients) s.destroy();
    for (const s of this.#out.values()) s.close();
    this.#out.clear();
    await Promise.all([
      new Promise<void>((resolve) => (this.#udp ? this.#udp.close(() => resolve()) : resolve())),
      new Promise<void>((resolve) => (this.#tcp ? this.#tcp.close(() => resolve()) : resolve())),
    ]);
  }

  /** Queries being worked on now (tests, and the gauge). */
  get inFlight(): number {
    return this.#inFlight;
  }

  #count(result: Result, reason: string): void {
    this.#queries.labels(result, reason).inc();
  }

  #sendUdp(udp: dgram.Socket, b: Buffer, port: number, address: string): void {
    if (this.#closed) return;
    udp.send(b, port, address, (err) => {
      if (err) this.#count('dropped', 'send_failed');
    });
  }

  /**
   * One query from a client, over UDP or TCP: answered through `reply` (at most once), or
   * dropped. Never throws: a bug in handling one query costs that query, not the process.
   */
  #onMessage(msg: Buffer, reply: (b: Buffer) => void, via: 'udp' | 'tcp'): void {
    this.#safely(() => this.#handle(msg, reply, via));
  }

  /** Runs `fn`, which handles one query (in an event, a timer or a promise callback): what it throws is counted, never rethrown. */
  #safely(fn: () => void): void {
    try {
      fn();
    } catch {
      this.#count('dropped', 'internal');
    }
  }

  #handle(msg: Buffer, reply: (b: Buffer) => void, via: 'udp' | 'tcp'): void {
    if (msg.length < HEADER_BYTES) return this.#count('dropped', 'short');
    if (msg.length > this.#limits.maxQueryBytes) return this.#count('dropped', 'too_large');
    const flags = msg.readUInt16BE(2);
    // A response sent to us is never answered: two responders must not answer each other forever.
    if ((flags & 0x8000) !== 0) return this.#count('dropped', 'response');
    const opcode = (flags >> 11) & 0xf;
    if (opcode !== 0) {
      reply(headerOnly(msg, RCODE.NOTIMP));
      return this.#count('notimp', 'opcode');
    }
    // One question, no answers or authority, at most an OPT and a TSIG: anything else is no
    // query a stub resolver sends, and is refused before the parser walks it.
    if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0 || msg.readUInt16BE(10) > 2) {
      reply(headerOnly(msg, RCODE.FORMERR));
      return this.#count('formerr', 'counts');
    }
    let question: DnsPacket.Question;
    try {
      const q = dnsPacket.decode(msg).questions?.[0];
      if (q === undefined) throw new Error('no question');
      question = q;
    } catch {
      reply(headerOnly(msg, RCODE.FORMERR));
      return this.#count('formerr', 'malformed');
    }
    const name = question.name.toLowerCase().replace(/\.$/, '');
    const mesh = question.class === 'IN' ? this.#o.resolveMesh(name) : undefined;
    // A mesh name already open costs no upstream and no table entry: answered even under a flood.
    if (typeof mesh === 'string') return this.#answer(msg, question, mesh, reply);
    if (this.#inFlight >= this.#limits.maxInFlight) {
      reply(withRcode(msg, question, RCODE.SERVFAIL));
      return this.#count('servfail', 'in_flight_full');
    }
    if (mesh === undefined) return this.#forward(msg, question, reply, via);
    // A mesh name whose listeners are being opened: held (counted in flight) until they are.
    this.#inFlight++;
    mesh.then(
      (address) =>
        this.#safely(() => {
          this.#inFlight--;
          if (this.#closed) return;
          if (address === undefined) this.#forward(msg, question, reply, via);
          else this.#answer(msg, question, address, reply);
        }),
      () =>
        this.#safely(() => {
          this.#inFlight--;
          reply(withRcode(msg, question, RCODE.SERVFAIL));
          this.#count('servfail', 'mesh_listener');
        }),
    );
  }

  /** A mesh name's answer: its A record; for AAAA and every other type, no records (NOERROR), so clients ask for A. */
  #answer(msg: Buffer, question: DnsPacket.Question, address: string, reply: (b: Buffer) => void): void {
    const rd = msg.readUInt16BE(2) & dnsPacket.RECURSION_DESIRED;
    const answers: DnsPacket.Answer[] =
      question.type === 'A' ? [{ type: 'A', class: 'IN', name: question.name, ttl: this.#limits.ttlSeconds, data: address }] : [];
    reply(
      dnsPacket.encode({
        type: 'response',
        id: msg.readUInt16BE(0),
        flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | rd,
        questions: [question],
        answers,
      }),
    );
    this.#count('mesh', question.type === 'A' ? 'a' : 'no_records');
  }

  #forward(msg: Buffer, question: DnsPacket.Question, reply: (b: Buffer) => void, via: 'udp' | 'tcp'): void {
    const upstreams = this.#o.upstreams;
    if (upstreams.length === 0) {
      reply(withRcode(msg, question, RCODE.SERVFAIL));
      return this.#count('servfail', 'no_upstream');
    }
    // Round robin over the name servers: one that is down costs a share of queries one
    // timeout each, and the client's retry lands on the next.
    const upstream = upstreams[this.#next++ % upstreams.length] as HostPort;
    if (this.#next > 1e9) this.#next = 0;
    if (via === 'tcp') this.#forwardTcp(msg, question, upstream, reply);
    else this.#forwardUdp(msg, question, upstream, reply);
  }

  #forwardUdp(msg: Buffer, question: DnsPacket.Question, upstream: HostPort, reply: (b: Buffer) => void): void {
    // A fresh id per forward: clients' ids may collide, and a guessable one makes spoofing easy.
    let id = randomInt(0, 0x10000);
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    const query = Buffer.from(msg);
    const originalId = msg.readUInt16BE(0);
    query.writeUInt16BE(id, 0);
    const timer = setTimeout(
      () =>
        this.#safely(() => {
          if (this.#pending.get(id) !== entry) return;
          this.#pending.delete(id);
          this.#inFlight--;
          this.#count('servfail', 'upstream_timeout');
          reply(withRcode(msg, question, RCODE.SERVFAIL));
        }),
      this.#limits.forwardTimeoutMs,
    );
    const entry: Pending = {
      id: originalId,
      upstream,
      query: msg,
      timer,
      reply: (answer) => {
        answer.writeUInt16BE(originalId, 0);
        reply(answer);
      },
    };
    this.#pending.set(id, entry);
    this.#inFlight++;
    const socket = this.#outSocket(net.isIPv6(upstream.host) ? 6 : 4);
    socket.send(query, upstream.port, upstream.host, (err) =>
      this.#safely(() => {
        if (!err || this.#pending.get(id) !== entry) return;
        clearTimeout(timer);
        this.#pending.delete(id);
        this.#inFlight--;
        this.#count('servfail', 'upstream_send');
        reply(withRcode(msg, question, RCODE.SERVFAIL));
      }),
    );
  }

  #outSocket(family: 4 | 6): dgram.Socket {
    let s = this.#out.get(family);
    if (s !== undefined) return s;
    s = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    s.on('message', (answer, rinfo) => this.#safely(() => this.#onUpstreamReply(answer, rinfo)));
    s.on('error', (err) => this.#o.log(`dns: forwarding socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    this.#out.set(family, s);
    return s;
  }

  /** A reply from upstream: relayed to the client that asked, when it answers a query we sent, from where we sent it. */
  #onUpstreamReply(answer: Buffer, rinfo: dgram.RemoteInfo): void {
    if (answer.length < HEADER_BYTES) return;
    const id = answer.readUInt16BE(0);
    const p = this.#pending.get(id);
    if (p === undefined || rinfo.address !== p.upstream.host || rinfo.port !== p.upstream.port) {
      this.#count('dropped', 'unexpected_reply');
      return;
    }
    // The question must be the one asked (bytes 12.. up to the question's end match the query's).
    if ((answer.readUInt16BE(2) & 0x8000) === 0 || !sameQuestion(p.query, answer)) {
      this.#count('dropped', 'unexpected_reply');
      return;
    }
    clearTimeout(p.timer);
    this.#pending.delete(id);
    this.#inFlight--;
    p.reply(Buffer.from(answer));
    this.#count('forwarded', 'udp');
  }

  /** A query that came over TCP goes upstream over TCP: its answer may be larger than UDP carries. */
  #forwardTcp(msg: Buffer, question: DnsPacket.Question, upstream: HostPort, reply: (b: Buffer) => void): void {
    this.#inFlight++;
    let done = false;
    const finish = (answer: Buffer | undefined, reason: string): void =>
      this.#safely(() => {
        if (done) return;
        done = true;
        this.#inFlight--;
        clearTimeout(timer);
        socket.destroy();
        if (answer !== undefined && answer.length >= HEADER_BYTES && answer.readUInt16BE(0) === msg.readUInt16BE(0) && sameQuestion(msg, answer)) {
          reply(answer);
          this.#count('forwarded', 'tcp');
        } else {
          this.#count('servfail', reason);
          reply(withRcode(msg, question, RCODE.SERVFAIL));
        }
      });
    const timer = setTimeout(() => finish(undefined, 'upstream_timeout'), this.#limits.forwardTimeoutMs);
    const socket = net.connect(upstream.port, upstream.host);
    socket.on('error', () => finish(undefined, 'upstream_error'));
    socket.on('close', () => finish(undefined, 'upstream_error'));
    socket.write(frame(msg));
    readFrames(
      socket,
      this.#limits.maxReplyBytes,
      (answer) => finish(answer, 'bad_reply'),
      () => finish(undefined, 'bad_reply'),
    );
  }

  #onTcp(socket: net.Socket): void {
    this.#tcpClients.add(socket);
    socket.once('close', () => this.#tcpClients.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(this.#limits.tcpIdleMs, () => socket.destroy());
    const reply = (b: Buffer): void => {
      if (socket.destroyed) return;
      // A client that sends queries and reads no answers is not buffered for without end.
      if (socket.writableLength > TCP_UNREAD_BYTES) {
        this.#count('dropped', 'tcp_unread');
        socket.destroy();
        return;
      }
      socket.write(frame(b));
    };
    readFrames(
      socket,
      this.#limits.maxQueryBytes,
      (msg) => this.#onMessage(msg, reply, 'tcp'),
      () => {
        this.#count('dropped', 'too_large');
        socket.destroy();
      },
    );
  }
}

/** A two-byte length and the message, as DNS over TCP sends it (RFC 1035 4.2.2). */
function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length, 0);
  return Buffer.concat([len, msg]);
}

/** Length-prefixed messages from a stream, each to `onMessage`; one longer than `max` calls `tooLarge` and stops reading. */
function readFrames(socket: net.Socket, max: number, onMessage: (m: Buffer) => void, tooLarge: () => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length >= 2) {
      const len = buffered.readUInt16BE(0);
      if (len > max) {
        buffered = Buffer.alloc(0);
        socket.removeAllListeners('data');
        tooLarge();
        return;
      }
      if (buffered.length < 2 + len) break;
      const msg = buffered.subarray(2, 2 + len);
      buffered = buffered.subarray(2 + len);
      onMessage(Buffer.from(msg));
    }
  });
}

/** A reply with only the query's header: its id, opcode and RD, QR set, no records. What a query we cannot parse gets. */
function headerOnly(msg: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt16BE(msg.readUInt16BE(0), 0);
  const flags = msg.readUInt16BE(2);
  out.writeUInt16BE(0x8000 | (flags & 0x7900) | dnsPacket.RECURSION_AVAILABLE | rcode, 2);
  return out;
}

/** A reply carrying the question and an error code (SERVFAIL): resolvers match replies on the question. */
function withRcode(msg: Buffer, question: DnsPacket.Question, rcode: number): Buffer {
  const rd = msg.readUInt16BE(2) & dnsPacket.RECURSION_DESIRED;
  const out = dnsPacket.encode({ type: 'response', id: msg.readUInt16BE(0), flags: rd | dnsPacket.RECURSION_AVAILABLE, questions: [question] });
  out.writeUInt16BE(out.readUInt16BE(2) | rcode, 2);
  return out;
}

/** Whether `answer` carries the same question section as `query` (compared as bytes, case-insensitively, as resolvers do). */
function sameQuestion(query: Buffer, answer: Buffer): boolean {
  if (answer.length < HEADER_BYTES || answer.readUInt16BE(4) !== 1) return false;
  // The query's question runs from byte 12 to the end of its name plus 4 (type, class); it
  // was parsed already, so its name is plain labels (no pointer as the first name in a packet).
  let i = HEADER_BYTES;
  while (i < query.length && query[i] !== 0) i += (query[i] as number) + 1;
  const end = i + 5;
  if (end > query.length || end > answer.length) return false;
  return query.subarray(HEADER_BYTES, end).toString('latin1').toLowerCase() === answer.subarray(HEADER_BYTES, end).toString('latin1').toLowerCase();
}
