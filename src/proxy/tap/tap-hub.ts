// The proxy's tap point: a live copy of every finished exchange for the readers that ask
// for one (`trellis tap`), as Linkerd's proxy taps its stacks. The telemetry layer reads
// one field per exchange (`active`) and calls `publish` only while a tap is open, so a
// proxy nobody taps pays a boolean test.
//
// A tap never stalls or grows the data plane: each reader has a bounded queue (the bytes
// its connection holds unsent); past it events are dropped and counted, and a reader
// that stays behind is disconnected. Taps per proxy are capped.
import type { TapEvent, TapNotice } from '../../api/views.js';
import type { Exchange } from '../stack/exchange.js';
import { endpointKey } from '../balancer/balancer.js';
import { grpcStatusLabel } from '../../telemetry/metrics.js';

/** What one tap wants to see; absent fields match everything. */
export interface TapFilter {
  readonly direction?: 'inbound' | 'outbound';
  /** Exact (upper case) method. */
  readonly method?: string;
  /** Path prefix (plain string prefix of the path, without the query). */
  readonly pathPrefix?: string;
  /** An exact status (200) or a class: 2 for 2xx... (`statusClass`). */
  readonly status?: number;
  readonly statusClass?: number;
  /** The calling service. */
  readonly caller?: string;
  /** End the tap after this many events. */
  readonly maxEvents?: number;
  /** End the tap after this long, ms. */
  readonly maxMs?: number;
}

/** Where a tap's lines go: its reader's connection. */
export interface TapSink {
  /** Queues one line (ends in `\n`). */
  write(line: string): void;
  /** Bytes queued and not yet taken by the reader: the tap's queue. */
  readonly buffered: number;
  /** Ends the stream (after `last`, when given); the hub forgets the tap. */
  end(last?: string): void;
}

export interface TapLimits {
  /** Taps open at once; more are refused. Default 8. */
  readonly maxTaps: number;
  /** A reader's queue; events past it are dropped. Default 256 KiB. */
  readonly maxBufferedBytes: number;
  /** A reader whose queue stays full this long is disconnected. Default 5 s. */
  readonly slowReaderMs: number;
}

export const DEFAULT_TAP_LIMITS: TapLimits = { maxTaps: 8, maxBufferedBytes: 256 * 1024, slowReaderMs: 5000 };

/** Longest method, authority and path a tap event carries. */
const MAX_METHOD = 32;
const MAX_AUTHORITY = 255;

export interface TapCounts {
  readonly active: number;
  readonly opened: number;
  readonly refused: number;
  readonly dropped: number;
  readonly slowReaders: number;
}

class Tap {
  readonly filter: TapFilter;
  readonly sink: TapSink;
  sent = 0;
  /** Dropped since the last notice the reader got. */
  dropped = 0;
  /** When (the hub's clock) the queue was first found full; -1 while it is not. */
  fullSince = -1;
  timer: NodeJS.Timeout | undefined;

  constructor(filter: TapFilter, sink: TapSink) {
    this.filter = filter;
    this.sink = sink;
  }

  wants(direction: string, ex: Exchange, caller: string, status: number): boolean {
    const f = this.filter;
    if (f.direction !== undefined && f.direction !== direction) return false;
    if (f.method !== undefined && f.method !== ex.req.method) return false;
    if (f.pathPrefix !== undefined && !ex.req.path.startsWith(f.pathPrefix)) return false;
    if (f.status !== undefined && f.status !== status) return false;
    if (f.statusClass !== undefined && Math.floor(status / 100) !== f.statusClass) return false;
    return f.caller === undefined || f.caller === caller;
  }
}

export class TapHub {
  /** The one field the telemetry layer reads per exchange: true while a tap is open. */
  active = false;
  readonly #taps = new Set<Tap>();
  readonly #limits: TapLimits;
  readonly #proxy: string;
  readonly #now: () => number;
  readonly #target: (raw: string) => string;
  #opened = 0;
  #refused = 0;
  #dropped = 0;
  #slowReaders = 0;

  /**
   * `target` is how the proxy's access log writes a request target (query values
   * redacted unless the log keeps them, bounded): a tap shows no more than the log does.
   */
  constructor(proxy: string, target: (raw: string) => string, limits: Partial<TapLimits> = {}, now: () => number = () => performance.now()) {
    this.#proxy = proxy;
    this.#target = target;
    this.#limits = { ...DEFAULT_TAP_LIMITS, ...limits };
    this.#now = now;
  }

  get limits(): TapLimits {
    return this.#limits;
  }

  counts(): TapCounts {
    return { active: this.#taps.size, opened: this.#opened, refused: this.#refused, dropped: this.#dropped, slowReaders: this.#slowReaders };
  }

  /** Opens a tap; undefined (counted) when `maxTaps` are open already. `close()` it when its reader goes. */
  open(filter: TapFilter, sink: TapSink): { close(): void } | undefined {
    if (this.#taps.size >= this.#limits.maxTaps) {
      this.#refused++;
      return undefined;
    }
    const tap = new Tap(filter, sink);
    this.#taps.add(tap);
    this.#opened++;
    this.active = true;
    if (filter.maxMs !== undefined) {
      tap.timer = setTimeout(() => this.#end(tap, 'max-duration'), filter.maxMs);
      tap.timer.unref();
    }
    return { close: () => this.#forget(tap) };
  }

  /** Ends every tap (the proxy is closing). */
  closeAll(): void {
    for (const tap of [...this.#taps]) this.#end(tap, 'closing');
  }

  /**
   * One finished exchange (telemetry.ts calls it only while `active`). The event is built
   * and serialized once, and only if some tap wants it.
   */
  publish(direction: 'inbound' | 'outbound', ex: Exchange, caller: string, destination: string, route: string, status: number, seconds: number): void {
    let line: string | undefined;
    for (const tap of this.#taps) {
      if (!tap.wants(direction, ex, caller, status)) continue;
      if (!this.#roomFor(tap)) continue;
      line ??= `${JSON.stringify(this.#event(direction, ex, caller, destination, route, status, seconds))}\n`;
      tap.sink.write(line);
      tap.sent++;
      if (tap.filter.maxEvents !== undefined && tap.sent >= tap.filter.maxEvents) this.#end(tap, 'max-events');
    }
  }

  /** Whether the tap's queue takes one more event: else it is dropped (counted), and a reader behind for too long is let go. */
  #roomFor(tap: Tap): boolean {
    if (tap.sink.buffered < this.#limits.maxBufferedBytes) {
      tap.fullSince = -1;
      if (tap.dropped > 0) {
        const notice: TapNotice = { kind: 'dropped', count: tap.dropped };
        tap.sink.write(`${JSON.stringify(notice)}\n`);
        tap.dropped = 0;
      }
      return true;
    }
    tap.dropped++;
    this.#dropped++;
    const now = this.#now();
    if (tap.fullSince === -1) tap.fullSince = now;
    else if (now - tap.fullSince >= this.#limits.slowReaderMs) {
      this.#slowReaders++;
      this.#end(tap, 'slow-reader');
    }
    return false;
  }

  #event(direction: 'inbound' | 'outbound', ex: Exchange, caller: string, destination: string, route: string, status: number, seconds: number): TapEvent {
    const method = ex.req.method;
    const host = ex.req.host;
    return {
      kind: 'request',
      ts: new Date().toISOString(),
      proxy: this.#proxy,
      direction,
      method: method.length <= MAX_METHOD ? method : `${method.slice(0, MAX_METHOD)}…`,
      authority: host.length <= MAX_AUTHORITY ? host : `${host.slice(0, MAX_AUTHORITY)}…`,
      path: this.#target(ex.req.target),
      status,
      ...(ex.grpcStatus !== '' ? { grpcStatus: grpcStatusLabel(ex.grpcStatus) } : {}),
      latencyMs: Math.round(seconds * 100_000) / 100,
      caller,
      // The caller's verified certificate (inbound over mutual TLS): who it is, not only its service.
      ...(ex.client.peer !== undefined ? { peer: ex.client.peer.spiffeId } : {}),
      destination,
      route,
      ...(ex.endpoint !== undefined ? { endpoint: endpointKey(ex.endpoint) } : {}),
      bytes: ex.responseBytes,
      ...(ex.errorToken !== '' ? { error: ex.errorToken } : {}),
      attempts: ex.attempts,
    };
  }

  #end(tap: Tap, reason: Extract<TapNotice, { kind: 'end' }>['reason']): void {
    if (!this.#taps.has(tap)) return;
    this.#forget(tap);
    const notice: TapNotice = { kind: 'end', reason };
    // A slow reader gets no last line: its queue is full, and the point is to let it go.
    tap.sink.end(reason === 'slow-reader' ? undefined : `${JSON.stringify(notice)}\n`);
  }

  #forget(tap: Tap): void {
    clearTimeout(tap.timer);
    this.#taps.delete(tap);
    this.active = this.#taps.size > 0;
  }
}
