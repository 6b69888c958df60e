// Checks of RequestAuthentication resources against the mesh and the files they name:
// targets are Services of the policy's namespace; each rule has exactly one key source
// (jwks, jwksFile or jwksUri); inline and file key sets are valid public JWKS (read here,
// at load time, so the control plane puts their content in snapshots and watches the
// file); issuers are unique within a policy; claim headers don't overwrite the headers
// the proxy itself owns. Runs on schema-valid resources.
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { parseJwks } from '../security/jwks.js';
import { parseDurationMs } from './duration.js';
import { didYouMean, type Problem, type Segment } from './problems.js';
import type { MeshResource, RequestAuthenticationResource } from './schema.js';
import { ServiceIndex, namespaceOf } from './service-index.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** A schema-valid RequestAuthentication and the document it came from. */
export interface RequestAuthenticationSource {
  doc: SourceDocument;
  resource: RequestAuthenticationResource;
}

/** What checking found: problems, and each rule's key set as text (inline or the file's; undefined for a jwksUri rule). */
export interface CheckedRequestAuthentication {
  problems: Problem[];
  /** Per resource, per rule. */
  jwks: (string | undefined)[][];
  /** The jwksFiles read (the control plane watches them: a rotated file is a config change). */
  files: string[];
}

/**
 * Headers an outputClaimToHeaders may not write: framing and routing (the proxy reads
 * them), and the mesh's own (`trellis-*`, identity). A claim header also replaces any
 * value a client sent under that name, so the app can trust it.
 */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
  'authorization',
]);

const MAX_CLOCK_SKEW_MS = 3_600_000;
const MIN_REFRESH_MS = 1000;

/** A jwksFile's content, or why it cannot be read. */
export type JwksFileRead = { readonly content: string } | { readonly error: string };

/** The file a rule's jwksFile names (relative to the document's file). */
const jwksPath = (doc: SourceDocument, jwksFile: string): string => (isAbsolute(jwksFile) ? jwksFile : join(dirname(doc.file), jwksFile));

/** Every problem of the RequestAuthentications, and the key sets of their rules; their jwksFiles read here. */
export async function checkRequestAuthentications(mesh: MeshResource, sources: readonly RequestAuthenticationSource[]): Promise<CheckedRequestAuthentication> {
  const read = new Map<string, JwksFileRead>();
  for (const { doc, resource } of sources) {
    for (const rule of resource.spec.jwtRules) {
      if (rule.jwksFile === undefined || rule.jwks !== undefined || rule.jwksUri !== undefined) continue;
      const file = jwksPath(doc, rule.jwksFile);
      if (read.has(file)) continue;
      try {
        read.set(file, { content: await readFile(file, 'utf8') });
      } catch (err) {
        read.set(file, { error: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
      }
    }
  }
  return checkRequestAuthenticationsWith(mesh, sources, (file) => read.get(file) ?? { error: 'ENOENT' });
}

/**
 * The checks, with the jwksFiles' contents from `readJwksFile`; absent: a jwksFile is a
 * problem (a Kubernetes object never names a file the control plane would read).
 */
export function checkRequestAuthenticationsWith(
  mesh: MeshResource,
  sources: readonly RequestAuthenticationSource[],
  readJwksFile?: (file: string) => JwksFileRead,
): CheckedRequestAuthentication {
  const problems: Problem[] = [];
  const files: string[] = [];
  const jwks: (string | undefined)[][] = [];
  const index = new ServiceIndex(mesh);
  for (const { doc, resource } of sources) {
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
    const ns = namespaceOf(resource);
    const services = index.names(ns);
    for (const [i, ref] of (resource.spec.targetRefs ?? []).entries()) {
      const path: Segment[] = ['spec', 'targetRefs', i];
      if (ref.kind !== 'Service' || ref.group !== '') {
        at(
          [...path, 'kind'],
          `kind "${ref.kind}" (group "${ref.group}") can't be targeted; a RequestAuthentication targets a Service (kind: Service, group: "")`,
        );
      } else if (ref.sectionName !== undefined) {
        at([...path, 'sectionName'], 'a RequestAuthentication applies to a whole Service; remove sectionName');
      } else if (!services.includes(ref.name)) {
        at(
          [...path, 'name'],
          `names service "${ref.name}"${ServiceIndex.where(ns)}, which is not in the mesh (${index.listing(ns)}; a policy targets services of its own namespace)${didYouMean(ref.name, services)}`,
        );
      }
    }
    const issuers = new Map<string, number>();
    const sets: (string | undefined)[] = [];
    for (const [r, rule] of resource.spec.jwtRules.entries()) {
      const rp = (...more: Segment[]): Segment[] => ['spec', 'jwtRules', r, ...more];
      const first = issuers.get(rule.issuer);
      if (first !== undefined) at(rp('issuer'), `is also the issuer of jwtRules[${first}]; give each issuer one rule (list every audience in it)`);
      else issuers.set(rule.issuer, r);
      const sources = (['jwks', 'jwksFile', 'jwksUri'] as const).filter((k) => rule[k] !== undefined);
      let text: string | undefined;
      if (sources.length !== 1) {
        at(
          sources.length === 0 ? rp() : rp(sources[1]!),
          sources.length === 0
            ? "needs the issuer's keys: one of jwks (the key set inline), jwksFile (a file holding it) or jwksUri (a URL serving it)"
            : `give one of jwks, jwksFile or jwksUri, not ${sources.join(' and ')}`,
        );
      } else if (rule.jwks !== undefined) {
        const parsed = parseJwks(rule.jwks);
        if (typeof parsed === 'string') at(rp('jwks'), `${parsed}; give a JSON Web Key Set of public keys, {"keys": [...]}`);
        else text = rule.jwks;
      } else if (rule.jwksFile !== undefined && readJwksFile === undefined) {
        at(
          rp('jwksFile'),
          'is not read from a Kubernetes object (the control plane reads no file an API object names); give the key set inline (jwks) or a jwksUri',
        );
      } else if (rule.jwksFile !== undefined && readJwksFile !== undefined) {
        const file = jwksPath(doc, rule.jwksFile);
        const got = readJwksFile(file);
        if ('content' in got) {
          files.push(file);
          const parsed = parseJwks(got.content);
          if (typeof parsed === 'string') at(rp('jwksFile'), `${file} ${parsed}; it must hold a JSON Web Key Set of public keys, {"keys": [...]}`);
          else text = got.content;
        } else at(rp('jwksFile'), `${file} cannot be read: ${got.error} (a jwksFile is relative to ${dirname(doc.file)})`);
      }
      sets.push(text);
      if (rule.clockSkew !== undefined && parseDurationMs(rule.clockSkew) > MAX_CLOCK_SKEW_MS) at(rp('clockSkew'), `is ${rule.clockSkew}; at most 1h`);
      const refresh = rule.jwksRefreshInterval === undefined ? undefined : parseDurationMs(rule.jwksRefreshInterval);
      if (refresh !== undefined && refresh < MIN_REFRESH_MS) at(rp('jwksRefreshInterval'), `is ${rule.jwksRefreshInterval}; at least 1s`);
      if ((refresh !== undefined || rule.jwksMaxStale !== undefined) && rule.jwksUri === undefined) {
        at(rp(refresh !== undefined ? 'jwksRefreshInterval' : 'jwksMaxStale'), 'applies to a jwksUri only (inline and file keys are part of the config)');
      }
      if (rule.jwksMaxStale !== undefined && parseDurationMs(rule.jwksMaxStale) < (refresh ?? 300_000)) {
        at(
          rp('jwksMaxStale'),
          `is ${rule.jwksMaxStale}, shorter than the refresh interval (${rule.jwksRefreshInterval ?? '5m'}); keys would expire between two fetches`,
        );
      }
      for (const [h, out] of (rule.outputClaimToHeaders ?? []).entries()) {
        const name = out.header.toLowerCase();
        if (RESERVED_HEADERS.has(name) || name.startsWith('trellis-') || name.startsWith(':')) {
          at(
            rp('outputClaimToHeaders', h, 'header'),
            `"${out.header}" is a header the proxy owns; pick another name, such as x-jwt-${out.claim.replace(/[^a-z0-9-]/gi, '-')}`,
          );
        }
      }
    }
    jwks.push(sets);
  }
  return { problems, jwks, files };
}
