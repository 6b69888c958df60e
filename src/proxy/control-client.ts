// The proxy's link to the control plane: connects, says hello, applies each snapshot
// it is sent (ACK) or refuses it (NACK, keeping the last good one), and reconnects with
// jittered exponential backoff whenever the link drops. The proxy serves on its last
// good snapshot the whole time: the control plane is never on the request path.
import { LineReader, writeMessage } from '../api/wire.js';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { ControlMessage, IssuedCertificate, ProxyInfo, ProxyMessage, RateDemandMessage, RateQuotaMessage, Snapshot } from '../api/protocol.js';
import { SnapshotAssembler, type Assembled } from '../api/snapshot-delta.js';

export interface ControlClientOptions {
  url: string;
  token?: string;
  /**
   * The instance's credential, sent in the hello (and nowhere else): a bootstrap
   * credential, or a function read before every connection (a projected ServiceAccount
   * token in a file the kubelet rotates: src/proxy/credential-file.ts).
   */
  credential?: string | (() => Promise<string>);
  info: ProxyInfo;
  /** Applies a snapshot; throws with the reason to refuse it. */
  apply(snapshot: Snapshot): void;
  /** Connection state changes and refusals, for logs and metrics. */
  onState?(connected: boolean, detail: string): void;
  /** A fatal answer from the control plane (e.g. unknown service). */
  onFatal?(code: string, message: string): void;
  /** The CA's roots changed (a rotation). */
  onTrustBundle?(trustBundle: string[]): void;
  /** This proxy's quotas of its service's global rate limits. */
  onRateQuota?(msg: RateQuotaMessage): void;
}

/** A certificate request the control plane has not answered yet. */
interface PendingCsr {
  resolve(certificate: IssuedCertificate): void;
  reject(err: Error): void;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;
/** After a refusal at hello, retries wait up to this long: the refusal will not go away by itself. */
const REFUSED_BACKOFF_MAX_MS = 30_000;
/**
 * The longest message the control plane may send, in characters: a snapshot with every
 * endpoint of a thousand services is a few MB; 64 Mi leaves room and still bounds memory.
 */
const MAX_MESSAGE_CHARS = 64 * 1024 * 1024;

export class ControlClient {
  readonly #o: ControlClientOptions;
  #socket: Socket | undefined;
  #attempt = 0;
  /** The control plane refused this proxy at hello (until it sends a snapshot). */
  #refused = false;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** A snapshot was applied on some connection: a later hello says the proxy resumes. */
  #applied = false;
  /** The instance ids the applied snapshot routes to. */
  #endpoints: string[] = [];
  #csrId = 0;
  readonly #pending = new Map<number, PendingCsr>();
  /** This stream's snapshot: the full one it started with plus every delta since. */
  readonly #assembler = new SnapshotAssembler();

  constructor(o: ControlClientOptions) {
    this.#o = o;
  }

  start(): void {
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#failPending('the proxy is stopping');
  }

  /**
   * Sends a CSR on the stream; resolves with the certificate, rejects with the control
   * plane's reason, or at once when the stream is down (the renewer retries).
   */
  requestCertificate(csr: string): Promise<IssuedCertificate> {
    if (this.#socket === undefined) return Promise.reject(new Error('not connected to the control plane'));
    const id = ++this.#csrId;
    return new Promise<IssuedCertificate>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#send({ type: 'csr', id, csr });
    });
  }

  /** Sends a rate-limit demand report; false when the stream is down. */
  reportDemand(msg: RateDemandMessage): boolean {
    if (this.#socket === undefined) return false;
    this.#send(msg);
    return true;
  }

  #failPending(reason: string): void {
    for (const p of this.#pending.values()) p.reject(new Error(reason));
    this.#pending.clear();
  }

  #connect(): void {
    if (this.#stopped) return;
    const credential = this.#o.credential;
    if (typeof credential !== 'function') return this.#open(credential);
    credential().then(
      (value) => this.#open(value),
      (err: unknown) => this.#retry(`could not read the credential: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  #open(credential: string | undefined): void {
    if (this.#stopped) return;
    const url = new URL('/v1/stream', this.#o.url);
    const headers: Record<string, string> = { Connection: 'Upgrade', Upgrade: 'trellis-stream' };
    if (this.#o.token) headers.Authorization = `Bearer ${this.#o.token}`;
    const req = http.request({ hostname: url.hostname, port: url.port, path: url.pathname, headers, agent: false });
    req.on('upgrade', (_res, socket, head) => this.#onStream(socket, head, credential));
    req.on('response', (res) => {
      res.resume();
      this.#retry(`control plane answered ${res.statusCode} to the stream request`);
    });
    req.on('error', (err) => this.#retry(err.message));
    req.end();
  }

  #onStream(socket: Socket, head: Buffer, credential: string | undefined): void {
    this.#socket = socket;
    // Deltas are relative to this stream's messages only: a new stream starts with a full snapshot.
    this.#assembler.reset();
    // The backoff starts over only once the control plane sends a snapshot (below): a
    // stream it refuses at hello (a wrong credential) is made again ever more slowly,
    // not every 100 ms.
    socket.setNoDelay(true);
    this.#o.onState?.(true, 'connected');
    const proxy = this.#applied ? { ...this.#o.info, resumed: { endpoints: this.#endpoints } } : this.#o.info;
    this.#send(credential !== undefined ? { type: 'hello', proxy, credential } : { type: 'hello', proxy });
    // The stream's framing is the control plane's (src/api/wire.ts), with a bound of its
    // own: a message that never ends would hold memory without bound, so the stream is
    // dropped (and made again).
    const reader = new LineReader(MAX_MESSAGE_CHARS);
    const onBytes = (chunk: Buffer): void => {
      let lines: string[];
      try {
        lines = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const line of lines) this.#onMessage(line);
    };
    socket.on('data', onBytes);
    if (head.length > 0) onBytes(head);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined;
      this.#failPending('the control stream closed');
      this.#o.onState?.(false, 'disconnected');
      this.#retry('connection closed');
    });
  }

  #onMessage(line: string): void {
    let msg: ControlMessage;
    try {
      msg = JSON.parse(line) as ControlMessage;
    } catch {
      return;
    }
    // Valid JSON that is no message (`null`, a number) is ignored as unparsable text is.
    if (typeof msg !== 'object' || msg === null) return;
    if (msg.type === 'snapshot' || msg.type === 'delta') {
      const assembled = msg.type === 'snapshot' ? this.#assembler.full(msg.snapshot, msg.resources) : this.#assembler.delta(msg);
      this.#applyAssembled(msg.version, assembled);
    } else if (msg.type === 'error') {
      this.#refused = true;
      this.#o.onFatal?.(msg.code, msg.message);
    } else if (msg.type === 'certificate' || msg.type === 'csr-refused') {
      const pending = this.#pending.get(msg.id);
      if (!pending) return;
      this.#pending.delete(msg.id);
      if (msg.type === 'certificate' && isIssuedCertificate(msg.certificate)) pending.resolve(msg.certificate);
      else if (msg.type === 'certificate') pending.reject(new Error('the control plane sent a malformed certificate message'));
      else pending.reject(new Error(`${msg.code}: ${msg.message}`));
    } else if (msg.type === 'trust-bundle' && Array.isArray(msg.trustBundle)) {
      this.#o.onTrustBundle?.(msg.trustBundle.filter((p): p is string => typeof p === 'string'));
    } else if (msg.type === 'rate-quota') {
      this.#o.onRateQuota?.(msg);
    }
  }

  /** Applies what a snapshot or delta assembled into: ACK, NACK, or a resync request. */
  #applyAssembled(version: number, assembled: Assembled): void {
    if (assembled.kind === 'resync') {
      this.#o.onState?.(true, `delta ${version} does not follow the snapshot held (${assembled.holding ?? 'none'}); asking for a full one`);
      return this.#send(assembled.holding !== undefined ? { type: 'resync', version: assembled.holding } : { type: 'resync' });
    }
    if (assembled.kind === 'malformed') {
      this.#o.onState?.(true, `refused delta ${version}: ${assembled.error}`);
      return this.#send({ type: 'nack', version, error: assembled.error });
    }
    try {
      this.#o.apply(assembled.snapshot);
      this.#applied = true;
      this.#attempt = 0;
      this.#refused = false;
      this.#endpoints = endpointIds(assembled.snapshot);
      this.#send({ type: 'ack', version });
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.#o.onState?.(true, `refused snapshot ${version}: ${error}`);
      this.#send({ type: 'nack', version, error });
    }
  }

  #send(msg: ProxyMessage): void {
    if (this.#socket !== undefined) writeMessage(this.#socket, msg);
  }

  #retry(reason: string): void {
    if (this.#stopped || this.#timer !== undefined) return;
    const max = this.#refused ? REFUSED_BACKOFF_MAX_MS : BACKOFF_MAX_MS;
    const delay = Math.min(max, BACKOFF_MIN_MS * 2 ** this.#attempt++) * (0.5 + Math.random() / 2);
    this.#o.onState?.(false, `${reason}; retrying in ${Math.round(delay)} ms`);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, delay);
    this.#timer.unref();
  }
}

function endpointIds(snapshot: Snapshot): string[] {
  const ids = new Set<string>();
  for (const u of Object.values(snapshot.upstreams)) for (const b of Object.values(u.backends)) for (const e of b.endpoints) ids.add(e.id);
  return [...ids].sort();
}

/** A certificate message's payload has the shape the proxy relies on (the TLS layer parses the PEM itself). */
function isIssuedCertificate(v: unknown): v is IssuedCertificate {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  const pems = (a: unknown): boolean => Array.isArray(a) && a.length > 0 && a.every((p) => typeof p === 'string');
  return (
    typeof c.spiffeId === 'string' &&
    typeof c.serial === 'string' &&
    pems(c.chain) &&
    pems(c.trustBundle) &&
    typeof c.notBefore === 'string' &&
    typeof c.notAfter === 'string' &&
    Number.isFinite(Date.parse(c.notBefore)) &&
    Number.isFinite(Date.parse(c.notAfter))
  );
}
