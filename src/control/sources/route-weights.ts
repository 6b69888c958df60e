// The traffic split between the versions of a service, read from the HTTPRoutes and
// written back into the YAML files they came from. The files stay the one source of
// truth: `trellis route weights` and `trellis canary` edit them as a person would (the
// numbers change in place; comments, order and layout stay byte for byte), and the
// config watcher distributes the edit like any other. The yaml package's Document API
// finds the nodes, and re-renders a file when a change can't be made in place.
//
// Which rules carry "the split" of service S: rules of HTTPRoutes attached to S whose
// backendRefs all name S or its versions (`S-<version>`) and that either name two or
// more versions or match every request. A rule that pins some requests to one version
// (say `x-user: .*@mycorp.com` → S-v2) is a decision of its own and is left alone.
// When no rule carries the split, a new route file is written beside the mesh file and
// included from it.
//
// Everything here works on text in, text out, so it is tested without files.
// It sits in sources/, not compile/: it knows the file source's layout (YAML documents,
// includes, the Mesh resource) and edits it; another source (the Kubernetes API) would
// write weights its own way, and nothing here builds a snapshot.
import { basename, dirname, join, resolve } from 'node:path';
import { DEFAULT_NAMESPACE, splitServiceKey } from '../../api/names.js';
import { isMap, isScalar, isSeq, parseAllDocuments, type Document, type Node, type YAMLMap, type YAMLSeq } from 'yaml';
import { TrellisError } from '../../errors.js';

import type { SplitRule, Weights } from '../../api/admin.js';
export type { SplitRule, Weights } from '../../api/admin.js';

/** A config file's path and text. */
export interface SourceFile {
  file: string;
  text: string;
}

/** What setting the weights changes. */
export interface WeightsEdit {
  /** Files to write (changed or new), with their new text; empty when nothing changes. */
  writes: SourceFile[];
  /** The route file this edit creates, when no rule carried the split. */
  created?: string;
  /** The rules edited, with their weights before the edit. */
  rules: SplitRule[];
}

export { MAX_WEIGHT } from '../../api/admin.js';

const GATEWAY_API = 'gateway.networking.k8s.io/v1';
const TRELLIS_API = 'trellis.dev/v1alpha1';

interface BackendRefValue {
  name?: unknown;
  namespace?: unknown;
  kind?: unknown;
  group?: unknown;
  weight?: unknown;
}
interface RuleValue {
  matches?: unknown;
  backendRefs?: unknown;
}
interface RouteValue {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown };
  spec?: { parentRefs?: unknown; rules?: unknown };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function routeNs(route: RouteValue): string {
  return typeof route.metadata?.namespace === 'string' ? route.metadata.namespace : DEFAULT_NAMESPACE;
}

function routeId(route: RouteValue): string {
  return `${routeNs(route)}/${String(route.metadata?.name ?? '')}`;
}

function isService(ref: { kind?: unknown; group?: unknown }): boolean {
  return (ref.kind ?? 'Service') === 'Service' && (ref.group ?? '') === '';
}

/**
 * True when `route` is a producer route of the service whose key is `service` (in its
 * namespace, attached to it): the split every caller sees. Consumer routes (GEP-1294)
 * belong to their callers' namespaces and are edited by hand.
 */
function attachesTo(route: RouteValue, service: string): boolean {
  const { name, namespace } = splitServiceKey(service);
  const parents = route.spec?.parentRefs;
  const ns = routeNs(route);
  return ns === namespace && Array.isArray(parents) && parents.some((p) => isObject(p) && p.name === name && (p.namespace ?? ns) === namespace && isService(p));
}

/** True when one of the matches takes every request (no matches at all counts too). */
function matchesEverything(matches: unknown): boolean {
  if (!Array.isArray(matches) || matches.length === 0) return true;
  return matches.some((m) => {
    if (!isObject(m)) return false;
    if (Object.keys(m).some((k) => k !== 'path')) return false;
    const path = m.path;
    if (path === undefined) return true;
    return isObject(path) && (path.type ?? 'PathPrefix') === 'PathPrefix' && (path.value ?? '/') === '/';
  });
}

type RuleRole = 'split' | 'catch-all' | 'other';

/**
 * What a rule is to `service`'s split: `split` (ours to edit), `catch-all` (takes
 * every request somewhere else: a new split route would never be reached), `other`.
 */
function ruleRole(rule: RuleValue, service: string, versionOf: ReadonlyMap<string, string>): RuleRole {
  const { name, namespace } = splitServiceKey(service);
  const refs = Array.isArray(rule.backendRefs) ? (rule.backendRefs.filter(isObject) as BackendRefValue[]) : [];
  const everything = matchesEverything(rule.matches);
  // Rules of producer routes only (attachesTo), so a ref without a namespace is in the service's.
  const ours =
    refs.length > 0 && refs.every((r) => isService(r) && (r.namespace ?? namespace) === namespace && (r.name === name || versionOf.has(String(r.name))));
  const versions = new Set(refs.map((r) => versionOf.get(String(r.name))).filter((v) => v !== undefined));
  if (ours && (everything || versions.size >= 2)) return 'split';
  return everything ? 'catch-all' : 'other';
}

function weightOf(ref: BackendRefValue): number {
  return typeof ref.weight === 'number' ? ref.weight : 1;
}

function splitOf(file: string, route: RouteValue, index: number, rule: RuleValue, versionOf: ReadonlyMap<string, string>): SplitRule {
  const weights: Weights = {};
  let unversioned = 0;
  for (const ref of (rule.backendRefs as unknown[]).filter(isObject) as BackendRefValue[]) {
    const version = versionOf.get(String(ref.name));
    if (version === undefined) unversioned += weightOf(ref);
    else weights[version] = (weights[version] ?? 0) + weightOf(ref);
  }
  return { file, route: routeId(route), rule: index, weights, unversioned };
}

/** Backend name → version, for the versions of `service`. */
function versionBackends(service: string, versions: readonly string[]): Map<string, string> {
  const { name } = splitServiceKey(service);
  return new Map(versions.map((v) => [`${name}-${v}`, v]));
}

/**
 * The rules that carry `service`'s split in a loaded config (routes in file order), as
 * the control plane has them in force.
 */
export function splitRules(
  routes: readonly { readonly file: string; readonly resource: unknown }[],
  service: string,
  versions: readonly string[],
): SplitRule[] {
  const versionOf = versionBackends(service, versions);
  const out: SplitRule[] = [];
  for (const { file, resource } of routes) {
    const route = resource as RouteValue;
    // Only HTTPRoutes carry a version split the weights command edits (GRPCRoute and
    // TCPRoute splits are edited by hand for now).
    if ((resource as { kind?: unknown }).kind !== 'HTTPRoute') continue;
    if (!attachesTo(route, service) || !Array.isArray(route.spec?.rules)) continue;
    route.spec.rules.forEach((rule, i) => {
      if (isObject(rule) && ruleRole(rule, service, versionOf) === 'split') out.push(splitOf(file, route, i, rule, versionOf));
    });
  }
  return out;
}

/**
 * The split a person would read off the rules: the first split rule's weights, every
 * version listed (0 when the rule does not name it); undefined without a split rule.
 */
export function currentWeights(rules: readonly SplitRule[], versions: readonly string[]): Weights | undefined {
  const first = rules[0];
  if (!first) return undefined;
  return Object.fromEntries(versions.map((v) => [v, first.weights[v] ?? 0]));
}

function refused(service: string, reason: string): TrellisError {
  return new TrellisError('TRELLIS_E_WEIGHTS_REFUSED', { service, reason });
}

function render(docs: Document.Parsed[]): string {
  // lineWidth 0: never fold long strings into new lines the author did not write.
  return docs.map((d) => d.toString({ lineWidth: 0 })).join('');
}

/**
 * The edits of one file. Each change is made twice: on the Document, and as a splice
 * of the original text where the change is a plain one (a number replaced, a line
 * added). When every change was plain the file is the original text with the splices,
 * byte for byte; otherwise it is the Document re-rendered, which keeps the comments but
 * may respace flow collections and comments.
 */
class FileEdit {
  readonly #text: string;
  readonly #splices: { at: number; end: number; text: string }[] = [];
  #rerender = false;
  changed = false;

  constructor(text: string) {
    this.#text = text;
  }

  splice(at: number, end: number, text: string): void {
    this.#splices.push({ at, end, text });
    this.changed = true;
  }

  /** A change the text splices can't make. */
  rerender(): void {
    this.#rerender = true;
    this.changed = true;
  }

  result(docs: Document.Parsed[]): string {
    if (this.#rerender) return render(docs);
    let out = this.#text;
    for (const s of [...this.#splices].sort((a, b) => b.at - a.at)) out = out.slice(0, s.at) + s.text + out.slice(s.end);
    return out;
  }

  lineStart(pos: number): number {
    return this.#text.lastIndexOf('\n', pos - 1) + 1;
  }

  lineEnd(pos: number): number {
    const i = this.#text.indexOf('\n', pos);
    return i < 0 ? this.#text.length : i;
  }

  slice(a: number, b: number): string {
    return this.#text.slice(a, b);
  }
}

function start(node: unknown): number | undefined {
  return (node as Node | null)?.range?.[0];
}

function valueEnd(node: unknown): number | undefined {
  return (node as Node | null)?.range?.[1];
}

/** The `- ` prefix of a block sequence item (its whole line up to the item), if plain. */
function itemPrefix(f: FileEdit, item: unknown): string | undefined {
  const at = start(item);
  if (at === undefined) return undefined;
  const prefix = f.slice(f.lineStart(at), at);
  return /^ *- +$/.test(prefix) ? prefix : undefined;
}

/** Appends a scalar or a `{name, weight}` item to a sequence, in text and in the Document. */
function appendItem(f: FileEdit, doc: Document.Parsed, seq: YAMLSeq, value: string | { name: string; weight: number }): void {
  const last = seq.items[seq.items.length - 1];
  const end = valueEnd(isMap(last) ? last.items[last.items.length - 1]?.value : last);
  const prefix = last === undefined ? undefined : itemPrefix(f, last);
  seq.items.push(doc.createNode(value));
  if (end === undefined || (!seq.flow && prefix === undefined)) return f.rerender();
  if (seq.flow) {
    f.splice(end, end, typeof value === 'string' ? `, ${value}` : `, { name: ${value.name}, weight: ${value.weight} }`);
  } else if (typeof value === 'string') {
    const at = f.lineEnd(end);
    f.splice(at, at, `\n${prefix}${value}`);
  } else {
    const at = f.lineEnd(end);
    const indent = ' '.repeat(prefix!.length);
    f.splice(at, at, `\n${prefix}name: ${value.name}\n${indent}weight: ${value.weight}`);
  }
}

/** Sets `weight` of one backendRef, in text and in the Document. */
function setWeight(f: FileEdit, item: YAMLMap, weight: number): void {
  const node = item.get('weight', true);
  const lastValue = item.items[item.items.length - 1]?.value;
  item.set('weight', weight);
  if (isScalar(node) && start(node) !== undefined && valueEnd(node) !== undefined) {
    return f.splice(start(node)!, valueEnd(node)!, String(weight));
  }
  const end = valueEnd(lastValue);
  const first = start(item.items[0]?.key);
  if (node !== undefined || end === undefined || first === undefined) return f.rerender();
  if (item.flow) return f.splice(end, end, `, weight: ${weight}`);
  // After the line of the last field, so a comment at its end stays on its line.
  const at = f.lineEnd(end);
  f.splice(at, at, `\n${' '.repeat(first - f.lineStart(first))}weight: ${weight}`);
}

/** Sets the weights of one rule's backendRefs. */
function editRule(f: FileEdit, doc: Document.Parsed, seq: YAMLSeq, key: string, weights: Weights): void {
  // Backend names as the route writes them: in the service's namespace, without it.
  const service = splitServiceKey(key).name;
  const seen = new Set<string>();
  for (const item of [...seq.items]) {
    if (!isMap(item)) continue;
    const name = String(item.get('name'));
    if (name === service) {
      // The whole service splits by instance count, which would blur the proportions asked for.
      seq.items.splice(seq.items.indexOf(item), 1);
      f.rerender();
      continue;
    }
    const version = name.startsWith(`${service}-`) ? name.slice(service.length + 1) : undefined;
    if (version === undefined || !(version in weights)) continue;
    const want = seen.has(version) ? 0 : weights[version]!;
    seen.add(version);
    const had = item.get('weight');
    if ((typeof had === 'number' ? had : 1) !== want) setWeight(f, item, want);
  }
  for (const [version, weight] of Object.entries(weights)) {
    if (seen.has(version) || weight === 0) continue;
    appendItem(f, doc, seq, { name: `${service}-${version}`, weight });
  }
}

/** Adds `entry` to the Mesh's spec.include (made first in spec when there is none). */
function addInclude(f: FileEdit, doc: Document.Parsed, spec: YAMLMap, entry: string): boolean {
  const include = spec.get('include', true);
  if (isSeq(include)) {
    if (include.items.some((i) => isScalar(i) && i.value === entry)) return true;
    appendItem(f, doc, include, entry);
    return true;
  }
  if (include !== undefined) return false;
  const firstKey = start(spec.items[0]?.key);
  spec.items.unshift(doc.createPair('include', [entry]));
  const lineAt = firstKey === undefined ? undefined : f.lineStart(firstKey);
  if (firstKey === undefined || spec.flow || !/^ +$/.test(f.slice(lineAt!, firstKey))) f.rerender();
  else f.splice(lineAt!, lineAt!, `${f.slice(lineAt!, firstKey)}include: [${entry}]\n`);
  return true;
}

function newRouteText(key: string, name: string, weights: Weights): string {
  const { name: service, namespace } = splitServiceKey(key);
  const refs = Object.entries(weights)
    .filter(([, w]) => w > 0)
    .map(([v, w]) => `        - name: ${service}-${v}\n          weight: ${w}\n`)
    .join('');
  const ns = namespace === DEFAULT_NAMESPACE ? '' : `\n  namespace: ${namespace}`;
  return `# The traffic split between the versions of ${service}, written by \`trellis route weights\`
# (or \`trellis canary\`) because no HTTPRoute rule of ${service} carried one. Edit it by
# hand or with the command; the control plane reloads it either way.
apiVersion: ${GATEWAY_API}
kind: HTTPRoute
metadata:
  name: ${name}${ns}
spec:
  parentRefs:
    - { group: "", kind: Service, name: ${service} }
  rules:
    - backendRefs:
${refs}`;
}

/**
 * Plans setting `weights` (every version of the service, 0 included) in the config
 * `files`: edits every rule that carries the split, or, when none does, adds a route
 * file beside the mesh file and includes it. Throws TRELLIS_E_WEIGHTS_REFUSED when the
 * files can't take the change safely.
 */
export function planWeights(o: { files: readonly SourceFile[]; service: string; versions: readonly string[]; weights: Weights }): WeightsEdit {
  const { service, weights } = o;
  const versionOf = versionBackends(service, o.versions);
  const writes: SourceFile[] = [];
  const rules: SplitRule[] = [];
  const blockers: string[] = [];
  const routeNames = new Set<string>();
  let mesh: { file: string; text: string; docs: Document.Parsed[]; doc: Document.Parsed } | undefined;

  for (const { file, text } of o.files) {
    const docs = parseAllDocuments(text);
    const broken = docs.find((d) => d.errors.length > 0);
    if (broken) throw refused(service, `${file} has a YAML syntax error (${broken.errors[0]!.message}); fix it first`);
    const f = new FileEdit(text);
    for (const doc of docs) {
      const value = doc.toJS() as unknown;
      if (!isObject(value)) continue;
      const resource = value as RouteValue;
      if (resource.apiVersion === TRELLIS_API && resource.kind === 'Mesh' && !mesh) mesh = { file, text, docs, doc };
      if (resource.apiVersion !== GATEWAY_API || resource.kind !== 'HTTPRoute') continue;
      routeNames.add(routeId(resource));
      if (!attachesTo(resource, service) || !Array.isArray(resource.spec?.rules)) continue;
      resource.spec.rules.forEach((rule, i) => {
        if (!isObject(rule)) return;
        const role = ruleRole(rule, service, versionOf);
        if (role === 'catch-all') blockers.push(`${file}: HTTPRoute ${routeId(resource)} rule ${i}`);
        if (role !== 'split') return;
        rules.push(splitOf(file, resource, i, rule, versionOf));
        const seq = doc.getIn(['spec', 'rules', i, 'backendRefs'], true);
        if (isSeq(seq)) editRule(f, doc, seq, service, weights);
      });
    }
    if (f.changed) writes.push({ file, text: f.result(docs) });
  }
  if (rules.length > 0) return { writes, rules };

  if (blockers.length > 0) {
    throw refused(
      service,
      `no HTTPRoute rule splits ${service} between its versions, and ${blockers.join(', ')} takes every request to ${service} elsewhere, ` +
        `so a new split would never be reached; give that rule ${service}-<version> backendRefs and run the command again`,
    );
  }
  if (!mesh)
    throw refused(service, `none of the config files (${o.files.map((f) => f.file).join(', ')}) holds the Mesh resource to include a new route file from`);
  const { name: serviceName, namespace } = splitServiceKey(service);
  const name = `${serviceName}-weights`;
  if (routeNames.has(`${namespace}/${name}`)) {
    throw refused(service, `an HTTPRoute named ${name} exists but does not split ${service}; rename it, or give it ${service}-<version> backendRefs`);
  }
  const created = join(dirname(mesh.file), `${name}${namespace === DEFAULT_NAMESPACE ? '' : `.${namespace}`}.yaml`);
  if (o.files.some((f) => resolve(f.file) === resolve(created))) {
    throw refused(service, `${created} is already part of the config but holds no split of ${service}; edit it by hand`);
  }
  const entry = basename(created);
  const spec = mesh.doc.get('spec', true);
  const f = new FileEdit(mesh.text);
  if (!isMap(spec) || !addInclude(f, mesh.doc, spec, entry)) throw refused(service, `spec.include of the Mesh in ${mesh.file} is not a list`);
  writes.push({ file: mesh.file, text: f.result(mesh.docs) }, { file: created, text: newRouteText(service, name, weights) });
  return { writes, created, rules: [] };
}
