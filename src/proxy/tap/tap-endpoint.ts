// `GET /tap` on a proxy's admin server: the filter from the query string, then one JSON
// line per matching exchange (TapEvent) and the tap's notices (TapNotice) until the
// reader goes, the tap's count or duration is reached, or the reader falls behind.
import type http from 'node:http';
import { TrellisError } from '../../errors.js';
import type { TapFilter, TapHub, TapSink } from './tap-hub.js';

/** A tap lasts at most a day: a forgotten `trellis tap` does not hold a slot for ever. */
const MAX_TAP_MS = 24 * 3600_000;
const MAX_EVENTS = 1_000_000;
/** A DNS name is at most 253 characters; a path prefix is bounded as the access log bounds paths. */
const MAX_CALLER = 253;
const MAX_PATH_PREFIX = 1024;

/** Reads a tap's filter from `/tap?direction=&method=&path=&status=&caller=&max=&duration_ms=`; throws TRELLIS_E_TAP_FILTER. */
export function parseTapFilter(query: URLSearchParams): TapFilter {
  const bad = (reason: string): TrellisError => new TrellisError('TRELLIS_E_TAP_FILTER', { reason });
  const known = new Set(['direction', 'method', 'path', 'status', 'caller', 'max', 'duration_ms']);
  for (const k of query.keys()) if (!known.has(k)) throw bad(`unknown parameter (known: ${[...known].join(', ')})`);
  const f: { -readonly [K in keyof TapFilter]: TapFilter[K] } = {};
  const direction = query.get('direction');
  if (direction !== null) {
    if (direction !== 'inbound' && direction !== 'outbound') throw bad('direction is inbound or outbound');
    f.direction = direction;
  }
  const method = query.get('method');
  if (method !== null) {
    if (!/^[A-Za-z-]{1,32}$/.test(method)) throw bad('method is a method name such as GET');
    f.method = method.toUpperCase();
  }
  const path = query.get('path');
  if (path !== null) {
    if (!path.startsWith('/') || path.length > MAX_PATH_PREFIX) throw bad(`path is a prefix starting with / of at most ${MAX_PATH_PREFIX} characters`);
    f.pathPrefix = path;
  }
  const status = query.get('status');
  if (status !== null) {
    if (/^[1-5]xx$/i.test(status)) f.statusClass = Number(status[0]);
    else if (/^(0|[1-9]\d{2})$/.test(status)) f.status = Number(status);
    else throw bad('status is a status (200, 0 for no response) or a class (5xx)');
  }
  const caller = query.get('caller');
  if (caller !== null) {
    if (caller === '' || caller.length > MAX_CALLER || !/^[a-z0-9.-]+$/.test(caller)) throw bad('caller is a service name');
    f.caller = caller;
  }
  const max = query.get('max');
  if (max !== null) {
    const n = Number(max);
    if (!Number.isInteger(n) || n < 1 || n > MAX_EVENTS) throw bad(`max is a whole number from 1 to ${MAX_EVENTS}`);
    f.maxEvents = n;
  }
  const ms = query.get('duration_ms');
  if (ms !== null) {
    const n = Number(ms);
    if (!Number.isInteger(n) || n < 1 || n > MAX_TAP_MS) throw bad(`duration_ms is a whole number of ms from 1 to ${MAX_TAP_MS}`);
    f.maxMs = n;
  }
  return f;
}

/** Serves one tap on `res`; throws a TrellisError (answered by the admin server) for a bad filter or a full proxy. */
export function serveTap(hub: TapHub, query: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse): void {
  const filter = parseTapFilter(query);
  const sink: TapSink = {
    write: (line) => void res.write(line),
    // What Node holds for this reader: the response's own buffer and its socket's.
    get buffered() {
      return res.writableLength + (res.socket?.writableLength ?? 0);
    },
    end: (last) => {
      if (last !== undefined) res.end(last);
      // A reader too slow to take its events is let go at once, its unsent bytes with it.
      else res.destroy();
    },
  };
  const tap = hub.open(filter, sink);
  if (tap === undefined) throw new TrellisError('TRELLIS_E_TAP_LIMIT', { limit: hub.limits.maxTaps });
  res.on('close', () => tap.close());
  req.on('error', () => tap.close());
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
}
