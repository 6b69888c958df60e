// Gateway API status of the Gateways of class trellis, as Trellis serves them (the
// Gateway API's v1 GatewayStatus; GEP-1364 conditions):
// - `status.conditions`: Accepted (True, reason Accepted, or ListenersNotValid when some
//   listeners are refused; False Invalid when the Gateway is skipped, with its first
//   problem) and Programmed (True; False Invalid when skipped);
// - `status.listeners[]`, per listener of the spec: name, supportedKinds, attachedRoutes
//   (the routes attached by their parentRefs and its allowedRoutes, whatever their status
//   or its own, as the Gateway API counts them; route-status.ts), and conditions Accepted,
//   Programmed (False Invalid when refused), ResolvedRefs (False InvalidCertificateRef or
//   RefNotPermitted when its certificateRef is refused, kubernetes-gateways.ts) and
//   Conflicted (False NoConflicts).
// Every condition carries the Gateway's generation as observedGeneration and keeps its
// lastTransitionTime while its status stays; written by the Lease leader only when it
// differs from what the Gateway holds (status-writer.ts: no write loop).
import type { KubeObject } from './reflector.js';
import { CONTROLLER_NAME } from './route-status.js';
import type { StatusKindPath } from './status-writer.js';

/** Where Gateways' status is written. */
export const STATUS_GATEWAY_KINDS: Readonly<Record<string, StatusKindPath>> = {
  Gateway: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways' },
  GatewayClass: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gatewayclasses', clusterScoped: true },
};

/** What a Gateway's status is judged against (the control plane's view of the Gateways it read). */
export interface GatewayWorld {
  /** Trellis's verdict on a Gateway of class trellis: in force, skipped (why), or not judged yet (undefined: nothing is written). */
  verdict(namespace: string, name: string): { readonly inForce: true } | { readonly inForce: false; readonly problem: string } | undefined;
  /** Its listeners refused for their certificateRefs. */
  refused(namespace: string, name: string): readonly { readonly listener: string; readonly reason: string; readonly message: string }[];
  /** How many routes are attached to the listener (by parentRefs and allowedRoutes alone). */
  attachedRoutes(namespace: string, name: string, listener: string): number;
  /** Whether a Gateway of this class is Trellis's (gatewayClassOwner); absent: class `trellis` only. */
  ours?(className: string): boolean;
}

/** The class name Trellis serves when no GatewayClass object of that name exists (installs from before GatewayClasses were read). */
export const LEGACY_GATEWAY_CLASS = 'trellis';

/**
 * Whether a Gateway of class `className` is Trellis's, given the GatewayClasses listed:
 * the class names `spec.controllerName: trellis.dev/gateway-controller`; with no
 * GatewayClass of that name, the name `trellis` is (backward compatible).
 */
export function gatewayClassOwner(classes: readonly KubeObject[]): (className: unknown) => boolean {
  const controllers = new Map<string, unknown>();
  for (const c of classes) {
    const name = rec(rec(c).metadata).name;
    if (typeof name === 'string') controllers.set(name, rec(rec(c).spec).controllerName);
  }
  return (className) =>
    typeof className === 'string' && (controllers.has(className) ? controllers.get(className) === CONTROLLER_NAME : className === LEGACY_GATEWAY_CLASS);
}

type Obj = Record<string, unknown>;
const rec = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const clip = (s: string): string => (s.length > 1024 ? `${s.slice(0, 1021)}...` : s);

const GROUP = 'gateway.networking.k8s.io';
/** The route kinds a listener of each protocol takes (the gateway proxy's; TCP and UDP listeners are not served). */
const KINDS_BY_PROTOCOL: Readonly<Record<string, readonly string[]>> = {
  HTTP: ['HTTPRoute', 'GRPCRoute'],
  HTTPS: ['HTTPRoute', 'GRPCRoute'],
  TLS: ['TLSRoute'],
};

/** The route kinds a listener supports: those of its protocol, narrowed to its allowedRoutes.kinds when it names some. */
function supportedKinds(listener: Obj): { group: string; kind: string }[] {
  const served = KINDS_BY_PROTOCOL[str(listener.protocol) ?? ''] ?? [];
  const named = arr(rec(listener.allowedRoutes).kinds)
    .map(rec)
    .filter((k) => (str(k.group) ?? GROUP) === GROUP)
    .map((k) => str(k.kind));
  const kinds = named.length > 0 ? served.filter((k) => named.includes(k)) : served;
  return kinds.map((kind) => ({ group: GROUP, kind }));
}

interface Cond {
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

/** The status a Gateway should have; undefined: not of class trellis, or not judged yet. */
export function desiredGatewayStatus(gateway: KubeObject, world: GatewayWorld, now: string): Record<string, unknown> | undefined {
  const spec = rec(gateway.spec);
  const className = spec.gatewayClassName;
  if (typeof className !== 'string' || !(world.ours ? world.ours(className) : className === LEGACY_GATEWAY_CLASS)) return undefined;
  const namespace = str(gateway.metadata?.namespace) ?? 'default';
  const name = str(gateway.metadata?.name) ?? '';
  const verdict = world.verdict(namespace, name);
  if (verdict === undefined) return undefined;
  const generation = typeof gateway.metadata?.generation === 'number' ? gateway.metadata.generation : 0;
  const status = rec(gateway.status);
  const conditionsOf = (previous: unknown, wanted: readonly (readonly [string, Cond])[]): unknown[] => {
    const before = new Map(arr(previous).map((c) => [str(rec(c).type), rec(c)]));
    return wanted.map(([type, c]) => {
      const old = before.get(type);
      const kept = old !== undefined && str(old.status) === c.status ? str(old.lastTransitionTime) : undefined;
      return { type, status: c.status, reason: c.reason, message: clip(c.message), observedGeneration: generation, lastTransitionTime: kept ?? now };
    });
  };
  if (!verdict.inForce) {
    const bad: Cond = { status: 'False', reason: 'Invalid', message: `Trellis does not serve this Gateway: ${verdict.problem}` };
    return {
      ...status,
      conditions: conditionsOf(status.conditions, [
        ['Accepted', bad],
        ['Programmed', bad],
      ]),
      listeners: [],
    };
  }
  const refused = new Map(world.refused(namespace, name).map((r) => [r.listener, r]));
  const previousListeners = new Map(arr(status.listeners).map((l) => [str(rec(l).name), rec(l)]));
  const listeners = arr(spec.listeners)
    .map(rec)
    .map((l) => {
      const listener = str(l.name) ?? '';
      const r = refused.get(listener);
      return {
        name: listener,
        supportedKinds: supportedKinds(l),
        attachedRoutes: world.attachedRoutes(namespace, name, listener),
        conditions: conditionsOf(previousListeners.get(listener)?.conditions, [
          ['Accepted', { status: 'True', reason: 'Accepted', message: 'the listener is valid' }],
          [
            'Programmed',
            r
              ? { status: 'False', reason: 'Invalid', message: `the listener does not serve: ${r.message}` }
              : { status: 'True', reason: 'Programmed', message: 'the gateway proxies serve the listener' },
          ],
          [
            'ResolvedRefs',
            r ? { status: 'False', reason: r.reason, message: r.message } : { status: 'True', reason: 'ResolvedRefs', message: 'every reference resolves' },
          ],
          ['Conflicted', { status: 'False', reason: 'NoConflicts', message: 'no conflicts' }],
        ]),
      };
    });
  const accepted: Cond =
    refused.size > 0
      ? { status: 'True', reason: 'ListenersNotValid', message: `listeners refused: ${[...refused.keys()].join(', ')}; the others serve` }
      : { status: 'True', reason: 'Accepted', message: 'Trellis serves this Gateway' };
  return {
    ...status,
    conditions: conditionsOf(status.conditions, [
      ['Accepted', accepted],
      ['Programmed', { status: 'True', reason: 'Programmed', message: 'the gateway proxies serve this Gateway' }],
    ]),
    listeners,
  };
}

/**
 * The status a GatewayClass should have: Accepted True when its `spec.controllerName` is
 * Trellis's (other controllers' classes: undefined, nothing written), the class's
 * generation as observedGeneration, the lastTransitionTime kept while the status stays.
 */
export function desiredGatewayClassStatus(gatewayClass: KubeObject, now: string): Record<string, unknown> | undefined {
  if (rec(gatewayClass.spec).controllerName !== CONTROLLER_NAME) return undefined;
  const generation = typeof gatewayClass.metadata?.generation === 'number' ? gatewayClass.metadata.generation : 0;
  const status = rec(gatewayClass.status);
  const others = arr(status.conditions).filter((c) => str(rec(c).type) !== 'Accepted');
  const old = arr(status.conditions)
    .map(rec)
    .find((c) => str(c.type) === 'Accepted');
  const kept = old !== undefined && str(old.status) === 'True' ? str(old.lastTransitionTime) : undefined;
  const accepted = {
    type: 'Accepted',
    status: 'True',
    reason: 'Accepted',
    message: 'Trellis serves the Gateways of this class',
    observedGeneration: generation,
    lastTransitionTime: kept ?? now,
  };
  return { ...status, conditions: [accepted, ...others] };
}
