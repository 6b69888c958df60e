// The request path of every proxy role, written once. Read top to bottom: each `push`
// is a layer, outermost first, with why it sits where it does. HTTP/1.1 and HTTP/2
// (and, later, TLS-terminated connections) run the same stacks; only the listener that
// makes the exchange (above) and the codec that sends it (below: `build(codec)`) differ.
// Requests go down; outcomes (stack/outcome.ts) come back up through the same layers,
// innermost first. Where planned capabilities go is marked; docs/architecture.md draws it.
import type { Endpoint } from '../../api/protocol.js';
import type { AccessLog } from '../../telemetry/access-log.js';
import type { ProxyMetrics } from '../../telemetry/metrics.js';
import { fault } from '../resilience/fault.js';
import { backendFilters, ruleFilters } from '../filters/index.js';
import { inboundIdentity, outboundIdentity, type CallerIdentity } from '../identity.js';
import { requestAuthentication, type RequestAuthenticationParts } from '../authn/request-authentication.js';
import { authorization } from '../authz/layer.js';
import type { AuthzEngine } from '../authz/engine.js';
import type { AuthzMetrics } from '../authz/metrics.js';
import { localApp, route, split, upstream, type AddressedInstance } from '../routing/layers.js';
import { balance } from '../balancer/balance-layer.js';
import { telemetry } from './telemetry.js';
import { trace, traceAttempts } from './trace.js';
import type { Tracer } from '../../telemetry/tracing/tracer.js';
import { forwarded } from '../gateway/forwarded.js';
import { edgeDestination, type ServiceOfBackend } from '../gateway/edge-destination.js';
import { sendableElsewhere } from '../resilience/methods.js';
import { retry } from '../resilience/retry.js';
import type { CompiledUpstream } from '../routing/router.js';
import { headTimeout, timeouts, type Deadlines } from '../resilience/timeout.js';
import { upgrades } from '../routing/upgrade.js';
import { rateLimit, type RateLimitObserver } from '../ratelimit/layer.js';
import type { RateLimits } from '../ratelimit/rate-limits.js';
import type { Picked, Split } from './decisions.js';
import { Stack, type Layer } from './layer.js';
import type { TapHub } from '../tap/tap-hub.js';
import type { EgressPolicy } from '../egress/egress-policy.js';

/** What the outbound stack needs of its proxy. */
export interface OutboundParts {
  /** This proxy's service and version (the source of its calls). */
  readonly service: string;
  readonly version: string;
  /** The snapshot's compiled upstreams by service key; null before the first snapshot. */
  readonly lookup: (service: string) => CompiledUpstream | undefined | null;
  /**
   * The same upstreams by every host name that reaches them from this proxy's namespace
   * (`svc`, `svc.ns`, `svc.ns.svc[.<cluster domain>]`); absent: by key, as `lookup`.
   */
  readonly lookupHost?: (host: string) => CompiledUpstream | undefined | null;
  /** The instance of the snapshot listening at `host:port` (a request may address one); null before the first snapshot. */
  readonly lookupAddress: (address: string) => AddressedInstance | undefined | null;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog;
  readonly deadlines: Deadlines;
  /** The proxy's tap point; absent: none. */
  readonly tap?: TapHub;
  /** The proxy's tracer (sampling and span export); off until a snapshot turns tracing on. */
  readonly tracer: Tracer;
  /** REGISTRY_ONLY (egress/egress-policy.ts): how an unknown host is refused; absent: as ALLOW_ANY. */
  readonly egress?: EgressPolicy;
}

/**
 * The outbound stack: the app (or, at a gateway, the outside) calling a service of the
 * mesh. `fixedService` is the destination of a per-upstream listener (`fixedPort` the
 * port of a multi-port service it reaches; absent: its first); without it the Host header
 * names both (the HTTP-proxy listener).
 */
export function outboundStack(p: OutboundParts, fixedService?: string, fixedPort?: number): Stack<Picked<Split>> {
  return (
    Stack.start()
      // Outermost, so it sees every outcome, errors included, and records each exchange once, when it ends.
      .push(telemetry({ direction: 'outbound', service: p.service, version: p.version, metrics: p.metrics, accessLog: p.accessLog, tap: p.tap }))
      // The hop's client span, right inside telemetry: it covers everything below (retries,
      // timeouts, the balancer's choice) and ends on the `end` outcome; telemetry, outside
      // it, still sees the span for the latency histogram's exemplar.
      .push(trace({ direction: 'outbound', service: p.service, version: p.version, tracer: p.tracer }))
      // The caller is this proxy's app: what it claims about itself is dropped before anything reads it.
      .push(outboundIdentity(p.service))
      // The destination service, from the listener or the Host header: nothing below runs without one.
      // (The port of a multi-port service too: the listener's, or the Host's.)
      .push(upstream(fixedService === undefined ? (p.lookupHost ?? p.lookup) : p.lookup, fixedService, p.lookupAddress, fixedPort, p.egress))
      // The destination's routes pick the rule; every layer below reads the rule's policies.
      .push(route)
      // Judged once the route is known, so a request no route takes gets its 404 first.
      .push(upgrades((ex) => ex.upstream.upgrades))
      // The rule's filters may answer (a redirect) or edit the request before any backend is
      // chosen, and edit the response head on the way back; they need no resilience below.
      .push(ruleFilters)
      // The request deadline covers fault delays and every retry, so it sits outside both;
      // it also watches each attempt's wait for its response head.
      .push(timeouts(p.deadlines))
      // Outside retry, as Envoy's fault filter sits before its router: an injected abort
      // reaches the client instead of being retried away.
      .push(fault(p.metrics))
      // Wraps split and balance, so each retry picks its backend and endpoint anew
      // (linkerd's retry sits above its distribute layer for the same reason).
      .push(retry(p.metrics))
      // Each retry retry sends is a span of its own (the first attempt is the hop's span).
      .push(traceAttempts)
      // A backend of the rule by weight: the canary and blue/green split.
      .push(split)
      // The picked backendRef's own filters, after split because they belong to it.
      .push(backendFilters)
      // Innermost: picks the endpoint and keeps the attempt's books from its outcome, and
      // sends a request nothing of which reached an app to another endpoint.
      .push(balance)
  );
}

/**
 * A Gateway's listener (src/proxy/gateway/): the outbound stack with the edge's own layer
 * pushed right inside identity. Its clients are outside the mesh, so the outbound identity
 * layer already treats them as untrusted; `forwarded` then replaces what they claim about
 * the connection (X-Forwarded-For, Forwarded, X-Forwarded-Proto) and gives each request an
 * x-request-id. `fixedService` is the port's route table (GatewayPortSnapshot.upstream).
 * (Authorization and rate limits for the edge go here too, above `upstream`.)
 */
const noService: ServiceOfBackend = () => undefined;
const noServices = (): ServiceOfBackend => noService;

/** What a gateway judges at the edge: the AuthorizationPolicies and RateLimitPolicies that target its Gateway. */
export interface EdgeParts {
  /** The Gateway port the listener serves, as rules' `to.operation.ports` name it. */
  readonly port: number;
  readonly authorization: () => AuthzEngine;
  readonly authzMetrics: AuthzMetrics;
  readonly rateLimits: () => RateLimits | undefined;
  readonly rateLimitObserver: RateLimitObserver;
  /** The rate limits' clock (ms); absent: performance.now. */
  readonly rateLimitClock?: () => number;
  /** The mesh service of a backend name (gateway/edge-destination.ts), from the snapshot in force. */
  readonly serviceOfBackend: () => ServiceOfBackend;
}

export function gatewayStack(p: OutboundParts, fixedService: string, scheme: 'http' | 'https', edge?: EdgeParts): Stack<Picked<Split>> {
  const outside = Stack.start()
    .push(telemetry({ direction: 'outbound', service: p.service, version: p.version, metrics: p.metrics, accessLog: p.accessLog, tap: p.tap }))
    // The edge's span: a request from outside starts its trace here (head sampling).
    .push(trace({ direction: 'outbound', service: p.service, version: p.version, tracer: p.tracer, edge: true }))
    .push(outboundIdentity(p.service))
    .push(forwarded(scheme));
  // Above upstream, as at a sidecar's inbound side: a request the Gateway's policies refuse
  // (403 forbidden, 429 rate-limited) is answered here and never routed into the mesh;
  // authorization first, so a refused request spends no tokens. With no policy on the
  // Gateway each costs one read per request.
  const judged =
    edge === undefined
      ? outside
      : outside
          .push(authorization({ service: p.service, port: edge.port, engine: edge.authorization, metrics: edge.authzMetrics }))
          .push(rateLimit(edge.rateLimits, edge.rateLimitObserver, edge.rateLimitClock));
  return (
    judged
      .push(upstream(p.lookup, fixedService, p.lookupAddress))
      .push(route)
      .push(upgrades((ex) => ex.upstream.upgrades))
      .push(ruleFilters)
      .push(timeouts(p.deadlines))
      .push(fault(p.metrics))
      .push(retry(p.metrics))
      .push(traceAttempts)
      .push(split)
      // The destination label: the backend's service, not the port's table (edge-destination.ts).
      .push(edgeDestination(edge?.serviceOfBackend ?? noServices))
      .push(backendFilters)
      .push(balance)
  );
}

/** What the inbound stack needs of its proxy. */
export interface InboundParts {
  readonly service: string;
  readonly version: string;
  readonly app: Endpoint;
  /** Who the caller is (identity.ts); with mTLS, its certificate. */
  readonly identify: CallerIdentity;
  /** The end-user JWT rules of the snapshot in force (authn/), and their counters. */
  readonly requestAuthn: Omit<RequestAuthenticationParts, 'realm'>;
  /** The port this listener serves, as AuthorizationPolicies name it (a multi-port service's port; else the app's). */
  readonly port: number;
  /** The AuthorizationPolicies of the snapshot in force (authz/engine.ts). */
  readonly authorization: () => AuthzEngine;
  readonly authzMetrics: AuthzMetrics;
  /** The upgrade protocols this service accepts (its snapshot's). */
  readonly upgrades: () => readonly string[];
  /** The snapshot's rate limits on this service (undefined: none), and who counts refusals. */
  readonly rateLimits: () => RateLimits | undefined;
  readonly rateLimitObserver: RateLimitObserver;
  /** The rate limits' clock (ms); absent: performance.now. */
  readonly clock?: () => number;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog;
  readonly deadlines: Deadlines;
  /** The proxy's tap point; absent: none. */
  readonly tap?: TapHub;
  readonly tracer: Tracer;
}

/** The inbound stack: another sidecar (or the ingress) calling this proxy's app. */
export function inboundStack(p: InboundParts): Stack<Picked> {
  return (
    Stack.start()
      // Outermost, as outbound: every exchange recorded once, however it ends.
      .push(telemetry({ direction: 'inbound', service: p.service, version: p.version, metrics: p.metrics, accessLog: p.accessLog, tap: p.tap }))
      // The hop's server span, right inside telemetry, as outbound; the app's spans are its children.
      .push(trace({ direction: 'inbound', service: p.service, version: p.version, tracer: p.tracer }))
      // The caller, checked against the mesh's services; a claim it can't back is stripped.
      // (Authorization goes right inside it: it judges a known caller.)
      .push(inboundIdentity(p.identify))
      // The end user, from a JWT (RequestAuthentication): inside identity, so a refused token
      // is counted against a known caller, and outside authorization, which reads what it decides.
      .push(requestAuthentication({ ...p.requestAuthn, realm: p.service }))
      // Judges the known caller (and its end user) before anything reaches the app.
      .push(authorization({ service: p.service, port: p.port, engine: p.authorization, metrics: p.authzMetrics }))
      // After authorization, so a caller refused there spends no one's tokens; before the
      // app, which a refused request never reaches. Per caller, it reads the identity above.
      .push(rateLimit(p.rateLimits, p.rateLimitObserver, p.clock))
      // The app's own sidecar holds every caller to the service's upgrades, whatever their outbound side did.
      .push(upgrades(() => p.upgrades(), p.service))
      // Every request goes to the one local app.
      .push(localApp(p.app))
      // The app's wait for a response head is bounded by the connection's default.
      .push(headTimeout(p.deadlines))
      // Innermost: the app's reset of a request nothing of which it answered becomes an answer the caller can act on.
      .push(appUnavailable)
  );
}

/**
 * An app that reset a safe body-less request before answering it is answered
 * 503 app-unavailable, which the caller's sidecar sends to another endpoint (its
 * balance layer): the request did nothing a second copy could repeat.
 */
const appUnavailable: Layer<Picked> = (next) => ({
  request: next,
  back(ex, o, outer) {
    if (o.kind !== 'reset' || o.partial === true || ex.responseStarted || !sendableElsewhere(ex.req.method, ex.bodyless)) return outer(ex, o);
    ex.fail('TRELLIS_E_APP_UNAVAILABLE', { address: o.params.address, reason: `${String(o.params.reason ?? 'reset')} before answering` });
    return false;
  },
});
