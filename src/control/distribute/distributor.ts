// The snapshot stream. Proxies upgrade `GET /v1/stream` on the control plane's HTTP
// server (the admin API's), say hello, get a full snapshot, and from then on a delta
// whenever what they need changes; they answer each with ACK or NACK. A sidecar's
// connection is its instance's registration: when the stream closes, the instance
// leaves the model.
//
// At scale (issue 17): model changes are debounced (push-debounce.ts); each push round
// compiles every upstream once and shares it, with its JSON, among its callers
// (compiled-views.ts); a proxy is sent only the upstreams whose version moved since its
// last message, so a change to one service reaches only the proxies that call it.
import { LogLimiter } from '../../log-limiter.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, TrellisError } from '../../errors.js';
import type { ControlMessage, ProxyInfo } from '../../api/protocol.js';
import type { MeshModel } from '../model.js';
import { callerNamespace, compileSnapshot, upstreamsFor, type RoutableInstance } from '../compile/compiler.js';
import { SnapshotVersions } from './snapshot-versions.js';
import { CompiledViews, type View } from './compiled-views.js';
import { PushDebounce, type DebounceClock } from './push-debounce.js';
import type { Snapshot, SnapshotBase, UpstreamSnapshot } from '../../api/protocol.js';
import { LineReader, parseProxyMessage, writeMessage } from '../../api/wire.js';
import { verifyCredential } from '../../security/bootstrap-credential.js';
import type { ControlMetrics } from '../control-metrics.js';
import type { IdentityService } from '../ca/identity-service.js';
import { compileRateLimits } from '../compile/rate-limits.js';
import { RateQuotas, type GlobalLimit } from './rate-quotas.js';
import { REAL_TIMER_CLOCK, type TimerClock } from '../../api/timer-clock.js';
import { DEFAULT_CONTROL_SERVER_LIMITS } from '../server-limits.js';
import type { ControlConfig } from '../sources/mesh-config.js';
import type { WorkloadName } from '../../security/spiffe.js';

export const STREAM_PATH = '/v1/stream';
export const STREAM_UPGRADE = 'trellis-stream';
/** How long a push round sends before it yields the event loop (DistributorOptions.sliceMs). */
export const DEFAULT_PUSH_SLICE_MS = 10;

export interface DistributorOptions {
  model: MeshModel;
  /** When set, proxies must send `Authorization: Bearer <token>`. */
  token?: string;
  /**
   * When set, a hello must carry the proxy's bootstrap credential, minted from this
   * secret for its kind, service and id (src/security/bootstrap-credential.ts); a hello
   * without it is refused before it touches the model.
   */
  bootstrapSecret?: string;
  /**
   * Checks hellos in place of the bootstrap secret (on Kubernetes: a TokenReview of the
   * proxy's ServiceAccount token, src/control/kubernetes-control.ts). The verdict names
   * the proxy as the control plane will know it and the workload its certificates are for.
   */
  verifyHello?: VerifyHello;
  /**
   * Whether a sidecar's hello registers its instance (default true). False when a
   * discovery source reports the endpoints (Kubernetes' EndpointSlices).
   */
  registerSidecars?: boolean;
  /** Signs proxies' CSRs; absent: a CSR is answered `csr-refused`. */
  identity?: IdentityService;
  metrics?: ControlMetrics;
  log?: (line: string) => void;
  /** How long model changes must be quiet before a push (default 100 ms; push-debounce.ts). */
  debounceMs?: number;
  /** The longest a model change waits for its push while changes keep coming (default 1000 ms). */
  debounceMaxMs?: number;
  /** The clock of the debounce, of the slices and of the hello deadline (tests). */
  clock?: DebounceClock;
  /**
   * A stream whose hello is not accepted this long after its upgrade is ended with a
   * protocol error and counted (default 10 s; src/control/server-limits.ts says why):
   * a peer that upgrades and says nothing, or half a line, must not hold a stream.
   */
  helloTimeoutMs?: number;
  /** The clock of the global rate limits' quota loop (tests: the one the proxies' buckets run on); absent: the real one. */
  quotaClock?: TimerClock;
  /**
   * The distributor works (handles the streams' lines, sends a push round) for at most
   * this long in one turn of the event loop before it yields (setImmediate) and goes on
   * (default 10 ms), so a registration storm or a round to 1,000 proxies never holds
   * ACKs, health checks or the admin API for longer (issue 17). The lines and the round
   * share one slice a turn: they run in the same phase of the loop, back to back.
   */
  sliceMs?: number;
  /**
   * After this control plane starts, how long resumed proxies may wait for the
   * instances their snapshots route to (default 10 s): see {@link ProxyInfo.resumed}.
   */
  resumeWaitMs?: number;
}

/** What a {@link VerifyHello} decides. */
export type HelloVerdict =
  | { readonly ok: true; readonly proxy: ProxyInfo; readonly workload?: WorkloadName }
  /** `code`: why, when it is not the credential (default TRELLIS_E_TOKEN_REFUSED, counted as a refused credential). */
  | { readonly ok: false; readonly reason: string; readonly code?: 'TRELLIS_E_KUBERNETES_UNLISTED' };
export type VerifyHello = (proxy: ProxyInfo, credential: string | undefined) => Promise<HelloVerdict>;

/** Lines a proxy may send while its hello is being verified (it sends a CSR right after it). */
const MAX_LINES_WHILE_VERIFYING = 16;
/**
 * Lines of one stream waiting in the inbox: a proxy sends a hello, a CSR and ACKs, a
 * handful at a time; a stream that queues more than this faster than they are handled
 * is ended.
 */
const MAX_QUEUED_LINES = 256;
/**
 * Characters of one stream's lines waiting in the inbox: a line may be up to a MiB (a
 * snapshot-sized NACK), but 256 of them must not be held for a peer that has not even
 * said hello, so the lines are bounded in size as well as in number.
 */
const MAX_QUEUED_CHARS = 4 * 1024 * 1024;

interface Connection {
  readonly socket: Duplex;
  readonly reader: LineReader;
  proxy?: ProxyInfo;
  /** Set while the hello is verified: the lines that came after it, handled once it is. */
  pending?: string[];
  /** The workload its certificates name, when its hello's verdict gave one. */
  workload?: WorkloadName;
  /** A CSR of this stream is being signed. */
  certifying?: boolean;
  /** Its lines waiting in the inbox, and their characters. */
  queued: number;
  queuedChars: number;
  /** What this stream was last sent (a sidecar's): deltas are relative to it. */
  sent?: SentState;
  /** The upstreams this proxy may call, for the config they were computed from. */
  scope?: { readonly config: ControlConfig; readonly names: readonly string[] };
  /** The hello deadline's timer, until a hello is accepted or the stream closes. */
  helloTimer?: unknown;
}

/** What a sidecar's stream holds, as far as the control plane sent it. */
interface SentState {
  readonly version: number;
  readonly base: View<SnapshotBase>;
  /** Each upstream's view as last sent. */
  readonly upstreams: ReadonlyMap<string, View<UpstreamSnapshot | undefined>>;
}

/** The instances of the model as the compiler sees them (with their health status). */
export function routableInstances(model: MeshModel): RoutableInstance[] {
  const registered: RoutableInstance[] = model.instances().map((i) => ({
    id: i.id,
    service: i.service,
    version: i.version,
    ...(i.inbound ? { inbound: i.inbound } : {}),
    ...(i.app ? { app: i.app } : {}),
    ...(i.ports ? { ports: i.ports } : {}),
    status: model.health(i.id)?.status ?? 'unknown',
    ...(i.resumed ? { resumed: true } : {}),
  }));
  const discovered = model.discoveredEndpoints();
  return discovered.length === 0 ? registered : [...registered, ...discovered];
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Answers a refused upgrade as the admin API answers errors: the table's status, the error's JSON body. */
function rejectUpgrade(socket: Duplex, err: TrellisError): void {
  const body = JSON.stringify(errorBody(err));
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Whether a stream is closed or closing (failed, or its peer hung up): its lines are not handled. */
function ended(conn: Connection): boolean {
  return conn.socket.destroyed || conn.socket.writableEnded;
}

/** Hello refusals logged per minute at most (the rest are counted in one line, and every one in the metric). */
const REFUSAL_LOG_PER_MINUTE = 20;

export class Distributor {
  readonly #refusalLog: LogLimiter;
  readonly #model: MeshModel;
  readonly #token?: Buffer;
  readonly #bootstrapSecret?: string;
  readonly #verifyHello?: VerifyHello;
  readonly #registerSidecars: boolean;
  readonly #identity?: IdentityService;
  readonly #metrics?: ControlMetrics;
  readonly #log: (line: string) => void;
  readonly #debounce: PushDebounce;
  /** Gateways' snapshots are compiled whole (there are few): their versions and change detection. */
  readonly #versions = new SnapshotVersions();
  /** Each proxy's last snapshot version, across its streams (versions only grow). */
  readonly #lastVersion = new Map<string, number>();
  readonly #views = new CompiledViews();
  /** Each view's JSON as bytes, made once and shared by every stream it is written to. */
  readonly #bytes = new WeakMap<View<unknown>, Buffer>();
  /** The model changed since the views' round began. */
  #stale = true;
  readonly #connections = new Set<Connection>();
  /** The live connection of each registered proxy id. */
  readonly #byProxy = new Map<string, Connection>();
  #unsubscribe?: () => void;
  #stopped = false;
  readonly #sliceMs: number;
  readonly #now: () => number;
  readonly #timers: TimerClock;
  readonly #helloTimeoutMs: number;
  /** The push round in progress (sliced): the proxies it sends to, from #pushNext on, and the views' round it began in. */
  #pushRemaining: Connection[] = [];
  #pushNext = 0;
  #pushViewsRound = 0;
  /** Lines read from the streams, not yet handled (#drainSome); consumed from #inboxHead. */
  readonly #inbox: ({ conn: Connection; line: string } | undefined)[] = [];
  #inboxHead = 0;
  /** The next turn's slice of work (#work), when there is work left. */
  #workImmediate?: NodeJS.Immediate;
  /** Which of the two goes first in the next slice: they take turns, so neither starves the other. */
  #pushFirst = false;
  // A restarted control plane learns the mesh again as proxies reconnect one by one.
  // Proxies that resume (they serve on a snapshot from before) are sent nothing until
  // every instance their snapshots route to has registered again, or until the wait
  // is over: a snapshot compiled in between would drop endpoints that are alive.
  readonly #resumeUntil: number;
  readonly #held = new Set<Connection>();
  readonly #expected = new Set<string>();
  #resumeTimer?: NodeJS.Timeout;
  /** Quotas of the services' global rate limits (rate-quotas.ts). */
  readonly #quotas: RateQuotas;
  /** Global limits by service, for the config they were read from. */
  #globalLimits: { config: ControlConfig | undefined; byService: Map<string, readonly GlobalLimit[]> } = { config: undefined, byService: new Map() };

  constructor(opts: DistributorOptions) {
    this.#model = opts.model;
    this.#token = opts.token ? digest(opts.token) : undefined;
    this.#bootstrapSecret = opts.bootstrapSecret;
    this.#verifyHello = opts.verifyHello;
    this.#registerSidecars = opts.registerSidecars ?? true;
    this.#identity = opts.identity;
    this.#metrics = opts.metrics;
    this.#log = opts.log ?? (() => {});
    this.#refusalLog = new LogLimiter({
      perMinute: REFUSAL_LOG_PER_MINUTE,
      log: this.#log,
      dropped: (n) => `control: ${n} more hello refusals not logged in the last minute`,
    });
    this.#debounce = new PushDebounce(
      {
        ...(opts.debounceMs !== undefined ? { quietMs: opts.debounceMs } : {}),
        ...(opts.debounceMaxMs !== undefined ? { maxDelayMs: opts.debounceMaxMs } : {}),
        ...(opts.clock ? { clock: opts.clock } : {}),
      },
      () => this.pushAll(),
    );
    this.#sliceMs = Math.max(0, opts.sliceMs ?? DEFAULT_PUSH_SLICE_MS);
    const clock = opts.clock;
    this.#now = clock ? () => clock.now() : () => performance.now();
    this.#timers = clock ?? REAL_TIMER_CLOCK;
    this.#helloTimeoutMs = opts.helloTimeoutMs ?? DEFAULT_CONTROL_SERVER_LIMITS.helloTimeoutMs;
    this.#resumeUntil = Date.now() + (opts.resumeWaitMs ?? 10_000);
    this.#quotas = new RateQuotas({
      limitsOf: (service) => this.#globalLimitsOf(service),
      ...(opts.quotaClock ? { clock: opts.quotaClock } : {}),
    });
  }

  /** The global rate limits of `service` under the config in force (compiled once per config). */
  #globalLimitsOf(service: string): readonly GlobalLimit[] {
    const config = this.#model.config;
    if (this.#globalLimits.config !== config) this.#globalLimits = { config, byService: new Map() };
    let limits = this.#globalLimits.byService.get(service);
    if (limits === undefined) {
      limits = (compileRateLimits(config, service)?.limits ?? [])
        .filter((l) => l.global === true)
        .map((l) => ({ id: l.id, requestsPerSecond: (l.requests * 1000) / l.intervalMs, burst: l.burst }));
      this.#globalLimits.byService.set(service, limits);
    }
    return limits;
  }

  start(): void {
    this.#quotas.start();
    const unsubscribe = this.#model.on('change', () => this.#schedule());
    const ca = this.#identity?.ca;
    const onBundle = (trustBundle: string[]): void => {
      for (const conn of this.#byProxy.values()) writeMessage(conn.socket, { type: 'trust-bundle', trustBundle });
    };
    ca?.on('bundle', onBundle);
    this.#unsubscribe = () => {
      unsubscribe();
      ca?.off('bundle', onBundle);
    };
  }

  /** Closes every stream; proxies keep their last snapshot and reconnect later. */
  stop(): void {
    this.#stopped = true;
    this.#quotas.stop();
    this.#unsubscribe?.();
    this.#debounce.stop();
    this.#cancelRound();
    if (this.#workImmediate !== undefined) clearImmediate(this.#workImmediate);
    this.#workImmediate = undefined;
    this.#inbox.length = 0;
    this.#inboxHead = 0;
    if (this.#resumeTimer) clearTimeout(this.#resumeTimer);
    for (const conn of this.#connections) conn.socket.destroy();
    this.#connections.clear();
  }

  /** How many proxies are connected and registered. */
  get connected(): number {
    return this.#byProxy.size;
  }

  /** The `upgrade` handler of the control plane's HTTP server for `GET /v1/stream`. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {}); // a reset is handled as a close
    const path = (req.url ?? '').split('?')[0];
    if (this.#stopped) return void socket.destroy();
    if (req.method !== 'GET' || path !== STREAM_PATH || (req.headers.upgrade ?? '').toLowerCase() !== STREAM_UPGRADE) {
      return rejectUpgrade(
        socket,
        new TrellisError('TRELLIS_E_BAD_REQUEST', { reason: `the proxy stream is GET ${STREAM_PATH} with Upgrade: ${STREAM_UPGRADE}` }),
      );
    }
    if (this.#token && !this.#authorized(req.headers.authorization)) {
      this.#log(`control: stream: refused a proxy from ${req.socket.remoteAddress ?? '?'}: missing or wrong join token`);
      return rejectUpgrade(socket, new TrellisError('TRELLIS_E_UNAUTHORIZED', { reason: 'send Authorization: Bearer <token> (trellis proxy --token)' }));
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${STREAM_UPGRADE}\r\nConnection: Upgrade\r\n\r\n`);
    const raw = socket as Duplex & { setNoDelay?: (v: boolean) => void; setKeepAlive?: (on: boolean, delay: number) => void };
    raw.setNoDelay?.(true);
    raw.setKeepAlive?.(true, 10_000);
    const conn: Connection = { socket, reader: new LineReader(), queued: 0, queuedChars: 0 };
    this.#connections.add(conn);
    conn.helloTimer = this.#timers.setTimeout(() => this.#helloExpired(conn), this.#helloTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.#onData(conn, chunk));
    // The HTTP server's sockets allow half-open connections: when the proxy hangs up,
    // end our side too, or 'close' never comes and the instance would stay registered.
    socket.on('end', () => socket.end());
    socket.on('close', () => this.#onClose(conn));
    if (head.length > 0) this.#onData(conn, head);
  }

  #authorized(header: string | undefined): boolean {
    const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
    return m !== null && timingSafeEqual(digest(m[1]!.trim()), this.#token!);
  }

  #onData(conn: Connection, chunk: Buffer): void {
    let lines: string[];
    try {
      lines = conn.reader.push(chunk);
    } catch (err) {
      // A line over the reader's limit. Like the stream's other protocol errors below, the
      // proxy is sent the reason alone: the table's message for the code speaks of HTTP.
      const e = err instanceof TrellisError ? err : new TrellisError('TRELLIS_E_BAD_REQUEST', { reason: (err as Error).message });
      return this.#fail(conn, e.code, String(e.params.reason ?? e.message));
    }
    if (lines.length === 0) return;
    let chars = 0;
    for (const line of lines) chars += line.length;
    if (conn.queued + lines.length > MAX_QUEUED_LINES || conn.queuedChars + chars > MAX_QUEUED_CHARS) {
      return this.#fail(conn, 'TRELLIS_E_BAD_REQUEST', 'too many messages waiting to be handled');
    }
    conn.queued += lines.length;
    conn.queuedChars += chars;
    for (const line of lines) this.#inbox.push({ conn, line });
    this.#workSoon();
  }

  /**
   * The streams' lines are handled from one inbox, in arrival order, in slices of at most
   * `sliceMs` of the event loop (issue 17): the poll phase that reads 64 proxies' hellos
   * and CSRs at once only queues them, so a registration storm cannot hold the event loop
   * for the sum of their snapshots and signatures.
   */
  #workSoon(): void {
    if (this.#workImmediate === undefined && !this.#stopped) this.#workImmediate = setImmediate(() => this.#work());
  }

  /**
   * One turn's slice: the inbox and the push round in progress share it (they used to
   * have a slice each, and ran back to back in one phase of the loop: two slices held
   * it). They take turns going first, and at least one of them does one thing a turn,
   * however small the slice.
   */
  #work(): void {
    this.#workImmediate = undefined;
    if (this.#stopped) return;
    const until = this.#now() + this.#sliceMs;
    this.#pushFirst = !this.#pushFirst;
    if (this.#pushFirst) this.#drainSome(until, !this.#pushSome(until, true));
    else this.#pushSome(until, !this.#drainSome(until, true));
    if (this.#inboxHead < this.#inbox.length || this.pushing) this.#workSoon();
  }

  /** Handles lines from the inbox until `until` (at least one when `atLeastOne`); whether it handled any. */
  #drainSome(until: number, atLeastOne: boolean): boolean {
    const inbox = this.#inbox;
    let i = this.#inboxHead;
    const first = i;
    while (i < inbox.length && !this.#stopped) {
      if ((i > first || !atLeastOne) && this.#now() >= until) break;
      const { conn, line } = inbox[i] as { conn: Connection; line: string };
      inbox[i++] = undefined;
      conn.queued--;
      conn.queuedChars -= line.length;
      this.#handle(conn, line);
    }
    if (i >= inbox.length) {
      inbox.length = 0;
      this.#inboxHead = 0;
    } else {
      this.#inboxHead = i;
    }
    return i > first;
  }

  #handle(conn: Connection, line: string): void {
    if (ended(conn)) return;
    if (conn.pending !== undefined) {
      if (conn.pending.length >= MAX_LINES_WHILE_VERIFYING) return this.#fail(conn, 'TRELLIS_E_BAD_REQUEST', 'too many messages before the hello was answered');
      conn.pending.push(line);
      return;
    }
    this.#onLine(conn, line);
  }

  #onLine(conn: Connection, line: string): void {
    const msg = parseProxyMessage(line);
    if (typeof msg === 'string') return this.#fail(conn, 'TRELLIS_E_BAD_REQUEST', msg);
    if (msg.type === 'ping') return writeMessage(conn.socket, { type: 'pong' });
    if (msg.type === 'hello') {
      if (conn.proxy) return this.#fail(conn, 'TRELLIS_E_BAD_REQUEST', 'hello sent twice on one stream');
      if (this.#verifyHello) return void this.#verify(conn, this.#verifyHello, msg.proxy, msg.credential);
      if (!this.#credentialValid(conn, msg.proxy, msg.credential)) return;
      return this.#onHello(conn, msg.proxy);
    }
    if (!conn.proxy) return this.#fail(conn, 'TRELLIS_E_BAD_REQUEST', `${msg.type} before hello`);
    const id = conn.proxy.id;
    if (msg.type === 'csr') {
      const proxy = conn.proxy;
      // certify() answers every failure itself; anything still thrown is a bug, logged, and the stream stays.
      this.#onCsr(conn, proxy, msg.id, msg.csr).catch((err: unknown) =>
        this.#log(`control: ca: CSR of ${proxy.id} failed: ${err instanceof Error ? err.message : String(err)}`),
      );
      return;
    }
    if (msg.type === 'resync') {
      // The proxy could not follow a delta: a full snapshot, now.
      this.#push(conn, true);
    } else if (msg.type === 'rate-demand') {
      this.#quotas.report(id, msg);
    } else if (msg.type === 'ack') {
      this.#model.recordAck(id, msg.version);
    } else {
      this.#model.recordNack(id, msg.version, msg.error);
      this.#log(`control: proxy ${id} rejected snapshot v${msg.version}: ${msg.error}`);
    }
  }

  /**
   * Checks a hello's bootstrap credential (when the control plane requires them); a
   * refusal answers an error, closes the stream, counts and logs, naming the instance
   * the proxy claimed and never the credential. It runs before the hello touches the
   * model, so a wrong credential for a live instance's id leaves that instance's stream alone.
   */
  #credentialValid(conn: Connection, proxy: ProxyInfo, credential: string | undefined): boolean {
    const secret = this.#bootstrapSecret;
    if (secret === undefined) return true;
    const subject = { kind: proxy.kind, service: proxy.service, id: proxy.id };
    if (credential !== undefined && verifyCredential(secret, subject, credential)) return true;
    const reason = credential === undefined ? 'missing' : 'wrong';
    const why = credential === undefined ? 'the hello carries no bootstrap credential' : 'its bootstrap credential is not the one of this instance';
    this.#metrics?.helloRefused(reason);
    const from = (conn.socket as Duplex & { remoteAddress?: string }).remoteAddress ?? '?';
    // At most REFUSAL_LOG_PER_MINUTE lines a minute: anyone who can reach the stream can
    // send hellos, and the metric counts every one.
    this.#refusalLog.write(`control: refused ${proxy.kind} ${proxy.id} (service ${proxy.service}) from ${from}: ${why}`);
    const err = new TrellisError('TRELLIS_E_CREDENTIAL_REFUSED', { kind: proxy.kind, id: proxy.id, service: proxy.service, reason: why });
    this.#fail(conn, err.code, err.message);
    return false;
  }

  /** Runs the hello's verification; meanwhile the stream's further lines wait in `pending`. */
  async #verify(conn: Connection, verify: VerifyHello, proxy: ProxyInfo, credential: string | undefined): Promise<void> {
    conn.pending = [];
    let verdict: HelloVerdict;
    try {
      verdict = await verify(proxy, credential);
    } catch (err) {
      verdict = { ok: false, reason: `the credential could not be checked: ${err instanceof Error ? err.message : String(err)}` };
    }
    const queued = conn.pending;
    conn.pending = undefined;
    // Ended meanwhile: closed, failed, or past its hello deadline.
    if (ended(conn) || this.#stopped) return;
    if (!verdict.ok) {
      if (verdict.code === undefined) this.#metrics?.helloRefused(credential === undefined ? 'missing' : 'wrong');
      const from = (conn.socket as Duplex & { remoteAddress?: string }).remoteAddress ?? '?';
      this.#refusalLog.write(`control: refused ${proxy.kind} ${proxy.id} (service ${proxy.service}) from ${from}: ${verdict.reason}`);
      const err = new TrellisError(verdict.code ?? 'TRELLIS_E_TOKEN_REFUSED', {
        kind: proxy.kind,
        id: proxy.id,
        service: proxy.service,
        reason: verdict.reason,
      });
      return this.#fail(conn, err.code, err.message);
    }
    if (verdict.workload) conn.workload = verdict.workload;
    this.#onHello(conn, verdict.proxy);
    for (const line of queued) {
      if (ended(conn)) return;
      this.#onLine(conn, line);
    }
  }

  async #onCsr(conn: Connection, proxy: ProxyInfo, id: number, csr: string): Promise<void> {
    const identity = this.#identity;
    if (!identity) {
      const e = new TrellisError('TRELLIS_E_CA_UNAVAILABLE', { reason: 'this control plane runs without a CA' });
      return writeMessage(conn.socket, { type: 'csr-refused', id, code: e.code, message: e.message });
    }
    // One at a time per stream: signing costs the control plane CPU, and a proxy never
    // needs two certificates at once.
    if (conn.certifying) return writeMessage(conn.socket, identity.busy(proxy, id));
    conn.certifying = true;
    try {
      const answer = await identity.certify(proxy, id, csr, conn.workload);
      if (conn.proxy === proxy) writeMessage(conn.socket, answer);
    } finally {
      conn.certifying = false;
    }
  }

  #onHello(conn: Connection, proxy: ProxyInfo): void {
    if (proxy.kind === 'sidecar' && !this.#model.service(proxy.service)) {
      const files = this.#model.configState.files;
      this.#log(`control: refused proxy ${proxy.id}: service "${proxy.service}" is not in the mesh config`);
      return this.#fail(
        conn,
        'TRELLIS_E_UNKNOWN_SERVICE',
        `service "${proxy.service}" is not in the mesh config${files.length ? ` (${files[0]})` : ''}; add it to the mesh file or fix --service`,
      );
    }
    const previous = this.#byProxy.get(proxy.id);
    if (previous) {
      // The same proxy reconnected before its old stream noticed it was dead.
      this.#log(`control: proxy ${proxy.id} connected again; closing its previous stream`);
      this.#byProxy.delete(proxy.id);
      previous.proxy = undefined;
      previous.socket.destroy();
      this.#quotas.leave(proxy.id, proxy.service);
    }
    this.#clearHelloTimer(conn);
    conn.proxy = proxy;
    this.#byProxy.set(proxy.id, conn);
    this.#model.connectProxy(proxy);
    // An egress gateway reports its mTLS listener as `inbound`: sidecars reach it as an instance of its name.
    if (proxy.kind === 'sidecar' ? this.#registerSidecars : proxy.inbound !== undefined) {
      this.#model.addInstance({
        id: proxy.id,
        service: proxy.service,
        version: proxy.version,
        ...(proxy.app ? { app: proxy.app } : {}),
        ...(proxy.inbound ? { inbound: proxy.inbound } : {}),
        ...(proxy.ports ? { ports: proxy.ports.map((p) => ({ port: p.port, app: { ...p.app }, inbound: { ...p.inbound } })) } : {}),
        admin: proxy.admin,
        pid: proxy.pid,
        ...(proxy.resumed ? { resumed: true } : {}),
      });
    }
    const where = proxy.inbound ? ` inbound ${proxy.inbound.host}:${proxy.inbound.port}` : '';
    this.#log(`control: ${proxy.kind} ${proxy.id} connected (service ${proxy.service}, version ${proxy.version}${where})`);
    if (proxy.resumed && Date.now() < this.#resumeUntil) {
      this.#held.add(conn);
      for (const id of proxy.resumed.endpoints) this.#expected.add(id);
      this.#resumeTimer ??= setTimeout(() => this.#release(true), this.#resumeUntil - Date.now()).unref();
      // It serves on its last snapshot meanwhile: its global limits need their quotas now.
      this.#joinQuotas(conn, proxy);
      this.#release(false);
      return;
    }
    this.#push(conn, true);
    this.#joinQuotas(conn, proxy);
    this.#release(false); // the instance some held proxies waited for may be this one
  }

  /** A sidecar takes part in its service's global rate limits (after its snapshot, which holds them). */
  #joinQuotas(conn: Connection, proxy: ProxyInfo): void {
    if (proxy.kind !== 'sidecar') return;
    this.#quotas.join({ id: proxy.id, service: proxy.service, send: (msg) => writeMessage(conn.socket, msg) });
  }

  /** Sends the held proxies their snapshots once every expected instance is back (or `force`). */
  #release(force: boolean): void {
    if (this.#held.size === 0) return;
    if (!force && [...this.#expected].some((id) => !this.#model.hasEndpoint(id))) return;
    const held = [...this.#held];
    this.#held.clear();
    this.#expected.clear();
    if (force) this.#log(`control: sending resumed proxies their snapshots without every instance they knew (waited until the resume window closed)`);
    // They waited for these instances: compile from the model as it is now, not from the last round.
    if (this.#stale) this.#beginRound();
    for (const conn of held) this.#push(conn, true);
  }

  #clearHelloTimer(conn: Connection): void {
    if (conn.helloTimer === undefined) return;
    this.#timers.clearTimeout(conn.helloTimer);
    conn.helloTimer = undefined;
  }

  /** The hello deadline passed: a stream with no accepted hello is ended as any protocol error ends it, counted and logged. */
  #helloExpired(conn: Connection): void {
    conn.helloTimer = undefined;
    if (conn.proxy || ended(conn) || this.#stopped) return;
    this.#metrics?.helloTimeout();
    const from = (conn.socket as Duplex & { remoteAddress?: string }).remoteAddress ?? '?';
    const what = conn.pending !== undefined ? 'its hello was still being verified' : 'no hello came';
    this.#refusalLog.write(`control: stream from ${from} ended: ${what} within ${this.#helloTimeoutMs} ms of the upgrade`);
    this.#fail(conn, 'TRELLIS_E_BAD_REQUEST', `no hello accepted within ${this.#helloTimeoutMs} ms of the upgrade`);
  }

  #onClose(conn: Connection): void {
    this.#clearHelloTimer(conn);
    this.#connections.delete(conn);
    this.#held.delete(conn);
    const proxy = conn.proxy;
    if (!proxy || this.#byProxy.get(proxy.id) !== conn) return;
    this.#byProxy.delete(proxy.id);
    this.#quotas.leave(proxy.id, proxy.service);
    this.#model.disconnectProxy(proxy.id);
    if (proxy.kind === 'sidecar' || proxy.inbound !== undefined) this.#model.removeInstance(proxy.id);
    if (!this.#stopped) this.#log(`control: ${proxy.kind} ${proxy.id} disconnected`);
  }

  #fail(conn: Connection, code: string, message: string): void {
    const error: ControlMessage = { type: 'error', code, message };
    writeMessage(conn.socket, error);
    conn.socket.end();
    // A peer that never reads must not hold the socket open.
    setTimeout(() => conn.socket.destroy(), 1000).unref();
  }

  #schedule(): void {
    this.#stale = true;
    if (this.#stopped) return;
    this.#debounce.trigger();
  }

  /** Starts a push round: the views are compiled (each once, when first asked for) from the model as it is now. */
  #beginRound(): void {
    this.#views.begin(this.#model.config, routableInstances(this.#model));
    this.#stale = false;
  }

  /** Whether a push round is still sending (it yields the event loop between slices). */
  get pushing(): boolean {
    return this.#pushNext < this.#pushRemaining.length;
  }

  /**
   * Recompiles what changed and sends every connected proxy what changed for it, in
   * slices of at most `sliceMs` (the first one now): a round to 1,000 proxies must not
   * hold the event loop. A round that starts while one is under way replaces it (the
   * new one covers every proxy, from the newer model).
   */
  pushAll(): void {
    this.#cancelRound();
    this.#beginRound();
    this.#pushRemaining = [...this.#byProxy.values()];
    this.#pushNext = 0;
    this.#pushViewsRound = this.#views.round;
    this.#pushSome(this.#now() + this.#sliceMs, true);
    if (this.pushing) this.#workSoon();
  }

  #cancelRound(): void {
    this.#pushRemaining = [];
    this.#pushNext = 0;
  }

  /** Sends the round in progress on until `until` (to one proxy at least when `atLeastOne`); whether it sent to any. */
  #pushSome(until: number, atLeastOne: boolean): boolean {
    if (this.#stopped || !this.pushing) return false;
    const remaining = this.#pushRemaining;
    const first = this.#pushNext;
    while (this.#pushNext < remaining.length) {
      if ((this.#pushNext > first || !atLeastOne) && this.#now() >= until) break;
      const conn = remaining[this.#pushNext++]!;
      // Gone, or replaced by a newer stream of the same proxy (its hello sent it everything).
      if (conn.proxy && this.#byProxy.get(conn.proxy.id) === conn) this.#push(conn, false);
    }
    if (this.#pushNext < remaining.length) return this.#pushNext > first;
    this.#cancelRound();
    // Views no one asked for this round are dropped, unless a newer round began meanwhile
    // (a stream's hello can start one): it prunes with what it saw.
    if (this.#views.round === this.#pushViewsRound) this.#views.prune();
    // A config change may add, change or drop global limits: new quotas at once, after the snapshots that hold them.
    this.#quotas.rebalanceAll();
    return true;
  }

  #bytesOf(view: View<unknown>): Buffer {
    let bytes = this.#bytes.get(view);
    if (bytes === undefined) {
      bytes = Buffer.from(view.json);
      this.#bytes.set(view, bytes);
    }
    return bytes;
  }

  /** The next snapshot version of a proxy. */
  #nextVersion(id: string): number {
    const v = (this.#lastVersion.get(id) ?? 0) + 1;
    this.#lastVersion.set(id, v);
    return v;
  }

  /** Sends a proxy its snapshot: in full when `force` (a new stream, a resync), else what changed, if anything. */
  #push(conn: Connection, force: boolean): void {
    const proxy = conn.proxy;
    if (!proxy || this.#held.has(conn)) return;
    // A stream that opens between rounds is served from the current round's views (the
    // push that the model's change scheduled brings it up to date); only the first ever starts one.
    if (!this.#views.started || (this.#stale && !this.#debounce.pending)) this.#beginRound();
    if (proxy.kind === 'gateway') return this.#pushWhole(conn, proxy, force);
    const config = this.#views.config ?? this.#model.config;
    if (conn.scope?.config !== config) conn.scope = { config, names: upstreamsFor(config, proxy) };
    const namespace = callerNamespace(proxy);
    const base = this.#views.base(proxy);
    const upstreams = new Map<string, View<UpstreamSnapshot | undefined>>();
    for (const name of conn.scope.names) {
      const view = this.#views.upstream(namespace, name);
      if (view.value !== undefined) upstreams.set(name, view);
    }
    // ExternalServices: every sidecar's, by name (compileSnapshot's order: they win a clash).
    if (proxy.kind === 'sidecar') for (const [name, view] of this.#views.externals(namespace)) upstreams.set(name, view);
    const sent = force ? undefined : conn.sent;
    // The message as pieces: the shared views' JSON as shared bytes (bytesOf), spliced
    // between the few bytes of this proxy's own. Nothing is serialized or copied per proxy
    // but its version and names: a full snapshot to each of 1,000 proxies used to build
    // (and let the GC collect) a string of the whole snapshot per proxy.
    const line: (string | Buffer)[] = [];
    let version: number;
    if (sent === undefined) {
      version = this.#nextVersion(proxy.id);
      line.push(`{"type":"snapshot","version":${version},"snapshot":{"version":${version},"upstreams":{`);
      let comma = '';
      for (const [name, view] of upstreams) {
        line.push(`${comma}${JSON.stringify(name)}:`, this.#bytesOf(view));
        comma = ',';
      }
      line.push('},', this.#bytesOf(base).subarray(1), `,"resources":${resourcesJson(upstreams)}}\n`);
    } else {
      const changed: [string, View<UpstreamSnapshot | undefined>][] = [];
      for (const [name, view] of upstreams) if (sent.upstreams.get(name) !== view) changed.push([name, view]);
      const removed = [...sent.upstreams.keys()].filter((name) => !upstreams.has(name));
      const baseChanged = sent.base !== base;
      if (changed.length === 0 && removed.length === 0 && !baseChanged) return;
      version = this.#nextVersion(proxy.id);
      line.push(`{"type":"delta","version":${version},"from":${sent.version}`);
      if (baseChanged) line.push(',"base":', this.#bytesOf(base));
      let comma = '';
      line.push(',"upstreams":{');
      for (const [name, view] of changed) {
        line.push(`${comma}${JSON.stringify(name)}:`, this.#bytesOf(view));
        comma = ',';
      }
      line.push(`}${removed.length > 0 ? `,"removed":${JSON.stringify(removed)}` : ''},"resources":${resourcesJson(new Map(changed))}}\n`);
    }
    conn.sent = { version, base, upstreams };
    writeLine(conn.socket, line);
    const snapshot: Snapshot = { ...base.value, version, upstreams: {} };
    for (const [name, view] of upstreams) if (view.value !== undefined) snapshot.upstreams[name] = view.value;
    this.#model.recordSent(proxy.id, snapshot);
  }

  /** A gateway's snapshot, compiled whole and sent whole when it changed (or always when `force`). */
  #pushWhole(conn: Connection, proxy: ProxyInfo, force: boolean): void {
    const content = compileSnapshot({ config: this.#views.config ?? this.#model.config, instances: this.#views.instances, proxy });
    const { snapshot, changed } = this.#versions.stamp(proxy.id, content);
    if (!changed && !force) return;
    writeMessage(conn.socket, { type: 'snapshot', version: snapshot.version, snapshot });
    this.#model.recordSent(proxy.id, snapshot);
  }
}

/** The resource versions of a message's upstreams, as JSON. */
function resourcesJson(upstreams: ReadonlyMap<string, View<UpstreamSnapshot | undefined>>): string {
  const parts: string[] = [];
  for (const [name, view] of upstreams) parts.push(`${JSON.stringify(name)}:${view.version}`);
  return `{${parts.join(',')}}`;
}

/** Writes one message already serialized, in pieces (the shared views' bytes among them), as one write of the socket. */
function writeLine(socket: Duplex, pieces: readonly (string | Buffer)[]): void {
  if (socket.destroyed || !socket.writable) return;
  socket.cork();
  for (const piece of pieces) socket.write(piece);
  socket.uncork();
}
