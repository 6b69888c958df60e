// Loads a mesh's configuration from files and directories: reads every YAML document,
// follows the Mesh's `spec.include`, checks each resource against its schema, then
// checks the resources against each other, and normalizes the services.
//
// It never throws for bad config: every problem comes back with its file, field path
// and position, all at once, so `trellis validate` can list them and the control
// plane can refuse a bad change while keeping the last good config.
import type { TracingSnapshot } from '../api/protocol.js';
import type { Stats } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join, resolve } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { checkMesh } from './check-mesh.js';
import { checkIdentity, normalizeIdentity, type IdentityConfig } from './identity.js';
import { checkPolicies, type PolicySource } from './check-policies.js';
import { checkRoutes, type RouteSource } from './check-routes.js';
import { normalizeProxyLimits, normalizeServices, normalizeTracing, type NormalizedProxyLimits, type NormalizedService } from './normalize.js';
import type { Problem } from './problems.js';
import { checkSchema } from './schema-errors.js';
import { checkReferenceGrants, type GrantSource } from './check-grants.js';
import { checkRateLimitPolicies, type RateLimitPolicySource } from './check-rate-limits.js';
import { checkPeerAuthentications, type PeerAuthenticationSource } from './check-peer-authentication.js';
import { checkRequestAuthentications, type RequestAuthenticationSource } from './check-request-authentication.js';
import { checkAuthorizationPolicies, type AuthorizationPolicySource } from './check-authorization.js';
import {
  checkGateways,
  LOCAL_CERTIFICATE_ANNOTATION,
  type GatewayConfig,
  type GatewaySource,
  type SecretSource,
  type TLSRouteSource,
} from './check-gateways.js';
import { ensureLocalhostCertificate, localTlsDir } from '../security/local-tls.js';
import { checkExternalServices, type ExternalServiceConfig, type ExternalServiceSource } from './check-external-services.js';
import {
  type AuthorizationPolicyResource,
  MESH_DEFAULTS,
  MeshSchema,
  POLICY_KINDS,
  RESOURCE_KINDS,
  type MeshResource,
  type MtlsModeSpec,
  type PeerAuthenticationResource,
  type PolicyResource,
  type RateLimitPolicyResource,
  type ReferenceGrantResource,
  type RequestAuthenticationResource,
  type RouteResource,
} from './schema.js';
import { parseYamlFile, problemAt, type SourceDocument } from './yaml-source.js';

export { formatProblem, type Problem } from './problems.js';
export { parseDurationMs } from './duration.js';
export type { NormalizedService, NormalizedVersion, NormalizedUpstream, NormalizedHealth } from './normalize.js';

/** A route (HTTPRoute, GRPCRoute or TCPRoute, defaults applied) and the file it came from. */
export interface LoadedRoute {
  file: string;
  resource: RouteResource;
}

/** A policy (FaultInjection, RetryPolicy, XBackendTrafficPolicy; defaults applied) and its file. */
export interface LoadedPolicy {
  file: string;
  resource: PolicyResource;
}

/** A RateLimitPolicy (defaults applied) and its file. */
export interface LoadedRateLimitPolicy {
  file: string;
  resource: RateLimitPolicyResource;
}

/** A ReferenceGrant (defaults applied) and its file. */
export interface LoadedGrant {
  file: string;
  resource: ReferenceGrantResource;
}

/** A PeerAuthentication (defaults applied) and its file. */
export interface LoadedPeerAuthentication {
  file: string;
  resource: PeerAuthenticationResource;
}

/**
 * A RequestAuthentication (defaults applied) and its file, with each rule's key set as
 * JSON text: its inline `jwks`, or its `jwksFile`'s content read at load (undefined for a
 * `jwksUri` rule, which proxies fetch themselves).
 */
export interface LoadedRequestAuthentication {
  file: string;
  resource: RequestAuthenticationResource;
  jwks: (string | undefined)[];
}

/** An AuthorizationPolicy (defaults applied) and its file. */
export interface LoadedAuthorizationPolicy {
  file: string;
  resource: AuthorizationPolicyResource;
}

/** A complete, valid mesh configuration. */
export interface MeshConfig {
  /** The file holding the Mesh resource. */
  meshFile: string;
  /** Absolute folder of the mesh file: relative `cwd`s and includes start here. */
  meshDir: string;
  /** The Mesh resource as written, with schema defaults applied. */
  mesh: MeshResource;
  services: NormalizedService[];
  routes: LoadedRoute[];
  /** In file order. */
  policies: LoadedPolicy[];
  /** The ReferenceGrants that let routes send traffic into another namespace. */
  referenceGrants: LoadedGrant[];
  /** RateLimitPolicies, in file order. */
  rateLimitPolicies: LoadedRateLimitPolicy[];
  /** In file order. */
  requestAuthentications: LoadedRequestAuthentication[];
  /** The AuthorizationPolicies, in file order. */
  authorizationPolicies: LoadedAuthorizationPolicy[];
  /** The domain of `svc.ns.svc.<clusterDomain>` host names (default cluster.local). */
  clusterDomain: string;
  /** `spec.proxyLimits`; undefined: every proxy keeps its defaults. */
  proxyLimits?: NormalizedProxyLimits;
  /** `spec.telemetry.tracing` as proxies take it; undefined: tracing turned off. */
  tracing?: TracingSnapshot;
  /** `spec.identity` with its defaults; the control plane's CA reads it at start. */
  identity: IdentityConfig;
  /** The mesh-wide mTLS mode (`spec.mtls.mode`, default STRICT). */
  mtlsMode: MtlsModeSpec;
  /** PeerAuthentications, in file order. */
  peerAuthentications: LoadedPeerAuthentication[];
  /** Gateways, their certificates read (check-gateways.ts). */
  gateways: GatewayConfig[];
  /** ExternalServices, their CA bundles read (check-external-services.ts). */
  externalServices: ExternalServiceConfig[];
  /** `spec.outboundTrafficPolicy.mode` (default ALLOW_ANY). */
  outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  /** `spec.outboundTrafficPolicy.egressGateway`: the gateway every ExternalService call goes through; absent: none. */
  egressGateway?: { name: string; port?: number };
}

/** What loading found: the config when there is no problem, and every file read. */
export interface LoadResult {
  /** Present only when `problems` is empty. */
  config?: MeshConfig;
  /** Every file actually read, in reading order (the control plane watches them). */
  files: string[];
  /**
   * What is valid but likely a mistake (a backendRef to a service that does not exist):
   * `trellis validate` prints them, and the config loads all the same.
   */
  warnings: Problem[];
  /**
   * Every folder whose YAML files were read (given, or included), even one with none:
   * the control plane watches them too, so a file added to an empty include folder is loaded.
   */
  folders: string[];
  problems: Problem[];
}

/** What a loader that runs a mesh knows beyond the files. */
export interface LoadOptions {
  /** The run's state folder: where a `trellis.dev/local-certificate` Secret's files are (check-gateways.ts). */
  stateDir?: string;
}

const YAML_EXTENSIONS = new Set(['.yaml', '.yml']);
const KNOWN_KINDS = Object.values(RESOURCE_KINDS)
  .map((k) => `${k.kind} (${k.apiVersion})`)
  .join(', ')
  .replace(/, ([^,]*)$/, ' and $1');

/**
 * Loads every resource from `paths` (files, or directories whose *.yaml / *.yml
 * files are read in name order) and from the includes of the Mesh found there.
 * File names in the result are as given (joined with directory and include paths),
 * so relative inputs give relative names.
 */
export async function loadConfig(paths: string[], options: LoadOptions = {}): Promise<LoadResult> {
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  const files: string[] = [];
  const folders: string[] = [];
  const queue: string[] = [];
  for (const p of paths) {
    const found = await expand(p, folders);
    if (typeof found === 'string') problems.push({ file: p, path: '', message: found });
    else queue.push(...found);
  }

  const meshDocs: SourceDocument[] = [];
  const meshes: { doc: SourceDocument; resource: MeshResource }[] = [];
  const routes: RouteSource[] = [];
  const policies: PolicySource[] = [];
  const grants: GrantSource[] = [];
  const rateLimits: RateLimitPolicySource[] = [];
  const peerAuths: PeerAuthenticationSource[] = [];
  const authns: RequestAuthenticationSource[] = [];
  const authorization: AuthorizationPolicySource[] = [];
  const gatewaySources: GatewaySource[] = [];
  const secrets: SecretSource[] = [];
  const tlsRoutes: TLSRouteSource[] = [];
  const externals: ExternalServiceSource[] = [];
  const read = new Set<string>();
  // The queue grows while we read it: a Mesh's includes are appended.
  for (let q = 0; q < queue.length; q++) {
    const file = queue[q]!;
    if (read.has(resolve(file))) continue;
    read.add(resolve(file));
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      problems.push({ file, path: '', message: `cannot read this file: ${reason(err)}` });
      continue;
    }
    files.push(file);
    const parsed = parseYamlFile(file, text);
    problems.push(...parsed.problems);

    for (const doc of parsed.documents) {
      const kind = classify(doc);
      if (typeof kind !== 'string') {
        problems.push(kind);
        continue;
      }
      const schemaProblems = checkSchema(doc, RESOURCE_KINDS[kind]!.schema);
      problems.push(...schemaProblems);
      if (RESOURCE_KINDS[kind]!.kind === 'Mesh') {
        meshDocs.push(doc);
        // Follow includes even when the Mesh has other problems, so their files are
        // checked (and watched) too.
        problems.push(...(await queueIncludes(doc, queue, folders)));
        if (schemaProblems.length === 0) meshes.push({ doc, resource: withDefaults(MeshSchema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'ReferenceGrant') {
        grants.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'Gateway') {
        gatewaySources.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'TLSRoute') {
        // TLSRoutes belong to Gateways' TLS listeners only (check-gateways.ts), never to a Service's routes.
        tlsRoutes.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'ExternalService') {
        externals.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'Secret') {
        secrets.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'RateLimitPolicy') {
        rateLimits.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'PeerAuthentication') {
        peerAuths.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'RequestAuthentication') {
        authns.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && RESOURCE_KINDS[kind]!.kind === 'AuthorizationPolicy') {
        authorization.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0 && POLICY_KINDS.has(RESOURCE_KINDS[kind]!.kind)) {
        policies.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      } else if (schemaProblems.length === 0) {
        routes.push({ doc, resource: withDefaults(RESOURCE_KINDS[kind]!.schema, doc.value) });
      }
    }
  }

  if (meshDocs.length > 1) {
    const first = meshDocs[0]!;
    const where = first.locate(['kind']);
    for (const doc of meshDocs.slice(1)) {
      problems.push(
        problemAt(doc, ['kind'], `a second Mesh resource; there must be exactly one, and the first is in ${first.file}${where ? `:${where.line}` : ''}`),
      );
    }
  } else if (meshDocs.length === 0 && problems.length === 0) {
    problems.push({
      file: paths.join(', '),
      path: '',
      message: 'no Mesh resource found; exactly one document must be `apiVersion: trellis.dev/v1alpha1`, `kind: Mesh`',
    });
  }

  const mesh = meshDocs.length === 1 ? meshes[0] : undefined;
  // Certificate files are read (and so watched: a replaced file reloads the config) like config files.
  // A local certificate made for this run is made (or kept) before it is read.
  if (options.stateDir !== undefined && secrets.some((s) => s.resource.metadata.annotations?.[LOCAL_CERTIFICATE_ANNOTATION] === 'localhost')) {
    await ensureLocalhostCertificate(localTlsDir(options.stateDir));
  }
  const gatewayCheck = checkGateways(gatewaySources, secrets, Date.now(), {
    tlsRoutes,
    ...(options.stateDir !== undefined ? { stateDir: options.stateDir } : {}),
  });
  problems.push(...gatewayCheck.problems);
  for (const f of gatewayCheck.files) if (!files.includes(f)) files.push(f);
  // CA bundles are read (and watched) like certificate files.
  const externalCheck = mesh ? checkExternalServices(mesh.doc, mesh.resource, externals) : { problems: [], externalServices: [], files: [] };
  problems.push(...externalCheck.problems);
  for (const f of externalCheck.files) if (!files.includes(f)) files.push(f);
  if (mesh) {
    // A service may list an ExternalService among its upstreams (a listener for it, as for a mesh service).
    const externalKeys = new Set(externalCheck.externalServices.map((e) => `${e.namespace}/${e.name}`));
    problems.push(...checkMesh(mesh.doc, mesh.resource, externalKeys));
    problems.push(...checkIdentity(mesh.doc, mesh.resource));
    const gatewayListeners = new Map(
      gatewaySources.map((g) => [
        `${g.resource.metadata.namespace ?? 'default'}/${g.resource.metadata.name}`,
        new Set(g.resource.spec.listeners.map((l) => l.name)),
      ]),
    );
    problems.push(...checkRoutes(mesh.resource, routes, warnings, gatewayListeners, externals));
    problems.push(...checkPolicies(mesh.resource, routes, policies));
    problems.push(...checkReferenceGrants(mesh.resource, grants));
    problems.push(...checkRateLimitPolicies(mesh.resource, routes, rateLimits));
    problems.push(...checkPeerAuthentications(mesh.resource, peerAuths));
    problems.push(...checkAuthorizationPolicies(mesh.resource, authorization, warnings));
  }
  // Key files are read even when other resources have problems, so they are watched too.
  const authn = mesh ? await checkRequestAuthentications(mesh.resource, authns) : { problems: [], jwks: [], files: [] };
  problems.push(...authn.problems);
  for (const f of authn.files) if (!files.includes(f)) files.push(f);
  if (problems.length > 0 || !mesh) return { files, folders, problems: inFileOrder(problems, files), warnings: inFileOrder(warnings, files) };

  const meshDir = resolve(dirname(mesh.doc.file));
  return {
    files,
    folders,
    problems,
    warnings: inFileOrder(warnings, files),
    config: {
      meshFile: mesh.doc.file,
      meshDir,
      mesh: mesh.resource,
      services: normalizeServices(mesh.resource, meshDir),
      routes: routes.map((r) => ({ file: r.doc.file, resource: r.resource })),
      policies: policies.map((p) => ({ file: p.doc.file, resource: p.resource })),
      referenceGrants: grants.map((g) => ({ file: g.doc.file, resource: g.resource })),
      rateLimitPolicies: rateLimits.map((p) => ({ file: p.doc.file, resource: p.resource })),
      requestAuthentications: authns.map((a, i) => ({ file: a.doc.file, resource: a.resource, jwks: authn.jwks[i] ?? [] })),
      authorizationPolicies: authorization.map((a) => ({ file: a.doc.file, resource: a.resource })),
      clusterDomain: mesh.resource.spec.clusterDomain ?? MESH_DEFAULTS.clusterDomain,
      ...(mesh.resource.spec.proxyLimits ? { proxyLimits: normalizeProxyLimits(mesh.resource.spec.proxyLimits) } : {}),
      identity: normalizeIdentity(mesh.resource, meshDir),
      ...tracingField(normalizeTracing(mesh.resource.spec.telemetry?.tracing)),
      mtlsMode: mesh.resource.spec.mtls?.mode ?? 'STRICT',
      peerAuthentications: peerAuths.map((p) => ({ file: p.doc.file, resource: p.resource })),
      gateways: gatewayCheck.gateways,
      externalServices: externalCheck.externalServices,
      outboundTrafficPolicy: mesh.resource.spec.outboundTrafficPolicy?.mode ?? 'ALLOW_ANY',
      ...(mesh.resource.spec.outboundTrafficPolicy?.egressGateway ? { egressGateway: { ...mesh.resource.spec.outboundTrafficPolicy.egressGateway } } : {}),
    },
  };
}

/** The `RESOURCE_KINDS` key of a document, or the problem that it is not a known resource. */
function classify(doc: SourceDocument): string | Problem {
  const v = doc.value;
  const label = `document ${doc.index}`;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    return problemAt(doc, [], `${label} is not a resource; expected a mapping with apiVersion, kind, metadata and spec`);
  }
  const { apiVersion, kind, metadata } = v as Record<string, unknown>;
  const name = typeof (metadata as { name?: unknown } | undefined)?.name === 'string' ? ` ("${(metadata as { name: string }).name}")` : '';
  if (typeof apiVersion === 'string' && typeof kind === 'string' && `${apiVersion}/${kind}` in RESOURCE_KINDS) {
    return `${apiVersion}/${kind}`;
  }
  const known = Object.values(RESOURCE_KINDS).find((k) => k.kind === kind);
  if (known) {
    return problemAt(
      doc,
      ['apiVersion'],
      `${label}${name}: kind ${known.kind} needs apiVersion ${known.apiVersion} (got ${JSON.stringify(apiVersion ?? null)})`,
    );
  }
  return problemAt(
    doc,
    ['kind'],
    `${label}${name}: unknown kind ${JSON.stringify(kind ?? null)} (apiVersion ${JSON.stringify(apiVersion ?? null)}); Trellis reads ${KNOWN_KINDS}`,
  );
}

/** Appends a Mesh's includes (relative to its file) to the queue; problems for the missing ones. */
async function queueIncludes(doc: SourceDocument, queue: string[], folders: string[]): Promise<Problem[]> {
  const include = (doc.value as { spec?: { include?: unknown } }).spec?.include;
  if (include === undefined || !Value.Check(MeshSchema.properties.spec.properties.include, include)) return [];
  const problems: Problem[] = [];
  for (const [i, entry] of include.entries()) {
    const found = await expand(isAbsolute(entry) ? entry : join(dirname(doc.file), entry), folders);
    if (typeof found === 'string') problems.push(problemAt(doc, ['spec', 'include', i], `"${entry}" ${found} (includes are relative to ${dirname(doc.file)})`));
    else queue.push(...found);
  }
  return problems;
}

/**
 * A file as itself, a directory as its YAML files in name order (recorded in `folders`);
 * a string says why neither. A directory with no YAML files holds no resources, as an
 * empty Kubernetes manifest folder does: an include of one is not a problem (a route
 * folder kept empty until the first route is written).
 */
async function expand(path: string, folders: string[]): Promise<string[] | string> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (err) {
    return `cannot be read: ${reason(err)}`;
  }
  if (!info.isDirectory()) return [path];
  folders.push(path);
  const entries = await readdir(path, { withFileTypes: true });
  const found = entries
    .filter((e) => !e.isDirectory() && YAML_EXTENSIONS.has(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort()
    .map((name) => join(path, name));
  return found;
}

/** Problems grouped by file (in reading order), then by position, so output reads top to bottom. */
function inFileOrder(problems: Problem[], files: string[]): Problem[] {
  const rank = new Map(files.map((f, i) => [f, i]));
  for (const p of problems) if (!rank.has(p.file)) rank.set(p.file, rank.size);
  // Array.prototype.sort is stable, so problems at one position keep their order.
  return [...problems].sort((a, b) => rank.get(a.file)! - rank.get(b.file)! || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

function withDefaults<T>(schema: TSchema, value: unknown): T {
  // Defaults go on a copy: the document's value stays as written.
  return Value.Default(schema, structuredClone(value)) as T;
}

function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return (err as Error).message;
}

function tracingField(t: TracingSnapshot | undefined): { tracing?: TracingSnapshot } {
  return t === undefined ? {} : { tracing: t };
}
