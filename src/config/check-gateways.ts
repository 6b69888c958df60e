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
import type { GatewayResource, SecretResource } from './schema.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

export interface GatewaySource {
  doc: SourceDocument;
  resource: GatewayResource;
}
export interface SecretSource {
  doc: SourceDocument;
  resource: SecretResource;
}

/** A listener with what its certificateRefs resolved to. */
export interface GatewayListenerConfig {
  readonly name: string;
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS';
  readonly hostname?: string;
  readonly certificates: readonly GatewayCertificate[];
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
      if (l.protocol === 'HTTPS' && l.tls === undefined) at(['protocol'], 'an HTTPS listener needs tls.certificateRefs naming a Secret with its certificate');
      if (l.protocol === 'HTTP' && l.tls !== undefined) at(['tls'], 'an HTTP listener takes no tls (use protocol: HTTPS)');
      for (const [j, ref] of (l.protocol === 'HTTPS' ? (l.tls?.certificateRefs ?? []) : []).entries()) {
        const refAt = (field: string, message: string): void => at(['tls', 'certificateRefs', j, field], message);
        const secretKey = `${ref.namespace ?? namespace}/${ref.name}`;
        if ((ref.namespace ?? namespace) !== namespace) {
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
        from: l.allowedRoutes?.namespaces?.from ?? 'Same',
        ...(l.allowedRoutes?.kinds !== undefined ? { kinds: l.allowedRoutes.kinds.map((k) => k.kind) } : {}),
      });
    }
    out.push({ name: g.resource.metadata.name, namespace, listeners });
  }
  return { problems, gateways: out, files };
}

/**
 * A Secret's certificate and key PEM (from its files, or its base64 data), or what is
 * wrong; undefined: a local certificate checked without a state folder (nothing to read).
 */
function secretPem(s: SecretSource, files: string[], options: GatewayCheckOptions): { cert: string; key: string; path: (string | number)[] } | string | undefined {
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
