// The gateways `trellis up` runs: a gateway proxy per Gateway the mesh file declares
// (its --service is the Gateway's key, so it serves that Gateway and calls the mesh as it,
// over mTLS with its own certificate), and, when the mesh declares no Gateway named
// `trellis-ingress` but has public services, the ingress Gateway derived from them (one
// HTTP listener per public service, on its public port, routing everything to it) so
// mesh files written before Gateways run as they did. The derived Gateway is a file in
// the state folder the control plane reads with the mesh file.
import type { MeshConfig, NormalizedService } from '../config/load.js';
import { INGRESS_SERVICE } from '../api/protocol.js';
import { DEFAULT_NAMESPACE, serviceKey } from '../api/names.js';

/** A Gateway's key as a proxy names its service: `name`, or `name.namespace` outside default. */
export function gatewayKey(g: { name: string; namespace: string }): string {
  return g.namespace === DEFAULT_NAMESPACE ? g.name : `${g.name}.${g.namespace}`;
}

/** The derived ingress' listener for a public service: its key, dots made dashes (a section name). */
export function derivedListenerName(service: string): string {
  return service.replace(/\./g, '-');
}

/**
 * The derived ingress Gateway and its HTTPRoutes (YAML) for public services and the ports
 * they were given. Each route lives in its service's namespace (the listeners allow all).
 */
export function derivedIngressYaml(services: readonly NormalizedService[], ports: Readonly<Record<string, number>>): string {
  const docs: string[] = [];
  const listeners = services.map((s) => {
    const key = serviceKey(s.name, s.namespace);
    return `    - name: ${derivedListenerName(key)}\n      port: ${ports[key]}\n      protocol: HTTP\n      allowedRoutes: { namespaces: { from: All } }`;
  });
  docs.push(
    [
      '# Made by `trellis up` from the public services of the mesh file: the ingress Gateway',
      '# (one HTTP listener per public service). Declare a Gateway named trellis-ingress to replace it.',
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: Gateway',
      `metadata: { name: ${INGRESS_SERVICE} }`,
      'spec:',
      '  listeners:',
      ...listeners,
    ].join('\n'),
  );
  for (const s of services) {
    const key = serviceKey(s.name, s.namespace);
    docs.push(
      [
        'apiVersion: gateway.networking.k8s.io/v1',
        'kind: HTTPRoute',
        `metadata: { name: ${INGRESS_SERVICE}-${derivedListenerName(key)}, namespace: ${s.namespace ?? DEFAULT_NAMESPACE} }`,
        'spec:',
        `  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: ${INGRESS_SERVICE}, namespace: ${DEFAULT_NAMESPACE}, sectionName: ${derivedListenerName(key)} }]`,
        `  rules: [{ backendRefs: [{ name: ${s.name} }] }]`,
      ].join('\n'),
    );
  }
  return `${docs.join('\n---\n')}\n`;
}

/**
 * The public URL of each service a Gateway's routes send to: the first listener (HTTPS
 * before HTTP, then in order) with a route whose backendRefs name the service or one of
 * its versions. `at` gives where a Gateway's port is actually open.
 */
export function gatewayPublicUrls(config: MeshConfig, at: (gateway: string, port: number) => number | undefined): Record<string, string> {
  const urls: Record<string, string> = {};
  const services = new Map<string, string>();
  for (const s of config.services) {
    const key = serviceKey(s.name, s.namespace);
    const ns = s.namespace ?? DEFAULT_NAMESPACE;
    services.set(`${ns}/${s.name}`, key);
    for (const v of s.versions) services.set(`${ns}/${s.name}-${v.name}`, key);
  }
  const gateways = [...config.gateways].sort((a, b) => Number(gatewayKey(b) === INGRESS_SERVICE) - Number(gatewayKey(a) === INGRESS_SERVICE));
  for (const g of gateways) {
    const listeners = [...g.listeners].sort((a, b) => Number(b.protocol === 'HTTPS') - Number(a.protocol === 'HTTPS'));
    for (const l of listeners) {
      const port = at(gatewayKey(g), l.port);
      if (port === undefined) continue;
      for (const { resource } of config.routes) {
        if (resource.kind === 'TCPRoute') continue;
        const ns = resource.metadata.namespace ?? DEFAULT_NAMESPACE;
        const refs = resource.spec.parentRefs as readonly { kind?: string; name: string; namespace?: string; sectionName?: string; port?: number }[];
        const attached = refs.some(
          (r) =>
            r.kind === 'Gateway' &&
            r.name === g.name &&
            (r.namespace ?? ns) === g.namespace &&
            (r.sectionName === undefined || r.sectionName === l.name) &&
            (r.port === undefined || r.port === l.port),
        );
        if (!attached) continue;
        for (const rule of resource.spec.rules as readonly { backendRefs?: readonly { name: string; namespace?: string }[] }[]) {
          for (const b of rule.backendRefs ?? []) {
            const key = services.get(`${b.namespace ?? ns}/${b.name}`);
            if (key !== undefined && urls[key] === undefined) urls[key] = l.protocol === 'HTTPS' ? `https://localhost:${port}` : `http://127.0.0.1:${port}`;
          }
        }
      }
    }
  }
  return urls;
}
