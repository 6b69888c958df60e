// Which HTTP the local app speaks, for the inbound sidecar: declared in the mesh file
// (`http1`, or `http2` / `grpc`), or found by one probe per app instance, made when
// the first HTTP/2 request needs the answer: the HTTP/2 connection preface and an
// empty SETTINGS frame, to which an HTTP/2 server answers with its own SETTINGS
// (RFC 9113 §3.4) and an HTTP/1.1 server with a 400, a close, or silence. The answer
// is kept until a request shows it stale (the app refused, or answered in the other
// protocol: it restarted, perhaps as another server), and the next request probes again.
//
// Envoy picks the codec per upstream from its config (explicit_http_config), or from
// ALPN with TLS (auto_config, which falls back to HTTP/1.1 without it); plain local
// apps have no ALPN, hence the probe. This module loads no node:http2: a mesh that
// never sees HTTP/2 never probes and never pays for it.
import net from 'node:net';
import type { HostPort, Protocol } from '../../api/protocol.js';
import type { Handler } from '../stack/exchange.js';
import type { Picked } from '../stack/decisions.js';
import { H2_PREFACE } from '../listeners/detect.js';

export type AppHttp = 'h1' | 'h2';

/** What a probe found: the app's HTTP and why we think so, or why it could not be reached (nothing is learnt then). */
export type ProbeResult = { readonly version: AppHttp; readonly evidence: string } | { readonly failure: string };

/** The preface and an empty SETTINGS frame (length 0, type 0x4, no flags, stream 0). */
const PROBE = Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/** How an app that speaks only HTTP/2 is called, for the errors that name it. */
export const SPEAKS_H2 = 'HTTP/2 (h2c, prior knowledge)';
export const SPEAKS_H1 = 'HTTP/1.1';
/** Why an HTTP/1.1 request can't reach an HTTP/2-only app (TRELLIS_E_APP_PROTOCOL's reason). */
export const H1_REQUEST_TO_H2_APP =
  'this request came as HTTP/1.1: call it over HTTP/2 (a gRPC client, or an HTTP/2 client with prior knowledge), or serve HTTP/1.1 too';
/** Why an HTTP/2 request can't reach an app declared HTTP/2-only that answers in HTTP/1.1. */
export const DECLARED_H2_SPEAKS_H1 = 'it is declared HTTP/2-only (protocol http2 or grpc) in the mesh file: declare http1, or http to have it probed';
/** Why a gRPC call can't reach an HTTP/1.1-only app. */
export const GRPC_TO_H1_APP =
  'this gRPC call needs HTTP/2: serve gRPC over h2c (every gRPC server does), or correct the protocol of the service in the mesh file';

const ANSWERED_H2 = 'it answered the HTTP/2 preface with SETTINGS';
const ANSWERED_H1 = 'it answered the HTTP/2 preface in HTTP/1.x';

/** Whether `b` starts with an HTTP/2 SETTINGS frame on stream 0 that is not an ACK: a server's preface. */
export function isServerPreface(b: Buffer): boolean {
  return b.length >= 9 && b[3] === 0x4 && (b[4]! & 0x1) === 0 && (b.readUInt32BE(5) & 0x7fffffff) === 0;
}

/** Reads an app's first bytes after the probe: its HTTP, or undefined while too few bytes came to tell. */
export function classifyProbeAnswer(b: Buffer): ProbeResult | undefined {
  if (isServerPreface(b)) return { version: 'h2', evidence: ANSWERED_H2 };
  // A frame's length starts with a 0 byte for any SETTINGS a server sends: wait for the whole frame header.
  if (b.length < 9 && b[0] === 0) return undefined;
  if (b.length < 5 && b.toString('latin1') === 'HTTP/'.slice(0, b.length)) return undefined;
  return { version: 'h1', evidence: b.toString('latin1', 0, 5) === 'HTTP/' ? ANSWERED_H1 : 'it did not answer the HTTP/2 preface in HTTP/2' };
}

/** Probes the app at `to` once: connects, sends the preface, reads the first bytes (at most `timeoutMs`). */
export function probeAppHttp(to: HostPort, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let got: Buffer | undefined;
    let connected = false;
    let settled = false;
    const socket = net.connect({ host: to.host, port: to.port });
    const done = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () =>
        done(
          connected
            ? { version: 'h1', evidence: `it said nothing to the HTTP/2 preface within ${timeoutMs} ms` }
            : { failure: `no connection within ${timeoutMs} ms` },
        ),
      timeoutMs,
    );
    socket.once('connect', () => {
      connected = true;
      socket.write(PROBE);
    });
    socket.on('data', (c: Buffer) => {
      got = got === undefined ? c : Buffer.concat([got, c]);
      const r = classifyProbeAnswer(got);
      if (r !== undefined) done(r);
    });
    // Closed (or reset) on the preface without a word: not an HTTP/2 server, which would have sent SETTINGS first.
    const closed = (reason: string): void =>
      done(connected ? { version: 'h1', evidence: `it closed the connection on the HTTP/2 preface (${reason})` } : { failure: reason });
    socket.on('error', (err) => closed(err.message));
    socket.on('close', () => closed('connection closed'));
  });
}

/**
 * The least time between two probes made to check an answer that requests can only
 * fail on: a gRPC call meeting an app last found HTTP/1.1-only (which may have been
 * restarted as a gRPC server without a request failing in between), or an app declared
 * HTTP/2-only that failed HTTP/2 requests. Bounds such probes to one per 5 s however many requests come.
 */
const REPROBE_FOR_GRPC_MS = 5_000;

/** What the inbound sidecar knows of its app's HTTP, and the probe that finds it out. */
export class AppHttpVersion {
  readonly #probe: () => Promise<ProbeResult>;
  readonly #found: (r: { version: AppHttp; evidence: string }) => void;
  readonly #now: () => number;
  #declared: AppHttp | undefined;
  #probed: AppHttp | undefined;
  #probedAt = 0;
  /** Callers waiting for the probe in flight; undefined when none is. */
  #waiting: ((r: ProbeResult) => void)[] | undefined;
  /** Bumped when the answer is dropped, so a probe started before does not bring a stale one back. */
  #generation = 0;
  /** A declared HTTP/2 that a probe found answering in HTTP/1.x, and when that was last checked. */
  #contradicted = false;
  #checkedAt = -Infinity;
  #checking = false;

  /** `found` hears each answer a probe gives (for a log line); `now` is the clock (tests pass their own). */
  constructor(
    probe: () => Promise<ProbeResult>,
    found: (r: { version: AppHttp; evidence: string }) => void = () => {},
    now: () => number = () => performance.now(),
  ) {
    this.#probe = probe;
    this.#found = found;
    this.#now = now;
  }

  /** Takes the service's declared protocol from a snapshot: `http1`, `http2` and `grpc` pin the answer, anything else leaves it to the probe. */
  declare(protocol: Protocol): void {
    const declared = protocol === 'http1' ? 'h1' : protocol === 'http2' || protocol === 'grpc' ? 'h2' : undefined;
    if (declared === this.#declared) return;
    this.#declared = declared;
    this.#contradicted = false;
    this.#checkedAt = -Infinity;
    this.forget();
  }

  /**
   * Whether the app, declared HTTP/2-only, was found answering in HTTP/1.x: its HTTP/2
   * requests are answered with that cause instead of a connection failure. Checked
   * again (in the background, at most once per REPROBE_FOR_GRPC_MS) while it holds.
   */
  get declaredWrongly(): boolean {
    if (this.#contradicted) this.checkDeclared();
    return this.#contradicted;
  }

  /**
   * An HTTP/2 request to an app declared HTTP/2-only ended without an answer: a probe
   * tells a down app (nothing learnt) from one that speaks HTTP/1.1 (a wrong declaration).
   */
  checkDeclared(): void {
    if (this.#declared !== 'h2' || this.#checking || this.#now() - this.#checkedAt < REPROBE_FOR_GRPC_MS) return;
    this.#checking = true;
    void this.#probe().then((r) => {
      this.#checking = false;
      if (this.#declared !== 'h2' || !('version' in r)) return;
      this.#checkedAt = this.#now();
      // Only an answer in HTTP/1.x contradicts the declaration: silence or a close may be an app still starting.
      const wrong = r.version === 'h1' && r.evidence === ANSWERED_H1;
      if (wrong && !this.#contradicted) this.#found({ version: 'h1', evidence: `${r.evidence}, though declared HTTP/2-only (http2 or grpc)` });
      this.#contradicted = wrong;
    });
  }

  /** The declared answer; undefined when the app is probed. */
  get declared(): AppHttp | undefined {
    return this.#declared;
  }

  /** The answer in force (declared, else probed); undefined until a probe has given one. */
  get known(): AppHttp | undefined {
    return this.#declared ?? this.#probed;
  }

  /** Whether a probed HTTP/1.1 answer is old enough that a gRPC call should check it again (see REPROBE_FOR_GRPC_MS). */
  staleForGrpc(): boolean {
    return this.#declared === undefined && this.#probed === 'h1' && this.#now() - this.#probedAt >= REPROBE_FOR_GRPC_MS;
  }

  /** Drops a probed answer that a request proved wrong or stale; the next request probes again. */
  forget(): void {
    this.#probed = undefined;
    this.#generation++;
  }

  /** Calls `then` with the answer in force, probing first when there is none (one probe, however many wait). */
  resolve(then: (r: ProbeResult) => void): void {
    const known = this.known;
    if (known !== undefined) return then({ version: known, evidence: 'known' });
    if (this.#waiting !== undefined) {
      this.#waiting.push(then);
      return;
    }
    const waiting = (this.#waiting = [then]);
    const generation = this.#generation;
    void this.#probe().then((r) => {
      this.#waiting = undefined;
      if ('version' in r && generation === this.#generation && this.#declared === undefined) {
        this.#probed = r.version;
        this.#probedAt = this.#now();
        this.#found(r);
      }
      for (const w of waiting) w(r);
    });
  }
}

/**
 * The terminal of the inbound HTTP/1.1 pipeline for an app declared HTTP/2-only
 * (`http2`, `grpc`): such a request is answered with the cause instead of being sent
 * to an app that can only answer it with a GOAWAY.
 */
export function refuseHttp1(address: string): Handler<Picked> {
  return (ex) => ex.fail('TRELLIS_E_APP_PROTOCOL', { address, speaks: SPEAKS_H2, reason: H1_REQUEST_TO_H2_APP });
}
