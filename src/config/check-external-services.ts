// ExternalServices against each other and the mesh: names that no mesh service has,
// hosts declared once, STATIC with IP addresses and DNS without, TLS origination only
// on HTTP and TCP ports (a TLS or HTTPS port's TLS is the app's own), and its CA bundle read and parsed now (so a bad file is refused with
// its file and field path, and compiling a snapshot reads nothing).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Problem } from './problems.js';
import type { MeshResource } from './schema.js';
import type { ExternalServiceResource } from './schema/external-service.js';
import { ServiceIndex } from './service-index.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

export interface ExternalServiceSource {
  doc: SourceDocument;
  resource: ExternalServiceResource;
}

/** An ExternalService as the control plane compiles it (its CA bundle read). */
export interface ExternalServiceConfig {
  readonly name: string;
  readonly namespace: string;
  /** Lower case, as Host headers are looked up. */
  readonly hosts: readonly string[];
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS' | 'TLS' | 'TCP';
  readonly resolution: 'STATIC' | 'DNS';
  /** Where connections go: the STATIC addresses, or the first host (DNS, resolved per connection). */
  readonly endpoints: readonly { readonly host: string; readonly port: number }[];
  /** TLS origination: the CA bundle (PEM) and the SNI the server's certificate must carry. */
  readonly tls?: { readonly ca: string; readonly sni: string };
}

/** Checks the ExternalServices; returns the problems, the resolved ones, and the CA files read (to watch). */
export function checkExternalServices(
  meshDoc: SourceDocument,
  mesh: MeshResource,
  sources: readonly ExternalServiceSource[],
): { problems: Problem[]; externalServices: ExternalServiceConfig[]; files: string[] } {
  const problems: Problem[] = [];
  const files: string[] = [];
  const out: ExternalServiceConfig[] = [];
  const index = new ServiceIndex(mesh);
  const names = new Map<string, ExternalServiceSource>();
  const hosts = new Map<string, ExternalServiceSource>();
  const gateway = mesh.spec.outboundTrafficPolicy?.egressGateway?.name;
  for (const source of sources) {
    const { doc, resource } = source;
    const at = (path: (string | number)[], message: string): void => void problems.push(problemAt(doc, path, message));
    const before = problems.length;
    const namespace = resource.metadata.namespace ?? 'default';
    const name = resource.metadata.name;
    const key = `${namespace}/${name}`;
    const first = names.get(key);
    if (first !== undefined) at(['metadata', 'name'], `ExternalService "${key}" is defined twice (also ${first.doc.file}); names must be unique`);
    else names.set(key, source);
    if (index.get(namespace, name) !== undefined)
      at(['metadata', 'name'], `"${name}" is a mesh service${ServiceIndex.where(namespace)}; an ExternalService needs a name of its own (routes name it)`);
    if (name === gateway) at(['metadata', 'name'], `"${name}" is the mesh's egress gateway (spec.outboundTrafficPolicy.egressGateway); choose another name`);
    const lower = resource.spec.hosts.map((h) => h.toLowerCase());
    for (const [i, h] of lower.entries()) {
      const other = hosts.get(h);
      if (other !== undefined && other !== source)
        at(
          ['spec', 'hosts', i],
          `host ${h} is already declared by ExternalService "${other.resource.metadata.name}" (${other.doc.file}); a host belongs to one`,
        );
      else hosts.set(h, source);
    }
    const port = resource.spec.ports[0]!;
    const target = port.targetPort ?? port.number;
    const endpoints: { host: string; port: number }[] = [];
    if (resource.spec.resolution === 'STATIC') {
      if (resource.spec.endpoints === undefined) at(['spec', 'endpoints'], 'resolution STATIC needs endpoints: the addresses connections go to');
      for (const [i, e] of (resource.spec.endpoints ?? []).entries()) {
        if (isIP(e.address) === 0)
          at(['spec', 'endpoints', i, 'address'], `"${e.address}" is not an IP address; STATIC endpoints are addresses (use resolution DNS for names)`);
        else endpoints.push({ host: e.address.toLowerCase(), port: e.port ?? target });
      }
    } else {
      if (resource.spec.endpoints !== undefined)
        at(['spec', 'endpoints'], 'resolution DNS takes no endpoints: connections go to the first host, resolved when they open');
      endpoints.push({ host: lower[0]!, port: target });
    }
    let tls: ExternalServiceConfig['tls'];
    const t = resource.spec.tls;
    if (t !== undefined) {
      if (port.protocol !== 'HTTP' && port.protocol !== 'TCP') {
        at(
          ['spec', 'tls'],
          `TLS origination is for HTTP and TCP ports (the app speaks plaintext); port ${port.number} is ${port.protocol}, whose TLS the app speaks itself`,
        );
      } else {
        const file = isAbsolute(t.caFile) ? t.caFile : resolve(dirname(resolve(doc.file)), t.caFile);
        files.push(file);
        try {
          const ca = readFileSync(file, 'utf8');
          // Parses the first certificate; Node's TLS takes the whole bundle.
          new X509Certificate(ca);
          tls = { ca, sni: (t.sni ?? lower[0]!).toLowerCase() };
        } catch (err) {
          at(['spec', 'tls', 'caFile'], `cannot use ${file} as a CA bundle: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
    if (problems.length > before) continue;
    out.push({
      name,
      namespace,
      hosts: lower,
      port: port.number,
      protocol: port.protocol,
      resolution: resource.spec.resolution,
      endpoints,
      ...(tls ? { tls } : {}),
    });
  }
  if (gateway !== undefined && index.get('default', gateway) !== undefined) {
    problems.push(
      problemAt(
        meshDoc,
        ['spec', 'outboundTrafficPolicy', 'egressGateway', 'name'],
        `"${gateway}" is a mesh service; the egress gateway needs a name of its own`,
      ),
    );
  }
  return { problems, externalServices: out, files };
}
