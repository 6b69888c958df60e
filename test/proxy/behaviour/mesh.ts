// The mesh the behaviour suite runs in: a client → outbound sidecar → inbound sidecars →
// scripted apps, configured with a snapshot applied directly (no control plane). One
// outbound serves four destinations, each with its own balancer, budget and breaker, so
// a case that sets one off (an endpoint avoided after a reset, a spent budget, an open
// breaker) leaves the others' cases alone:
//
//   api       routes for retries, timeouts, faults and filters over apps a and b
//   failover  endpoints that refuse, lose their app, or die, beside a good one
//   breaker   a circuit breaker of 2 requests in flight
//   budget    a retry budget of 20% with no minimum rate
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BalancingConfig, Endpoint, RetryConfig, RouteEntry, UpstreamSnapshot } from '../../../src/api/protocol.js';
import type { Sidecar } from '../../../src/proxy/sidecar.js';
import { parsePrometheus } from '../../../src/telemetry/prometheus-text.js';
import { openClient, type TestClient, type WireProtocol } from '../../helpers/client.js';
import { startInbound, startOutbound } from '../../helpers/proxy-pair.js';
import { scriptedApp, type ScriptedApp } from '../../helpers/scripted-app.js';

export type Destination = 'api' | 'failover' | 'breaker' | 'budget';

export interface Mesh {
  readonly protocol: WireProtocol;
  /** Apps behind inbound sidecars (endpoints `a`, `b`). */
  readonly a: ScriptedApp;
  readonly b: ScriptedApp;
  /** An app that is its own endpoint, with no sidecar in front: a peer that can die. */
  readonly peer: ScriptedApp;
  readonly outbound: Sidecar;
  /** A client of the outbound listener of each destination, speaking the suite's protocol. */
  readonly client: Readonly<Record<Destination, TestClient>>;
  /** The sum of the outbound's samples of `name` whose labels include `labels`. */
  metric(name: string, labels: Record<string, string>): Promise<number>;
  /** The outbound's access log lines so far. */
  accessLog(): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

/** A rule's retry stanza: 503s, 2 retries, 1 ms backoff base, unless told otherwise. */
export const retryPolicy = (p: Partial<RetryConfig> = {}): RetryConfig => ({
  codes: [503],
  attempts: 2,
  backoffMs: 1,
  nonIdempotent: false,
  maxBodyBytes: 65536,
  ...p,
});

const rule = (name: string, prefix: string, backend: string, extra: Partial<RouteEntry> = {}): RouteEntry => ({
  name: `default/${name}`,
  match: { path: { type: 'PathPrefix', value: prefix } },
  backends: [{ backend, weight: 1 }],
  ...extra,
});

// Round robin, so a two-endpoint backend surely sends some first attempts to each; no
// outlier detection, so an endpoint that fails keeps getting its share.
const ROUND_ROBIN: BalancingConfig = { policy: 'test/round-robin', balancer: 'RoundRobin', panicThreshold: 0 };

const header = (name: string, value: string): { name: string; value: string } => ({ name, value });

/** The api destination's rules, in precedence order (longer prefixes first where they nest). */
function apiRoutes(): RouteEntry[] {
  return [
    rule('retry/status', '/retry/status', 'a', { retry: retryPolicy() }),
    rule('retry/unsafe', '/retry/unsafe', 'a', { retry: retryPolicy({ nonIdempotent: true }) }),
    rule('retry/body', '/retry/body', 'a', { retry: retryPolicy({ maxBodyBytes: 1024 }) }),
    rule('retry/other', '/retry/other', 'ab', { retry: retryPolicy() }),
    rule('retry/reset', '/retry/reset', 'peer', { retry: retryPolicy({ codes: [] }) }),
    {
      name: 'default/retry/backend-filters',
      match: { path: { type: 'PathPrefix', value: '/retry/backend-filters' } },
      filters: [{ type: 'RequestHeaderModifier', edits: { add: [header('x-rule', 'yes')] } }],
      backends: [
        { backend: 'a', weight: 1, filters: [{ type: 'RequestHeaderModifier', edits: { add: [header('x-attempt-of', 'a')] } }] },
        { backend: 'b', weight: 1, filters: [{ type: 'RequestHeaderModifier', edits: { add: [header('x-attempt-of', 'b')] } }] },
      ],
      retry: retryPolicy({ attempts: 6 }),
    },
    rule('timeout/attempt', '/timeout/attempt', 'a', { timeouts: { backendRequestMs: 100 } }),
    // Time limits are short where only a hang meets them, and long where an answer must
    // beat them on a busy machine (the retry that answers, the requests in time).
    rule('timeout/retried', '/timeout/retried', 'a', { timeouts: { backendRequestMs: 300 }, retry: retryPolicy({ codes: [], attempts: 1 }) }),
    // Many retries allowed, each attempt cut at 50 ms: only the whole-request deadline can end it.
    rule('timeout/request', '/timeout/request', 'a', { timeouts: { requestMs: 1000, backendRequestMs: 50 }, retry: retryPolicy({ codes: [], attempts: 100 }) }),
    rule('timeout/in-time', '/timeout/in-time', 'a', { timeouts: { requestMs: 1500, backendRequestMs: 1000 } }),
    rule('fault/abort', '/fault/abort', 'a', { fault: { policy: 'default/chaos', abort: { httpStatus: 503, percent: 100 } } }),
    rule('fault/delay-timeout', '/fault/delay-timeout', 'a', {
      timeouts: { requestMs: 100 },
      fault: { policy: 'default/chaos', delay: { ms: 60_000, percent: 100 } },
    }),
    rule('fault/delay', '/fault/delay', 'a', { fault: { policy: 'default/chaos', delay: { ms: 1, percent: 100 } } }),
    rule('filters/req-headers', '/filters/req-headers', 'a', {
      filters: [{ type: 'RequestHeaderModifier', edits: { set: [header('x-set', 'new')], add: [header('x-add', 'two')], remove: ['x-remove'] } }],
    }),
    rule('filters/res-headers', '/filters/res-headers', 'a', {
      filters: [
        { type: 'ResponseHeaderModifier', edits: { set: [header('x-multi', 'from-filter')], add: [header('x-added', 'yes')], remove: ['x-internal'] } },
      ],
    }),
    rule('filters/redirect-prefix', '/filters/old', 'a', {
      filters: [{ type: 'RequestRedirect', statusCode: 301, path: { type: 'ReplacePrefixMatch', value: '/filters/new' } }],
    }),
    rule('filters/redirect-https', '/filters/secure', 'a', {
      filters: [{ type: 'RequestRedirect', statusCode: 302, scheme: 'https', hostname: 'shop.example.com' }],
    }),
    {
      ...rule('filters/redirect-port', '/filters/moved', 'a', {
        filters: [{ type: 'RequestRedirect', statusCode: 302, port: 8443, path: { type: 'ReplaceFullPath', value: '/elsewhere' } }],
      }),
      backends: [],
    },
    // The Gateway API's extended redirect statuses; 307 and 308 tell the client to keep its method and body.
    rule('filters/redirect-303', '/filters/see-other', 'a', { filters: [{ type: 'RequestRedirect', statusCode: 303, hostname: 'example.org' }] }),
    rule('filters/redirect-307', '/filters/temporary', 'a', { filters: [{ type: 'RequestRedirect', statusCode: 307 }] }),
    rule('filters/redirect-308', '/filters/permanent', 'a', {
      filters: [{ type: 'RequestRedirect', statusCode: 308, scheme: 'https', hostname: 'example.org' }],
    }),
    rule('filters/rewrite', '/filters/v1/api', 'a', {
      filters: [{ type: 'URLRewrite', hostname: 'internal.example', path: { type: 'ReplacePrefixMatch', value: '/api' } }],
    }),
    {
      name: 'default/filters/rewrite-full',
      match: { path: { type: 'Exact', value: '/filters/full' } },
      filters: [{ type: 'URLRewrite', path: { type: 'ReplaceFullPath', value: '/replaced' } }],
      backends: [{ backend: 'a', weight: 1 }],
    },
    {
      name: 'default/filters/per-backend',
      match: { path: { type: 'PathPrefix', value: '/filters/per-backend' } },
      backends: [
        { backend: 'a', weight: 1 },
        {
          backend: 'b',
          weight: 1,
          filters: [
            { type: 'RequestHeaderModifier', edits: { add: [header('x-backend', 'b')] } },
            { type: 'ResponseHeaderModifier', edits: { add: [header('x-via', 'b-filter')] } },
          ],
        },
      ],
    },
    rule('plain', '/', 'a'),
  ];
}

/** A port nothing listens on: connecting to it is refused before a byte is sent. */
async function refusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function startMesh(protocol: WireProtocol): Promise<Mesh> {
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  const close = async (): Promise<void> => {
    for (const c of cleanup.splice(0).reverse()) await c();
  };
  try {
    const a = await scriptedApp('a');
    const b = await scriptedApp('b');
    const peer = await scriptedApp('peer');
    cleanup.push(
      () => a.close(),
      () => b.close(),
      () => peer.close(),
    );
    const inA = await startInbound('api', 'v1', a.port);
    cleanup.push(() => inA.close());
    const inB = await startInbound('api', 'v2', b.port);
    cleanup.push(() => inB.close());
    // An instance whose sidecar is up and whose app is not.
    const inAppDown = await startInbound('api', 'v3', await refusedPort());
    cleanup.push(() => inAppDown.close());
    const dead = await refusedPort();
    const ep = (id: string, port: number, version = 'v1'): Endpoint => ({ id, host: '127.0.0.1', port, version });
    const epA = ep('a', inA.addresses.inbound!.port);
    const epB = ep('b', inB.addresses.inbound!.port, 'v2');
    const epPeer = ep('peer', peer.port);
    const api: UpstreamSnapshot = {
      service: 'api',
      protocol: 'http',
      balancing: ROUND_ROBIN,
      routes: apiRoutes(),
      backends: {
        a: { name: 'a', endpoints: [epA] },
        b: { name: 'b', endpoints: [epB] },
        ab: { name: 'ab', endpoints: [epA, epB] },
        peer: { name: 'peer', endpoints: [epPeer] },
      },
    };
    const failover: UpstreamSnapshot = {
      service: 'failover',
      protocol: 'http',
      balancing: ROUND_ROBIN,
      routes: [
        rule('failover/refused', '/failover/refused', 'refused-a'),
        rule('failover/app-down', '/failover/app-down', 'appdown-a'),
        // A POST and a GET case each on backends of their own: an endpoint that reset is
        // avoided for a while by its backend's balancer, which would hide it from the other.
        rule('failover/app-reset-post', '/failover/app-reset/post', 'ab-post'),
        rule('failover/app-reset-get', '/failover/app-reset/get', 'ab-get'),
        rule('failover/peer-dies-post', '/failover/peer-dies/post', 'peer-a-post'),
        rule('failover/peer-dies', '/failover/peer-dies', 'peer-a'),
      ],
      backends: {
        'refused-a': { name: 'refused-a', endpoints: [ep('refused', dead), epA] },
        'appdown-a': { name: 'appdown-a', endpoints: [ep('app-down', inAppDown.addresses.inbound!.port, 'v3'), epA] },
        'ab-post': { name: 'ab-post', endpoints: [epA, epB] },
        'ab-get': { name: 'ab-get', endpoints: [epA, epB] },
        'peer-a-post': { name: 'peer-a-post', endpoints: [epPeer, epA] },
        'peer-a': { name: 'peer-a', endpoints: [epPeer, epA] },
      },
    };
    const breaker: UpstreamSnapshot = {
      service: 'breaker',
      protocol: 'http',
      routes: [],
      backends: { breaker: { name: 'breaker', endpoints: [epA] } },
      balancing: { ...ROUND_ROBIN, circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 2, maxRetries: 3 } },
    };
    const budget: UpstreamSnapshot = {
      service: 'budget',
      protocol: 'http',
      balancing: ROUND_ROBIN,
      retryBudget: { percent: 20, windowMs: 60_000, minRetries: 0, minIntervalMs: 1000 },
      routes: [rule('budget', '/', 'budget', { retry: retryPolicy({ attempts: 3 }) })],
      backends: { budget: { name: 'budget', endpoints: [epA] } },
    };
    const logDir = await mkdtemp(join(tmpdir(), 'trellis-behaviour-'));
    cleanup.push(() => rm(logDir, { recursive: true, force: true }));
    const logFile = join(logDir, 'access.log');
    const outbound = await startOutbound('web', { api, failover, breaker, budget }, { accessLog: logFile });
    cleanup.push(() => outbound.close());
    const client = {} as Record<Destination, TestClient>;
    for (const d of ['api', 'failover', 'breaker', 'budget'] as const) {
      client[d] = openClient(protocol, outbound.addresses.upstreams[d]!.port);
      cleanup.push(() => client[d].close());
    }
    return {
      protocol,
      a,
      b,
      peer,
      outbound,
      client,
      close,
      async metric(name, labels) {
        const samples = parsePrometheus(await outbound.metrics.text(), (n) => n === name);
        return samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
      },
      async accessLog() {
        const text = await readFile(logFile, 'utf8').catch(() => '');
        return text
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}
