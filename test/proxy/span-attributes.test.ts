// A sampled hop's span is written from fragments kept between requests (span-attributes.ts
// HopSpanWriter), piece by piece into the exporter's queue, not from a record of its
// attributes: its bytes must be exactly what the exporter's encoder writes for the record
// (spanJson of spanAttributes), request after request, as values repeat, change back and
// forth, or come hostile from a client, and when an endpoint object is changed in place.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HopSpanWriter, spanAttributes, spanMethod, type HopSpanOptions } from '../../src/proxy/stack/span-attributes.js';
import type { Exchange } from '../../src/proxy/stack/exchange.js';
import { bodyHead, BODY_TAIL, spanJson } from '../../src/telemetry/tracing/otlp-json.js';
import { SpanQueue } from '../../src/telemetry/tracing/span-queue.js';
import { SpanKind } from '../../src/telemetry/tracing/span.js';

const HOSTILE = ['', '/', '/api/products', 'quote " and \\ backslash', 'line\nbreak\u0000', 'emoji 🚀 é', 'lone \ud800 surrogate', `/${'a'.repeat(300)}`];
const METHODS = ['GET', 'POST', 'BREW', 'get'];

interface Fake {
  method: string;
  path: string;
  source: string;
  service: string;
  endpoint: { id: string; host: string; port: number; version: string } | undefined;
  status: number;
  route: { name: string } | undefined;
  attempts: number;
  grpcStatus: string;
  errorToken: string;
  peer: { spiffeId: string } | undefined;
  authz: { result: 'allowed' | 'denied' | 'dry-run-denied' | 'audited'; policy: string } | undefined;
}

function exchange(f: Fake): Exchange {
  return {
    req: { method: f.method, path: f.path },
    source: f.source,
    service: f.service,
    endpoint: f.endpoint,
    status: f.status,
    route: f.route,
    attempts: f.attempts,
    grpcStatus: f.grpcStatus,
    errorToken: f.errorToken,
    client: { peer: f.peer },
    authz: f.authz,
  } as unknown as Exchange;
}

/** A deterministic walk over every field's values, so consecutive requests repeat some values and change others. */
function fakes(n: number): Fake[] {
  const sharedEndpoint = { id: 'backend-0', host: '127.0.0.1', port: 15001, version: 'v1' };
  const out: Fake[] = [];
  for (let i = 0; i < n; i++) {
    const pick = <T>(xs: readonly T[], every: number): T => xs[Math.floor(i / every) % xs.length]!;
    let endpoint: Fake['endpoint'] = pick([sharedEndpoint, undefined, { id: 'backend-1', host: '::1', port: 8443, version: HOSTILE[4]! }], 3);
    if (i % 11 === 5) {
      // The same object, changed in place: its attributes must follow.
      sharedEndpoint.port++;
      sharedEndpoint.id = `backend-${i}`;
      endpoint = sharedEndpoint;
    }
    out.push({
      method: pick(METHODS, 5),
      path: pick(HOSTILE, 2),
      source: pick(['frontend', '', HOSTILE[3]!], 7),
      service: pick(['backend', '', HOSTILE[5]!], 4),
      endpoint,
      status: pick([200, 200, 0, 503, 404], 1),
      route: pick([{ name: 'default/backend/rule/0' }, undefined, { name: HOSTILE[4]! }], 6),
      attempts: pick([1, 1, 3], 2),
      grpcStatus: pick(['', '0', '14', 'bogus'], 9),
      errorToken: pick(['', '', 'timeout'], 5),
      peer: pick([{ spiffeId: 'spiffe://trellis.local/ns/default/sa/frontend' }, undefined], 3),
      authz: pick([{ result: 'allowed', policy: 'default/backend-from-frontend' }, undefined, { result: 'dry-run-denied', policy: '' }], 4),
    } as Fake);
  }
  return out;
}

for (const direction of ['outbound', 'inbound'] as const) {
  test(`${direction}: the hop span's JSON is byte for byte spanJson of its attribute record, request after request`, () => {
    const o: HopSpanOptions = { direction, service: 'backend', version: 'v2' };
    const kind = direction === 'outbound' ? SpanKind.Client : SpanKind.Server;
    const enc = new HopSpanWriter(o, kind);
    const q = new SpanQueue(bodyHead({}), 1);
    const head = bodyHead({});
    const list = fakes(200);
    for (const [i, f] of list.entries()) {
      const ex = exchange(f);
      const failed = i % 3 === 0;
      const traceId = (i + 1).toString(16).padStart(32, '0');
      const spanId = (i + 7).toString(16).padStart(16, 'a');
      const parent = i % 2 === 0 ? '' : 'b7ad6b7169203331';
      const state = i % 5 === 0 ? HOSTILE[3]! : '';
      // Times of now, and (every 7th) ones the writer leaves to unixNanos: before 2001, far ahead.
      const start = i % 7 === 3 ? 12.5 + i : i % 7 === 4 ? 9e15 + i : 1_796_513_941_415.123 + i;
      const end = start + 0.4567;
      q.beginSpan();
      enc.write(q, ex, traceId, spanId, parent, state, start, end, failed);
      q.endSpan();
      const body = q.shift()!.body.toString('utf8');
      const got = body.slice(head.length, body.length - BODY_TAIL.length);
      const want = spanJson({
        traceId,
        spanId,
        parentSpanId: parent,
        traceState: state,
        name: `${spanMethod(f.method)} ${direction === 'outbound' ? f.service || 'unknown' : o.service}`,
        kind,
        startMs: start,
        endMs: end,
        attributes: spanAttributes(o, ex, failed),
        error: failed,
      });
      assert.equal(got, want, `request ${i}`);
      JSON.parse(got);
    }
  });
}
