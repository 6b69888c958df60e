// The behaviour suite: one list of cases (retries, timeouts, faults, filters, failover,
// circuit breaking) that every wire protocol the proxy serves must pass alike, run once
// per protocol by the files beside this one (as hono runs one case list over all its
// routers). Each case asserts what the client got (status, trellis-error token, body,
// headers), what the app saw (attempts, method, headers, body) and what the outbound
// counted, never how long anything took: time-bound cases use short limits and wait
// for events, so a slow machine only makes them slower.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import type { WireProtocol } from '../../helpers/client.js';
import { eventually } from '../../helpers/eventually.js';
import { startMesh, type Mesh } from './mesh.js';

export interface BehaviourCase {
  readonly name: string;
  run(m: Mesh): Promise<void>;
}

/** The version string the app sees for requests a client sent in `protocol`. */
const appVersion = (m: Mesh): string => (m.protocol === 'HTTP/2' ? '2.0' : '1.1');

export const CASES: readonly BehaviourCase[] = [
  {
    name: "a request reaches the app in the client's protocol, and its answer comes back",
    async run(m) {
      const r = await m.client.api.request('GET', '/plain/hello?q=1', { 'x-custom': 'yes' });
      assert.deepEqual({ status: r.status, body: r.body, error: r.error }, { status: 200, body: 'a 200', error: '' });
      const [seen] = m.a.saw('/plain/hello');
      assert.deepEqual(
        { version: seen?.version, method: seen?.method, url: seen?.url, custom: seen?.headers['x-custom'], source: seen?.headers['trellis-source'] },
        { version: appVersion(m), method: 'GET', url: '/plain/hello?q=1', custom: 'yes', source: 'web' },
      );
    },
  },

  // Retries.
  {
    name: "retry: a GET answered with a listed status is sent again, and the client gets only the retry's answer",
    async run(m) {
      m.a.script('/retry/status/get', [503, 200]);
      const r = await m.client.api.request('GET', '/retry/status/get');
      assert.deepEqual({ status: r.status, body: r.body, error: r.error }, { status: 200, body: 'a 200', error: '' });
      assert.equal(m.a.saw('/retry/status/get').length, 2);
      assert.equal(await m.metric('trellis_http_retries_total', { destination: 'api', route: 'default/retry/status', reason: '503' }), 1);
      // The client never saw the 503: the outbound counted no 503 for the route.
      assert.equal(await m.metric('trellis_http_requests_total', { direction: 'outbound', route: 'default/retry/status', status: '503' }), 0);
    },
  },
  {
    name: 'retry: a 503 from one endpoint is retried on the other, and never reaches the client',
    async run(m) {
      m.a.script('/retry/other', [503]);
      for (let i = 0; i < 10; i++) {
        const r = await m.client.api.request('GET', `/retry/other/${i}`);
        assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'b 200' });
      }
      const failed = m.a.saw('/retry/other').length;
      assert.ok(failed > 0, 'round robin sent some first attempts to the failing endpoint');
      assert.equal(m.b.saw('/retry/other').length, 10);
      assert.equal(await m.metric('trellis_http_retries_total', { destination: 'api', route: 'default/retry/other', reason: '503' }), failed);
      assert.equal(
        await m.metric('trellis_http_requests_total', { direction: 'outbound', route: 'default/retry/other', status: '503' }),
        0,
        'the client saw only 200s',
      );
    },
  },
  {
    name: 'retry: a POST is not sent again without nonIdempotent: the app sees it once and the client gets the failure',
    async run(m) {
      m.a.script('/retry/status/post', [503, 200]);
      const r = await m.client.api.request('POST', '/retry/status/post', {}, 'order=1');
      assert.deepEqual({ status: r.status, body: r.body }, { status: 503, body: 'a 503' });
      assert.deepEqual(
        m.a.saw('/retry/status/post').map((s) => `${s.method} ${s.body}`),
        ['POST order=1'],
      );
    },
  },
  {
    name: "retry: with nonIdempotent a POST is replayed with its body each time, and the last attempt's answer reaches the client",
    async run(m) {
      m.a.script('/retry/unsafe', [503]);
      const r = await m.client.api.request('POST', '/retry/unsafe', {}, 'order=2');
      assert.deepEqual({ status: r.status, body: r.body }, { status: 503, body: 'a 503' });
      assert.deepEqual(
        m.a.saw('/retry/unsafe').map((s) => s.body),
        ['order=2', 'order=2', 'order=2'],
      );
      // A body of several KiB, replayed whole.
      m.a.script('/retry/unsafe/big', [503, 200]);
      const big = `message-${'x'.repeat(3000)}`;
      assert.equal((await m.client.api.request('POST', '/retry/unsafe/big', {}, big)).status, 200);
      assert.deepEqual(
        m.a.saw('/retry/unsafe/big').map((s) => s.body),
        [big, big],
      );
    },
  },
  {
    name: 'retry: a body over maxBodyBytes is not kept, so not retried; a small one is',
    async run(m) {
      m.a.script('/retry/body', [503]);
      assert.equal((await m.client.api.request('PUT', '/retry/body/big', {}, 'x'.repeat(4096))).status, 503);
      assert.equal(m.a.saw('/retry/body/big').length, 1);
      assert.equal((await m.client.api.request('PUT', '/retry/body/small', {}, 'small')).status, 503);
      assert.deepEqual(
        m.a.saw('/retry/body/small').map((s) => s.body),
        ['small', 'small', 'small'],
      );
    },
  },
  {
    name: 'retry: a reset before any response byte (a closed connection or stream, or an RST) is retried, and the access log counts the attempts',
    async run(m) {
      m.peer.script('/retry/reset', ['reset', 'die', 200]);
      const r = await m.client.api.request('GET', '/retry/reset');
      assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'peer 200' });
      assert.equal(m.peer.saw('/retry/reset').length, 3);
      assert.equal(await m.metric('trellis_http_retries_total', { destination: 'api', route: 'default/retry/reset', reason: 'reset' }), 2);
      // Lines are written once per event-loop turn: wait for it.
      const line = await eventually(async () => {
        const found = (await m.accessLog()).find((l) => l.route === 'default/retry/reset');
        assert.ok(found, "the exchange's access log line");
        return found;
      });
      assert.deepEqual({ attempts: line.attempts, status: line.status }, { attempts: 3, status: 200 });
    },
  },
  {
    name: "retry: each attempt carries only its own backendRef's header edits, and the rule's once",
    async run(m) {
      m.a.script('/retry/backend-filters', [503]);
      let ok = 0;
      for (let i = 0; i < 40; i++) if ((await m.client.api.request('GET', `/retry/backend-filters/${i}`)).status === 200) ok++;
      // Half the requests try a first and are retried; with 6 retries nearly all reach b.
      assert.ok(ok >= 36, `${ok} of 40 reached the good backend`);
      const saw = m.b.saw('/retry/backend-filters');
      assert.equal(saw.length, ok);
      for (const s of saw) assert.equal(`${s.headers['x-attempt-of']} / ${s.headers['x-rule']}`, 'b / yes');
      for (const s of m.a.saw('/retry/backend-filters')) assert.equal(`${s.headers['x-attempt-of']} / ${s.headers['x-rule']}`, 'a / yes');
    },
  },
  {
    name: 'retry budget: retries to a destination that always fails stay within its share, and the failures reach the client',
    async run(m) {
      m.a.script('/budget', [503]);
      const n = 20;
      for (let i = 0; i < n; i++) {
        const r = await m.client.budget.request('GET', `/budget/${i}`);
        assert.deepEqual({ status: r.status, body: r.body }, { status: 503, body: 'a 503' });
      }
      const attempts = m.a.saw('/budget').length;
      // Without a budget 4 attempts each (80); with 20% of the requests and no minimum rate, at most 24.
      assert.ok(attempts > n && attempts <= n * 1.2, `attempts: ${attempts}`);
      assert.ok((await m.metric('trellis_http_retry_budget_exhausted_total', { destination: 'budget' })) > 0, 'the spent budget is counted');
    },
  },

  // Timeouts.
  {
    name: "timeout: no response head within backendRequest answers 504 timeout, and the app's request is abandoned",
    async run(m) {
      m.a.script('/timeout/attempt', ['hang']);
      const before = m.a.abandoned;
      const r = await m.client.api.request('GET', '/timeout/attempt');
      assert.deepEqual({ status: r.status, error: r.error }, { status: 504, error: 'timeout' });
      assert.equal(m.a.saw('/timeout/attempt').length, 1, 'no retry policy: one attempt');
      await eventually(() => assert.equal(m.a.abandoned, before + 1));
      // On HTTP/2 the app's stream is cancelled (RST_STREAM CANCEL), not merely closed.
      if (m.protocol === 'HTTP/2') assert.equal(m.a.abandonedCodes.at(-1), http2.constants.NGHTTP2_CANCEL);
      assert.equal(await m.metric('trellis_http_timeouts_total', { destination: 'api', route: 'default/timeout/attempt', timeout: 'attempt' }), 1);
    },
  },
  {
    name: "timeout: an attempt that timed out is retried under a retry policy, and the retry's answer is the response",
    async run(m) {
      m.a.script('/timeout/retried', ['hang', 200]);
      const r = await m.client.api.request('GET', '/timeout/retried');
      assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'a 200' });
      assert.equal(m.a.saw('/timeout/retried').length, 2);
      assert.equal(await m.metric('trellis_http_retries_total', { destination: 'api', route: 'default/timeout/retried', reason: 'timeout' }), 1);
    },
  },
  {
    name: 'timeout: timeouts.request bounds the whole exchange, retries included: 504 request-timeout',
    async run(m) {
      m.a.script('/timeout/request', ['hang']);
      const r = await m.client.api.request('GET', '/timeout/request');
      // 100 retries of 50 ms each were allowed: only the request deadline ends it this soon.
      assert.deepEqual({ status: r.status, error: r.error }, { status: 504, error: 'request-timeout' });
      const attempts = m.a.saw('/timeout/request').length;
      assert.ok(attempts >= 2 && attempts <= 101, `the deadline spanned retries (attempts: ${attempts})`);
      assert.equal(await m.metric('trellis_http_timeouts_total', { destination: 'api', route: 'default/timeout/request', timeout: 'request' }), 1);
    },
  },
  {
    name: 'timeout: a response in time is untouched, and no timer of it fires later on the connection',
    async run(m) {
      for (let i = 0; i < 5; i++) {
        const r = await m.client.api.request('GET', `/timeout/in-time/${i}`);
        assert.deepEqual({ status: r.status, body: r.body, error: r.error }, { status: 200, body: 'a 200', error: '' });
      }
      // A request on the same route that times out outlives every timer of the ones
      // before (same limits, started later): a leftover would have fired by its 504.
      m.a.script('/timeout/in-time/hang', ['hang']);
      assert.equal((await m.client.api.request('GET', '/timeout/in-time/hang')).status, 504);
      const after = await m.client.api.request('GET', '/timeout/in-time/after');
      assert.deepEqual({ status: after.status, body: after.body }, { status: 200, body: 'a 200' });
      assert.equal(await m.metric('trellis_http_timeouts_total', { destination: 'api', route: 'default/timeout/in-time' }), 1);
    },
  },

  // Faults.
  {
    name: "fault: an abort answers the policy's status with fault-abort, and the request never reaches the app",
    async run(m) {
      for (let i = 0; i < 3; i++) {
        const r = await m.client.api.request('GET', `/fault/abort/${i}`);
        assert.deepEqual({ status: r.status, error: r.error }, { status: 503, error: 'fault-abort' });
        assert.match(r.body, /FaultInjection policy default\/chaos/);
      }
      assert.equal(m.a.saw('/fault/abort').length, 0);
      assert.equal(await m.metric('trellis_http_faults_total', { destination: 'api', route: 'default/fault/abort', fault: 'abort' }), 3);
    },
  },
  {
    name: 'fault: a delay longer than the request timeout ends at the deadline with 504 request-timeout, unforwarded',
    async run(m) {
      const r = await m.client.api.request('GET', '/fault/delay-timeout');
      assert.deepEqual({ status: r.status, error: r.error }, { status: 504, error: 'request-timeout' });
      assert.equal(m.a.saw('/fault/delay-timeout').length, 0);
      assert.equal(await m.metric('trellis_http_faults_total', { destination: 'api', route: 'default/fault/delay-timeout', fault: 'delay' }), 1);
    },
  },
  {
    name: 'fault: a delayed request is forwarded after its delay, body and all',
    async run(m) {
      const r = await m.client.api.request('POST', '/fault/delay', {}, 'held');
      assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'a 200' });
      assert.deepEqual(
        m.a.saw('/fault/delay').map((s) => s.body),
        ['held'],
      );
      assert.equal(await m.metric('trellis_http_faults_total', { destination: 'api', route: 'default/fault/delay', fault: 'delay' }), 1);
    },
  },

  // Filters.
  {
    name: 'filters: RequestHeaderModifier sets, adds and removes request headers',
    async run(m) {
      const r = await m.client.api.request('GET', '/filters/req-headers/x?q=1', { 'x-set': 'old', 'x-add': 'one', 'x-remove': 'gone', 'x-keep': 'kept' });
      assert.equal(r.status, 200);
      const [s] = m.a.saw('/filters/req-headers');
      assert.ok(s);
      assert.equal(s.url, '/filters/req-headers/x?q=1');
      assert.equal(s.headers['x-set'], 'new', 'set overwrites');
      assert.equal(s.headers['x-add'], 'one, two', 'add keeps the value sent and adds one');
      assert.equal(s.headers['x-remove'], undefined);
      assert.equal(s.headers['x-keep'], 'kept');
      assert.equal(s.headers['trellis-source'], 'web', "the sidecar's own header still goes along");
    },
  },
  {
    name: 'filters: ResponseHeaderModifier edits the head the client gets, the body untouched, request after request',
    async run(m) {
      m.a.script('/filters/res-headers', [{ status: 200, body: 'from a', headers: { 'x-internal': 'secret', 'x-multi': 'from-app' } }]);
      for (let i = 0; i < 3; i++) {
        const r = await m.client.api.request('GET', '/filters/res-headers');
        assert.deepEqual(
          {
            status: r.status,
            multi: r.headers['x-multi'],
            added: r.headers['x-added'],
            internal: r.headers['x-internal'],
            app: r.headers['x-app'],
            body: r.body,
          },
          { status: 200, multi: 'from-filter', added: 'yes', internal: undefined, app: 'a', body: 'from a' },
        );
      }
    },
  },
  {
    name: 'filters: RequestRedirect answers its status and Location, keeping the query string; nothing reaches a backend',
    async run(m) {
      const prefix = await m.client.api.request('GET', '/filters/old/items/7?page=2', { host: 'api:9000' });
      assert.deepEqual(
        { status: prefix.status, location: prefix.headers.location },
        { status: 301, location: 'http://api:9000/filters/new/items/7?page=2' },
        'the port the request came to stays',
      );
      const https = await m.client.api.request('GET', '/filters/secure/login', { host: 'api' });
      assert.deepEqual(
        { status: https.status, location: https.headers.location },
        { status: 302, location: 'https://shop.example.com/filters/secure/login' },
        'port 443 is left out for https',
      );
      const moved = await m.client.api.request('GET', '/filters/moved/a?b=c', { host: 'api' });
      assert.deepEqual(
        { status: moved.status, location: moved.headers.location, body: moved.body },
        { status: 302, location: 'http://api:8443/elsewhere?b=c', body: '' },
      );
      // HTTP/1.1 frames the empty body with a length (HTTP/2 ends the stream instead).
      if (m.protocol === 'HTTP/1.1') assert.equal(moved.headers['content-length'], '0');
      assert.equal(m.a.seen.filter((s) => /^\/(filters\/(old|new|secure|moved)|elsewhere)/.test(s.url)).length, 0);
      // The connection is still usable after a redirect.
      assert.equal((await m.client.api.request('GET', '/plain/after-redirect')).status, 200);
    },
  },
  {
    name: 'filters: RequestRedirect answers 303, 307 and 308 as written, with the Gateway API defaults for the Location',
    async run(m) {
      const seeOther = await m.client.api.request('POST', '/filters/see-other/form?x=1', { host: 'api:9000' }, 'a=b');
      assert.deepEqual(
        { status: seeOther.status, location: seeOther.headers.location, error: seeOther.error },
        { status: 303, location: 'http://example.org:9000/filters/see-other/form?x=1', error: '' },
        'a new hostname keeps the port the request came to (no scheme set)',
      );
      const temporary = await m.client.api.request('PUT', '/filters/temporary/doc', { host: 'api' }, 'body');
      assert.deepEqual(
        { status: temporary.status, location: temporary.headers.location, body: temporary.body },
        { status: 307, location: 'http://api/filters/temporary/doc', body: '' },
        'port 80 is left out for http',
      );
      const permanent = await m.client.api.request('GET', '/filters/permanent', { host: 'api:8080' });
      assert.deepEqual(
        { status: permanent.status, location: permanent.headers.location },
        { status: 308, location: 'https://example.org/filters/permanent' },
        "a scheme set takes the scheme's well-known port, left out",
      );
      if (m.protocol === 'HTTP/1.1') assert.equal(permanent.headers['content-length'], '0');
      assert.equal(m.a.seen.filter((s) => /^\/filters\/(see-other|temporary|permanent)/.test(s.url)).length, 0, 'nothing reached a backend');
      assert.equal((await m.client.api.request('GET', '/plain/after-redirect-codes')).status, 200);
    },
  },
  {
    name: 'filters: URLRewrite changes the authority and path the app sees',
    async run(m) {
      assert.equal((await m.client.api.request('GET', '/filters/v1/api/items?x=1', { host: 'api' })).status, 200);
      const [s] = m.a.saw('/api/items');
      assert.deepEqual({ url: s?.url, host: s?.host }, { url: '/api/items?x=1', host: 'internal.example' });
      assert.equal((await m.client.api.request('GET', '/filters/full?k=v')).status, 200);
      assert.deepEqual(
        m.a.saw('/replaced').map((x) => x.url),
        ['/replaced?k=v'],
      );
    },
  },
  {
    name: "filters: a weighted split uses both backends, and a backendRef's filters apply only to requests sent to it",
    async run(m) {
      for (let i = 0; i < 40; i++) {
        const r = await m.client.api.request('GET', `/filters/per-backend/${i}`);
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-via'], r.headers['x-app'] === 'b' ? 'b-filter' : undefined, `request ${i}`);
      }
      const toA = m.a.saw('/filters/per-backend');
      const toB = m.b.saw('/filters/per-backend');
      assert.ok(toA.length > 0 && toB.length > 0, `both backends used: a ${toA.length}, b ${toB.length}`);
      assert.equal(toA.length + toB.length, 40);
      for (const s of toA) assert.equal(s.headers['x-backend'], undefined);
      for (const s of toB) assert.equal(s.headers['x-backend'], 'b');
    },
  },

  // Failover.
  {
    name: 'failover: a POST whose connection was refused (nothing sent) goes to another endpoint, with no retry policy',
    async run(m) {
      for (let i = 0; i < 4; i++) {
        const r = await m.client.failover.request('POST', `/failover/refused/${i}`, {}, `n=${i}`);
        assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'a 200' });
      }
      assert.deepEqual(
        m.a.saw('/failover/refused').map((s) => s.body),
        ['n=0', 'n=1', 'n=2', 'n=3'],
        'each POST reached the app exactly once',
      );
    },
  },
  {
    name: 'failover: a GET to an instance whose app is down (its sidecar up) is answered by another instance',
    async run(m) {
      // Round robin gives the instance without an app at least one of four first attempts.
      for (let i = 0; i < 4; i++) {
        const r = await m.client.failover.request('GET', `/failover/app-down/${i}`);
        assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'a 200' });
      }
      assert.equal(m.a.saw('/failover/app-down').length, 4);
    },
  },
  {
    name: 'failover: a POST whose app died under it is not sent again: 502 upstream-reset',
    async run(m) {
      m.b.script('/failover/app-reset', ['reset']);
      let last: Awaited<ReturnType<typeof m.client.failover.request>> | undefined;
      for (let i = 0; i < 10 && m.b.saw('/failover/app-reset/post').length === 0; i++) {
        last = await m.client.failover.request('POST', `/failover/app-reset/post/${i}`, {}, 'hi');
      }
      const reached = m.b.saw('/failover/app-reset/post');
      assert.equal(reached.length, 1, 'a POST reached the dying app');
      assert.deepEqual({ status: last?.status, error: last?.error }, { status: 502, error: 'upstream-reset' });
      assert.equal(m.a.saw(reached[0]!.url).length, 0, 'and went nowhere else');
    },
  },
  {
    name: 'failover: a GET whose app died under it is answered by another instance',
    async run(m) {
      m.b.script('/failover/app-reset', ['reset']);
      for (let i = 0; i < 10; i++) {
        const r = await m.client.failover.request('GET', `/failover/app-reset/get/${i}`);
        assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'a 200' });
      }
      assert.equal(m.a.saw('/failover/app-reset/get').length, 10);
      assert.ok(m.b.saw('/failover/app-reset/get').length > 0, 'some went to the dying app first');
    },
  },
  {
    name: 'failover: a POST reset by a dying peer is not sent again: 502 upstream-reset',
    async run(m) {
      m.peer.script('/failover/peer-dies', ['die']);
      let last: Awaited<ReturnType<typeof m.client.failover.request>> | undefined;
      for (let i = 0; i < 10 && m.peer.saw('/failover/peer-dies/post').length === 0; i++) {
        last = await m.client.failover.request('POST', `/failover/peer-dies/post/${i}`, {}, 'order');
      }
      const reached = m.peer.saw('/failover/peer-dies/post');
      assert.equal(reached.length, 1, 'a POST reached the dying peer');
      assert.deepEqual({ status: last?.status, error: last?.error }, { status: 502, error: 'upstream-reset' });
      assert.equal(m.a.saw(reached[0]!.url).length, 0, 'and went nowhere else');
    },
  },
  {
    name: 'failover: safe requests reset by a dying peer before any answer go to another endpoint, with no route retry',
    async run(m) {
      m.peer.script('/failover/peer-dies', ['die']);
      const answers: string[] = [];
      // Concurrent, so some are in flight together when the peer dies, then one at a time.
      await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const method = ['GET', 'OPTIONS'][i % 2]!;
          const r = await m.client.failover.request(method, `/failover/peer-dies/c/${i}`);
          answers.push(`${method} ${r.status} ${r.error}`.trim());
        }),
      );
      for (let i = 0; i < 4; i++) {
        const r = await m.client.failover.request('GET', `/failover/peer-dies/s/${i}`);
        answers.push(`GET ${r.status} ${r.error}`.trim());
      }
      assert.deepEqual(
        answers.filter((a) => !/ 200$/.test(a)),
        [],
        'every safe request was answered',
      );
      assert.ok(
        m.peer.saw('/failover/peer-dies').some((s) => s.method !== 'POST'),
        'some went to the dying peer first',
      );
      assert.ok((await m.metric('trellis_http_retries_total', { destination: 'failover', reason: 'reset' })) > 0);
    },
  },

  // Circuit breaking.
  {
    name: 'circuit breaker: at maxRequests in flight, further requests fail at once with 503 overflow; it closes when they finish',
    async run(m) {
      m.a.script('/breaker/hold', ['hold']);
      const holding = [m.client.breaker.request('GET', '/breaker/hold/1'), m.client.breaker.request('GET', '/breaker/hold/2')];
      await eventually(() => assert.equal(m.a.holding, 2));
      const refused = await Promise.all(Array.from({ length: 3 }, (_, i) => m.client.breaker.request('GET', `/breaker/over/${i}`)));
      assert.deepEqual(
        refused.map((r) => `${r.status} ${r.error}`),
        Array(3).fill('503 overflow'),
      );
      assert.equal(m.a.saw('/breaker/over').length, 0, 'no overflowed request reached the app');
      assert.equal(await m.metric('trellis_circuit_breaker_overflows_total', { destination: 'breaker', limit: 'maxRequests' }), 3);
      m.a.release();
      for (const r of await Promise.all(holding)) assert.equal(r.status, 200);
      assert.equal((await m.client.breaker.request('GET', '/breaker/after')).status, 200);
    },
  },
];

const CASE_TIMEOUT_MS = 15_000;

/** Registers the suite for one wire protocol: one mesh, every case in order. */
export function behaviourSuite(protocol: WireProtocol): void {
  describe(`behaviour over ${protocol}`, () => {
    let mesh: Mesh | undefined;
    before(async () => {
      mesh = await startMesh(protocol);
    });
    after(async () => {
      await mesh?.close();
    });
    // A bound per case, so a hang (a timeout no longer enforced) fails its own case and
    // the rest still run; generous, as a busy machine only makes a case slower.
    for (const c of CASES) test(c.name, { timeout: CASE_TIMEOUT_MS }, () => c.run(mesh!));
  });
}
