// What runs later, from a timer, outside any listener's guard (a retry after its backoff,
// a request held by a fault delay), is guarded as a listener's events are: an exception
// in the layers below ends that exchange's client, reported to it, and never reaches the
// process (where an uncaught exception would end the proxy and every connection on it).
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { DEFAULT_RETRY_BUDGET } from '../../src/api/protocol.js';
import { isFailure, parseRequestHead } from '../../src/http1/http1-parser.js';
import { fault } from '../../src/proxy/resilience/fault.js';
import { retry } from '../../src/proxy/resilience/retry.js';
import { RetryBudget } from '../../src/proxy/resilience/retry-budget.js';
import type { CompiledRoute, CompiledUpstream } from '../../src/proxy/routing/router.js';
import { type Routed, withRoute, withUpstream } from '../../src/proxy/stack/decisions.js';
import { Exchange, type Handler } from '../../src/proxy/stack/exchange.js';
import { type Layer, Stack } from '../../src/proxy/stack/layer.js';
import { eventually } from '../helpers/eventually.js';

/** A routed GET whose client records the failure reported to it. */
function routedGet(route: Partial<CompiledRoute>): { ex: Routed; failures: unknown[] } {
  const head = Buffer.from('GET / HTTP/1.1\r\nHost: api\r\n\r\n', 'latin1');
  const req = parseRequestHead(head, head.length);
  if (isFailure(req)) assert.fail(req.reason);
  const failures: unknown[] = [];
  const client = {
    socket: new PassThrough(),
    exchangeDone: () => {},
    resumeBody: () => {},
    pauseBody: () => {},
    detach: () => undefined,
    failed: (err: unknown) => failures.push(err),
  };
  const ex = new Exchange(client, req, head);
  ex.requestBodyDone = true;
  // Only the fields the layers under test read: the destination's budget and the rule's policies.
  const upstream = { service: 'api', budget: new RetryBudget(DEFAULT_RETRY_BUDGET) } as unknown as CompiledUpstream;
  return { ex: withRoute(withUpstream(ex, upstream), { name: 'api/rule-0', ...route } as CompiledRoute), failures };
}

/** A layer that throws once the exchange is on its second attempt, or at once (`always`). */
const throwing =
  (always: boolean): Layer<Routed> =>
  (next) => ({
    request(ex) {
      if (always || ex.attempts > 1) throw new Error('a layer below failed');
      next(ex);
    },
  });

const noMetrics = { retried: () => {}, budgetExhausted: () => {}, injected: () => {} };

test("an exception in the attempt a retry sends after its backoff ends that exchange's client, not the process", async () => {
  const { ex, failures } = routedGet({ retry: { codes: [503], attempts: 1, backoffMs: 1, nonIdempotent: false, maxBodyBytes: 0 } });
  // The first attempt is answered 503: the retry layer takes it and sends the exchange again after its backoff.
  const answer503: Handler = (e) => {
    e.report({ kind: 'head', status: 503, grpcStatus: '', appUnavailable: false, sentAt: performance.now(), edits: undefined });
  };
  const handler = Stack.start()
    .push(retry(noMetrics) as unknown as Layer)
    .push(throwing(false) as unknown as Layer)
    .build(answer503);
  handler(ex);
  await eventually(() => failures.length === 1, { what: 'the failure to reach the client' });
  assert.match(String(failures[0]), /a layer below failed/);
});

test("an exception in the layers a fault delay releases the request to ends that exchange's client, not the process", async () => {
  const { ex, failures } = routedGet({ fault: { policy: 'default/slow', delay: { ms: 1, percent: 100 } } });
  const handler = Stack.start()
    .push(fault(noMetrics, () => 0) as unknown as Layer)
    .push(throwing(true) as unknown as Layer)
    .build(() => assert.fail('never reached'));
  handler(ex);
  await eventually(() => failures.length === 1, { what: 'the failure to reach the client' });
});
