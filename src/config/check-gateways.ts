// Gateways against each other and their Secrets: listener names and ports that don't
// clash, HTTPS listeners with certificates that load, and each certificate read and
// checked now (parsed, in date, its key its own), so a bad or expired file is refused
// with its file and field path and the certificates in force stay. The result carries
// the PEMs, so compiling a gateway's snapshot reads nothing.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { GatewayCertificate } from '../api/protocol.js';
import { localhostFiles, localTlsDir, servingCertificateProblem } from '../security/local-tls.js';
import type { Problem } from './problems.js';
import type { GatewayResource, SecretResource, TLSRouteResource } from './schema.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

export interface GatewaySource {
  doc: SourceDocument;
  resource: GatewayResource;
}
export interface SecretSource {
  doc: SourceDocument;
  resource: SecretResource;
}
export interface TLSRouteSource {
  doc: SourceDocument;
  resource: TLSRouteResource;
}

/** A TLSRoute attached to a TLS (Passthrough) listener: the server names it takes, and where it sends them. */
export interface PassthroughRouteConfig {
  /** `<namespace>/<name>` of the TLSRoute. */
  readonly name: string;
  /** The SNI names it takes, narrowed to the listener's hostname; undefined: any. */
  readonly hostnames: readonly string[] | undefined;
  readonly backends: readonly { readonly name: string; readonly namespace: string; readonly weight: number }[];
}

/** A listener with what its certificateRefs resolved to. */
export interface GatewayListenerConfig {
  readonly name: string;
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS' | 'TLS';
  readonly hostname?: string;
  readonly certificates: readonly GatewayCertificate[];
  /** A TLS listener: the TLSRoutes attached, in file order. */
  readonly passthrough?: readonly PassthroughRouteConfig[];
  /** Which namespaces' routes may attach: the Gateway's own, or any. */
  readonly from: 'Same' | 'All';
  /** Route kinds allowed; absent: HTTPRoute and GRPCRoute. */
  readonly kinds?: readonly string[];
}

export interface GatewayConfig {
  readonly name: string;
  readonly namespace: string;
  readonly listeners: readonly GatewayListenerConfig[];
}

export const CERTIFICATE_FILE_ANNOTATION = 'trellis.dev/certificate-file';
export const KEY_FILE_ANNOTATION = 'trellis.dev/key-file';
/**
 * `trellis.dev/local-certificate: localhost`: the certificate `trellis up` makes for
 * localhost (src/security/local-tls.ts), kept in the state folder, so a mesh file can
 * serve HTTPS on one machine without certificate files of its own.
 */
export const LOCAL_CERTIFICATE_ANNOTATION = 'trellis.dev/local-certificate';

/** Where Secrets' files are looked for beyond the config's own folders. */
export interface GatewayCheckOptions {
  /**
   * The state folder of the run (`trellis up`, `trellis control`): a local-certificate
   * Secret reads its files there. Absent (`trellis validate`): such a Secret is taken as
   * written and gives its listener no certificate (the runner makes the files at start).
   */
  readonly stateDir?: string;
  /** The TLSRoutes of the config: attached to the Gateways' TLS listeners, checked against them. */
  readonly tlsRoutes?: readonly TLSRouteSource[];
  /**
   * Whether a Gateway of `gatewayNamespace` may name a Secret of another namespace (a
   * ReferenceGrant there allows it: the Kubernetes source's Gateways). Absent: never, as
   * in the mesh file, where a Gateway's certificates are in its own namespace.
   */
  readonly secretRefPermitted?: (gatewayNamespace: string, secretNamespace: string, secretName: string) => boolean;
}

/** Checks the Gateways; returns the problems, the resolved Gateways, and the certificate files read (to watch). */
export function checkGateways(
  gateways: readonly GatewaySource[],
  secrets: readonly SecretSource[],
  now = Date.now(),
  options: GatewayCheckOptions = {},
): { problems: Problem[]; gateways: GatewayConfig[]; files: string[] } {
  const problems: Problem[] = [];
  const files: string[] = [];
  const out: GatewayConfig[] = [];
  const secretsByKey = new Map(secrets.map((s) => [`${s.resource.metadata.namespace ?? 'default'}/${s.resource.metadata.name}`, s]));
  const seen = new Map<string, GatewaySource>();
  for (const g of gateways) {
    const namespace = g.resource.metadata.namespace ?? 'default';
    const key = `${namespace}/${g.resource.metadata.name}`;
    if (seen.has(key)) {
      problems.push(
        problemAt(g.doc, ['metadata', 'name'], `Gateway "${key}" is defined twice (also in ${seen.get(key)!.doc.file}); Gateway names must be unique`),
      );
      continue;
    }
    seen.set(key, g);
    const names = new Set<string>();
    const ports = new Map<number, { protocol: string; hostnames: Set<string> }>();
    const listeners: GatewayListenerConfig[] = [];
    for (const [i, l] of g.resource.spec.listeners.entries()) {
      const at = (path: (string | number)[], message: string): void => void problems.push(problemAt(g.doc, ['spec', 'listeners', i, ...path], message));
      if (names.has(l.name)) at(['name'], `listener name "${l.name}" is used twice; listener names must be unique in a Gateway`);
      names.add(l.name);
      const port = ports.get(l.port) ?? { protocol: l.protocol, hostnames: new Set<string>() };
      ports.set(l.port, port);
      if (port.protocol !== l.protocol) at(['protocol'], `port ${l.port} already has a ${port.protocol} listener; listeners sharing a port speak one protocol`);
      const host = l.hostname ?? '';
      if (port.hostnames.has(host))
        at(
          ['hostname'],
          `another listener on port ${l.port} has ${host === '' ? 'no hostname' : `hostname ${host}`}; listeners sharing a port need distinct hostnames`,
        );
      port.hostnames.add(host);
      const certificates: GatewayCertificate[] = [];
      if (l.protocol === 'HTTPS' && l.tls?.certificateRefs === undefined)
        at(['protocol'], 'an HTTPS listener needs tls.certificateRefs naming a Secret with its certificate');
      if (l.protocol === 'HTTPS' && l.tls?.mode === 'Passthrough')
        at(['tls', 'mode'], 'an HTTPS listener terminates TLS; for Passthrough use protocol: TLS with TLSRoutes');
      if (l.protocol === 'HTTP' && l.tls !== undefined) at(['tls'], 'an HTTP listener takes no tls (use protocol: HTTPS)');
      if (l.protocol === 'TLS' && l.tls?.mode !== 'Passthrough')
        at(
          ['tls', 'mode'],
          "a TLS listener passes TLS through to its TLSRoutes' backends: it needs tls.mode: Passthrough (to terminate TLS, use protocol: HTTPS)",
        );
      if (l.protocol === 'TLS' && l.tls?.certificateRefs !== undefined)
        at(['tls', 'certificateRefs'], 'a Passthrough listener serves no certificate: the backend presents its own');
      if (l.protocol === 'TLS' && l.allowedRoutes?.kinds?.some((k) => k.kind !== 'TLSRoute'))
        at(['allowedRoutes', 'kinds'], 'a TLS listener takes only TLSRoutes');
      if (l.protocol !== 'TLS' && l.allowedRoutes?.kinds?.some((k) => k.kind === 'TLSRoute'))
        at(['allowedRoutes', 'kinds'], 'a TLSRoute attaches only to a TLS listener (tls.mode Passthrough)');
      for (const [j, ref] of (l.protocol === 'HTTPS' ? (l.tls?.certificateRefs ?? []) : []).entries()) {
        const refAt = (field: string, message: string): void => at(['tls', 'certificateRefs', j, field], message);
        const secretKey = `${ref.namespace ?? namespace}/${ref.name}`;
        if ((ref.namespace ?? namespace) !== namespace && !options.secretRefPermitted?.(namespace, ref.namespace ?? namespace, ref.name)) {
          refAt('namespace', `names a Secret in namespace ${ref.namespace}; a Gateway's certificates are in its own namespace (${namespace})`);
          continue;
        }
        const secret = secretsByKey.get(secretKey);
        if (secret === undefined) {
          refAt('name', `names Secret "${secretKey}", which is not in the config; declare it (apiVersion: v1, kind: Secret, type: kubernetes.io/tls)`);
          continue;
        }
        const pem = secretPem(secret, files, options);
        if (pem === undefined) continue;
        if (typeof pem === 'string') {
          problems.push(problemAt(secret.doc, pem.startsWith('data') ? ['data'] : ['metadata', 'annotations'], `Secret "${secretKey}": ${pem}`));
          continue;
        }
        const problem = servingCertificateProblem(pem.cert, pem.key, now);
        if (problem !== undefined) {
          problems.push(problemAt(secret.doc, pem.path, `Secret "${secretKey}" (listener "${l.name}" of Gateway "${key}"): ${problem}`));
          continue;
        }
        certificates.push({ name: secretKey, ...(l.hostname !== undefined ? { hostname: l.hostname } : {}), chain: pem.cert, key: pem.key });
      }
      listeners.push({
        name: l.name,
        port: l.port,
        protocol: l.protocol,
        ...(l.hostname !== undefined ? { hostname: l.hostname } : {}),
        certificates,
        ...(l.protocol === 'TLS' ? { passthrough: [] } : {}),
        from: l.allowedRoutes?.namespaces?.from ?? 'Same',
        ...(l.allowedRoutes?.kinds !== undefined ? { kinds: l.allowedRoutes.kinds.map((k) => k.kind) } : {}),
      });
    }
    out.push({ name: g.resource.metadata.name, namespace, listeners });
  }
  attachTlsRoutes(options.tlsRoutes ?? [], out, problems);
  return { problems, gateways: out, files };
}

/** Whether listener hostname `l` (undefined: any) and route hostname `r` overlap: the narrower of the two, or undefined when they don't. */
function narrowHostname(l: string | undefined, r: string): string | undefined {
  if (l === undefined) return r;
  const takes = (wide: string, name: string): boolean =>
    wide === name || (wide.startsWith('*.') && name.endsWith(wide.slice(1)) && name.length > wide.length - 1);
  if (takes(l, r)) return r;
  if (takes(r, l)) return l;
  return undefined;
}

/**
 * Attaches each TLSRoute to the TLS listeners its parentRefs name (sectionName or port, or
 * every TLS listener of the Gateway that allows it), its hostnames narrowed to the
 * listener's as for HTTPRoutes; a parentRef naming no Gateway, or no TLS listener of it, is
 * refused at its field.
 */
export function attachTlsRoutes(routes: readonly TLSRouteSource[], gateways: readonly GatewayConfig[], problems: Problem[]): void {
  for (const r of routes) {
    const ns = r.resource.metadata.namespace ?? 'default';
    const name = `${ns}/${r.resource.metadata.name}`;
    const rule = r.resource.spec.rules[0];
    if (rule === undefined) continue;
    const backends = rule.backendRefs.map((b) => ({ name: b.name, namespace: b.namespace ?? ns, weight: b.weight ?? 1 }));
    for (const [i, ref] of r.resource.spec.parentRefs.entries()) {
      const at = (field: string, message: string): void => void problems.push(problemAt(r.doc, ['spec', 'parentRefs', i, field], message));
      if (ref.kind !== 'Gateway') {
        at('kind', 'a TLSRoute attaches to a Gateway (kind: Gateway, group: gateway.networking.k8s.io)');
        continue;
      }
      const gns = ref.namespace ?? ns;
      const g = gateways.find((x) => x.name === ref.name && x.namespace === gns);
      if (g === undefined) {
        at('name', `names Gateway "${gns}/${ref.name}", which is not in the config`);
        continue;
      }
      const listeners = g.listeners.filter(
        (l) => (ref.sectionName === undefined || l.name === ref.sectionName) && (ref.port === undefined || l.port === ref.port),
      );
      const tls = listeners.filter((l) => l.protocol === 'TLS' && (l.from === 'All' || gns === ns));
      if (tls.length === 0) {
        at(
          ref.sectionName !== undefined ? 'sectionName' : 'name',
          `Gateway "${gns}/${ref.name}" has no TLS listener (protocol: TLS, tls.mode: Passthrough)${ref.sectionName !== undefined ? ` named "${ref.sectionName}"` : ''} that takes this route`,
        );
        continue;
      }
      for (const l of tls) {
        const written = r.resource.spec.hostnames;
        let hostnames: string[] | undefined;
        if (written === undefined || written.length === 0) hostnames = l.hostname === undefined ? undefined : [l.hostname];
        else {
          hostnames = written.map((h) => narrowHostname(l.hostname, h.toLowerCase())).filter((h): h is string => h !== undefined);
          if (hostnames.length === 0) continue; // none of its names fits this listener: not attached to it (as HTTPRoutes)
        }
        (l.passthrough as PassthroughRouteConfig[]).push({ name, hostnames, backends });
      }
    }
  }
}

/**
 * A Secret's certificate and key PEM (from its files, or its base64 data), or what is
 * wrong; undefined: a local certificate checked without a state folder (nothing to read).
 */
function secretPem(
  s: SecretSource,
  files: string[],
  options: GatewayCheckOptions,
): { cert: string; key: string; path: (string | number)[] } | string | undefined {
  const annotations = s.resource.metadata.annotations ?? {};
  const local = annotations[LOCAL_CERTIFICATE_ANNOTATION];
  if (local !== undefined) {
    if (local !== 'localhost') return `annotations: ${LOCAL_CERTIFICATE_ANNOTATION} takes only "localhost" (got ${JSON.stringify(local)})`;
    if (annotations[CERTIFICATE_FILE_ANNOTATION] !== undefined || annotations[KEY_FILE_ANNOTATION] !== undefined || s.resource.data !== undefined)
      return `annotations: ${LOCAL_CERTIFICATE_ANNOTATION} names the certificate trellis up makes; give no files or data beside it`;
    if (options.stateDir === undefined) return undefined;
    const made = localhostFiles(localTlsDir(options.stateDir));
    try {
      files.push(made.cert, made.key);
      return { cert: readFileSync(made.cert, 'utf8'), key: readFileSync(made.key, 'utf8'), path: ['metadata', 'annotations'] };
    } catch (err) {
      return `annotations: the local certificate is not in ${dirname(made.cert)} (${(err as NodeJS.ErrnoException).code ?? String(err)}); \`trellis up\` makes it`;
    }
  }
  const certFile = annotations[CERTIFICATE_FILE_ANNOTATION];
  const keyFile = annotations[KEY_FILE_ANNOTATION];
  if (certFile !== undefined || keyFile !== undefined) {
    if (certFile === undefined || keyFile === undefined) return `annotations need both ${CERTIFICATE_FILE_ANNOTATION} and ${KEY_FILE_ANNOTATION}`;
    const base = dirname(resolve(s.doc.file));
    const read = (f: string): string => {
      const p = isAbsolute(f) ? f : resolve(base, f);
      files.push(p);
      return readFileSync(p, 'utf8');
    };
    try {
      return { cert: read(certFile), key: read(keyFile), path: ['metadata', 'annotations'] };
    } catch (err) {
      return `annotations: cannot read the certificate files: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    }
  }
  if (s.resource.data === undefined)
    return `data: has neither data (tls.crt, tls.key) nor the ${CERTIFICATE_FILE_ANNOTATION} and ${KEY_FILE_ANNOTATION} annotations`;
  return {
    cert: Buffer.from(s.resource.data['tls.crt'], 'base64').toString('utf8'),
    key: Buffer.from(s.resource.data['tls.key'], 'base64').toString('utf8'),
    path: ['data'],
  };
}
