// Checks of AuthorizationPolicies beyond their schema: targets that are Services of the
// policy's namespace, and values the proxy can match: principals in the workload form
// (`cluster.local/ns/default/sa/backend`, the mistake being a bare `backend`), Istio's
// wildcards only at one end, upper-case methods, paths that start with `/`, and `when`
// keys the engine knows (an unknown key would be a rule that silently never matches).
// Runs on schema-valid resources; every problem names its field path.
import { isHttpOnlyKey, isPrincipal, normalizePrincipal, parseConditionKey, parseStringMatch, SIMPLE_CONDITION_KEYS } from '../api/authorization.js';
import { didYouMean, type Problem, type Segment } from './problems.js';
import type { AuthorizationPolicyResource, MeshResource } from './schema.js';
import { namespaceOf, ServiceIndex } from './service-index.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** A schema-valid AuthorizationPolicy and the document it came from. */
export interface AuthorizationPolicySource {
  doc: SourceDocument;
  resource: AuthorizationPolicyResource;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const METHOD = /^[A-Z][A-Z0-9_-]*$/;

type Rule = NonNullable<AuthorizationPolicyResource['spec']['rules']>[number];

/** Every problem of the AuthorizationPolicies, and warnings for what is valid but never matches. */
export function checkAuthorizationPolicies(mesh: MeshResource, policies: readonly AuthorizationPolicySource[], warnings: Problem[] = []): Problem[] {
  const problems: Problem[] = [];
  const index = new ServiceIndex(mesh);
  const seen = new Map<string, AuthorizationPolicySource>();
  for (const policy of policies) {
    const { doc, resource } = policy;
    const at = (path: Segment[], message: string) => problems.push(problemAt(doc, path, message));
    const ns = namespaceOf(resource);
    const id = `${ns}/${resource.metadata.name}`;
    const first = seen.get(id);
    if (first) {
      const where = first.doc.locate(['metadata', 'name']);
      at(['metadata', 'name'], `AuthorizationPolicy "${id}" is defined twice (also ${first.doc.file}${where ? `:${where.line}` : ''}); names must be unique`);
    } else {
      seen.set(id, policy);
    }
    if (!index.hasNamespace(ns)) {
      at(
        resource.metadata.namespace === undefined ? ['metadata'] : ['metadata', 'namespace'],
        `names namespace ${ns}, which no service of the mesh is in (namespaces: ${index.namespaces().join(', ') || 'none'}); a policy applies to the services of its own namespace`,
      );
    }
    const targets: string[] = [];
    let gatewayTargets = 0;
    resource.spec.targetRefs?.forEach((ref, i) => {
      const path: Segment[] = ['spec', 'targetRefs', i];
      // A Gateway: its gateway proxy judges the requests it takes from outside (the edge).
      if (ref.group === 'gateway.networking.k8s.io' && ref.kind === 'Gateway') {
        gatewayTargets++;
        if (ref.sectionName !== undefined)
          at([...path, 'sectionName'], 'an AuthorizationPolicy applies to a whole Gateway; remove sectionName (match ports with rules[].to[].operation.ports)');
        return;
      }
      if (ref.group !== '' || ref.kind !== 'Service') {
        at(
          [...path, ref.group !== '' ? 'group' : 'kind'],
          `an AuthorizationPolicy targets Services (group "", kind Service) or Gateways (group gateway.networking.k8s.io, kind Gateway) (got group "${ref.group}", kind "${ref.kind}")`,
        );
        return;
      }
      if (ref.sectionName !== undefined) {
        at([...path, 'sectionName'], 'an AuthorizationPolicy applies to a whole Service; remove sectionName (match ports with rules[].to[].operation.ports)');
        return;
      }
      if (index.hasNamespace(ns) && !index.get(ns, ref.name)) {
        at(
          [...path, 'name'],
          `names service "${ref.name}"${ServiceIndex.where(ns)}, which is not in the mesh (${index.listing(ns)}; a policy targets services of its own namespace)${didYouMean(ref.name, index.names(ns))}`,
        );
        return;
      }
      targets.push(ref.name);
    });
    resource.spec.rules?.forEach((rule, r) => {
      checkRule(rule, ['spec', 'rules', r], at);
    });

    // Valid, but a rule that can never match a TCP service's connections is worth a word (Istio's TCP semantics).
    const action = resource.spec.action ?? 'ALLOW';
    if (action !== 'DENY') {
      const tcp = (targets.length > 0 || gatewayTargets > 0 ? targets : index.names(ns)).filter((n) => index.get(ns, n)?.protocol === 'tcp');
      resource.spec.rules?.forEach((rule, r) => {
        if (tcp.length > 0 && ruleIsHttpOnly(rule)) {
          warnings.push(
            problemAt(
              doc,
              ['spec', 'rules', r],
              `uses HTTP-only fields (methods, paths, hosts, requestPrincipals or request.* keys), so it never matches a connection to the TCP service(s) ${tcp.join(', ')}`,
            ),
          );
        }
      });
    }
  }
  return problems;
}

/** Whether a rule names something only an HTTP request has (Istio's HTTP-only fields). */
function ruleIsHttpOnly(rule: Rule): boolean {
  const src = rule.from?.some((f) => f.source.requestPrincipals !== undefined || f.source.notRequestPrincipals !== undefined) ?? false;
  const op =
    rule.to?.some((t) => {
      const o = t.operation;
      return o.hosts || o.notHosts || o.methods || o.notMethods || o.paths || o.notPaths;
    }) ?? false;
  const when = rule.when?.some((c) => {
    const k = parseConditionKey(c.key);
    return typeof k !== 'string' && isHttpOnlyKey(k);
  });
  return src || op || when === true;
}

type At = (path: Segment[], message: string) => void;

function checkRule(rule: Rule, path: Segment[], at: At): void {
  rule.from?.forEach((f, i) => {
    const p: Segment[] = [...path, 'from', i, 'source'];
    const s = f.source;
    for (const field of ['principals', 'notPrincipals'] as const)
      s[field]?.forEach((v, j) => {
        checkPrincipal(v, [...p, field, j], at);
      });
    for (const field of ['namespaces', 'notNamespaces'] as const)
      s[field]?.forEach((v, j) => {
        checkNamespace(v, [...p, field, j], at);
      });
    for (const field of ['requestPrincipals', 'notRequestPrincipals'] as const)
      s[field]?.forEach((v, j) => {
        checkWildcards(v, [...p, field, j], at);
      });
    if (Object.keys(s).length === 0) at(p, 'an empty source matches every caller; leave `from` out instead, or name principals or namespaces');
  });
  rule.to?.forEach((t, i) => {
    const p: Segment[] = [...path, 'to', i, 'operation'];
    const o = t.operation;
    for (const field of ['methods', 'notMethods'] as const)
      o[field]?.forEach((v, j) => {
        checkMethod(v, [...p, field, j], at);
      });
    for (const field of ['paths', 'notPaths'] as const)
      o[field]?.forEach((v, j) => {
        checkPath(v, [...p, field, j], at);
      });
    for (const field of ['hosts', 'notHosts'] as const)
      o[field]?.forEach((v, j) => {
        checkWildcards(v, [...p, field, j], at);
      });
    for (const field of ['ports', 'notPorts'] as const)
      o[field]?.forEach((v, j) => {
        checkPort(v, [...p, field, j], at);
      });
    if (Object.keys(o).length === 0) at(p, 'an empty operation matches every request; leave `to` out instead, or name methods, paths, hosts or ports');
  });
  rule.when?.forEach((c, i) => {
    const p: Segment[] = [...path, 'when', i];
    const key = parseConditionKey(c.key);
    if (typeof key === 'string') {
      at(
        [...p, 'key'],
        `${key}; Trellis evaluates request.headers[<name>], request.auth.claims[<name>] and ${SIMPLE_CONDITION_KEYS.join(', ')}${didYouMean(c.key, [...SIMPLE_CONDITION_KEYS])}`,
      );
      return;
    }
    if (c.values === undefined && c.notValues === undefined) at(p, 'a condition needs values or notValues (or both)');
    for (const field of ['values', 'notValues'] as const) {
      c[field]?.forEach((v, j) => {
        const vp: Segment[] = [...p, field, j];
        if (key.kind === 'destination.port') checkPort(v, vp, at);
        else if (key.kind === 'source.principal') checkPrincipal(v, vp, at);
        else if (key.kind === 'source.namespace') checkNamespace(v, vp, at);
        else checkWildcards(v, vp, at);
      });
    }
  });
}

function checkWildcards(v: string, path: Segment[], at: At): boolean {
  if (parseStringMatch(v) !== undefined) return true;
  at(path, `"${v}" has a * that is not at its start or its end; a value matches exactly, by prefix (abc*), by suffix (*abc), or any value (*)`);
  return false;
}

function checkPrincipal(raw: string, path: Segment[], at: At): void {
  const v = normalizePrincipal(raw);
  if (!checkWildcards(v, path, at)) return;
  const m = parseStringMatch(v);
  if (m?.kind === 'exact' && !isPrincipal(v)) {
    const hint = DNS_LABEL.test(v) ? ` (a service's principal is <trust domain>/ns/<namespace>/sa/<service>, e.g. cluster.local/ns/default/sa/${v})` : '';
    at(path, `"${raw}" is not a principal: write <trust domain>/ns/<namespace>/sa/<service>${hint}`);
  }
}

function checkNamespace(v: string, path: Segment[], at: At): void {
  if (!checkWildcards(v, path, at)) return;
  if (parseStringMatch(v)?.kind === 'exact' && !DNS_LABEL.test(v)) at(path, `"${v}" is not a namespace (a DNS label: lower-case letters, digits and '-')`);
}

function checkMethod(v: string, path: Segment[], at: At): void {
  if (!checkWildcards(v, path, at)) return;
  const m = parseStringMatch(v);
  if (m?.kind === 'exact' && !METHOD.test(v)) {
    at(
      path,
      `"${v}" is not an HTTP method: methods are matched as sent, in upper case (GET, POST, ...)${METHOD.test(v.toUpperCase()) ? `; write ${v.toUpperCase()}` : ''}`,
    );
  }
}

function checkPath(v: string, path: Segment[], at: At): void {
  if (!checkWildcards(v, path, at)) return;
  const m = parseStringMatch(v);
  if (v.includes('{')) at(path, `"${v}" uses a path template ({*} or {**}), which Trellis does not support; use a prefix (/api/*) or a suffix (*.png)`);
  else if (v.includes('?') || v.includes('#')) at(path, `"${v}" has a query or fragment; paths are matched without the query string`);
  else if ((m?.kind === 'exact' || m?.kind === 'prefix') && !v.startsWith('/')) at(path, `"${v}" does not start with /; a path is /..., /prefix/* or *suffix`);
}

function checkPort(v: string | number, path: Segment[], at: At): void {
  const n = typeof v === 'number' ? v : /^[0-9]{1,5}$/.test(v) ? Number(v) : Number.NaN;
  if (!(Number.isInteger(n) && n >= 1 && n <= 65535)) at(path, `"${v}" is not a port (1-65535)`);
}
