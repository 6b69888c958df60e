// The CustomResourceDefinitions of every trellis.dev/v1alpha1 kind, generated from the
// one TypeBox schema source (src/config/schema/) as structural OpenAPI v3 schemas, the
// way Kubernetes wants them: every node typed, no $ref/const/patternProperties/
// additionalProperties:false, anyOf only as value validation. `npm run schema` writes
// them to deploy/kubernetes/crds/ and test/k8s/crds.test.ts fails when they drift.
//
// The translation is lossy on purpose in two places, and the control plane still
// validates every resource with the full TypeBox schema: unions of different shapes
// become `x-kubernetes-preserve-unknown-fields` (or `x-kubernetes-int-or-string`), and
// closed objects become open in the schema but pruned by the API server (structural
// schemas drop unknown fields), which is Kubernetes' own way of refusing them.
import { stringify } from 'yaml';
import { RESOURCE_KINDS } from '../config/schema/kinds.js';
import { TRELLIS_API_VERSION } from '../config/schema.js';

/** Folder (relative to the project root) the generated CRDs are written to. */
export const CRD_DIR = 'deploy/kubernetes/crds';

type Json = Record<string, unknown>;

/** One trellis.dev kind as a CRD: its kind, plural and the file it lives in. */
export interface CrdKind {
  kind: string;
  plural: string;
  file: string;
}

const GROUP = TRELLIS_API_VERSION.split('/')[0]!;
const VERSION = TRELLIS_API_VERSION.split('/')[1]!;

function pluralOf(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower.endsWith('y')) return `${lower.slice(0, -1)}ies`;
  if (lower.endsWith('sh') || lower.endsWith('s')) return `${lower}es`;
  return `${lower}s`;
}

/** The trellis.dev kinds, in the order of RESOURCE_KINDS. */
export function trellisKinds(): CrdKind[] {
  return Object.values(RESOURCE_KINDS)
    .filter((k) => k.apiVersion === TRELLIS_API_VERSION)
    .map((k) => {
      const plural = pluralOf(k.kind);
      return { kind: k.kind, plural, file: `${plural}.${GROUP}.yaml` };
    });
}

function jsonTypeOf(value: unknown): string {
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

// Go's regexp (RE2) has no \uXXXX escape; it spells the same code point \x{XXXX}.
function re2Pattern(pattern: string): string {
  return pattern.replace(/\\u([0-9a-fA-F]{4})/g, '\\x{$1}');
}

const SCALARS = new Set(['string', 'integer', 'number', 'boolean']);

/** Converts one JSON Schema node (TypeBox output) to a structural OpenAPI v3 node. */
export function toStructural(node: Json): Json {
  if (node.const !== undefined) {
    return withDescription({ type: jsonTypeOf(node.const), enum: [node.const] }, node);
  }
  if (Array.isArray(node.anyOf)) return unionToStructural(node.anyOf as Json[], node);
  const out: Json = {};
  for (const [key, value] of Object.entries(node)) {
    switch (key) {
      case 'title':
      case '$id':
      case '$schema':
        break;
      case 'properties': {
        const props: Json = {};
        for (const [name, child] of Object.entries(value as Json)) props[name] = toStructural(child as Json);
        out.properties = props;
        break;
      }
      case 'patternProperties': {
        // TypeBox's Record(String, X) is patternProperties {'^(.*)$': X}: a map.
        const schemas = Object.values(value as Json) as Json[];
        out.additionalProperties = schemas.length === 1 ? toStructural(schemas[0]!) : { 'x-kubernetes-preserve-unknown-fields': true };
        break;
      }
      case 'additionalProperties':
        // false: a structural schema prunes unknown fields already; a schema: a map.
        if (typeof value === 'object' && value !== null && node.properties === undefined) out.additionalProperties = toStructural(value as Json);
        break;
      case 'items':
        out.items = toStructural(value as Json);
        break;
      case 'pattern':
        out.pattern = re2Pattern(value as string);
        break;
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        // Draft 2020 numbers; OpenAPI v3.0 wants the bound plus a boolean.
        if (typeof value === 'number') {
          out[key === 'exclusiveMinimum' ? 'minimum' : 'maximum'] = value;
          out[key] = true;
        } else out[key] = value;
        break;
      case 'uniqueItems':
        // Forbidden in CRDs; a list of scalars says the same with list-type set.
        if (value === true && SCALARS.has(String((node.items as Json | undefined)?.type))) out['x-kubernetes-list-type'] = 'set';
        break;
      default:
        out[key] = value;
    }
  }
  if (out.type === undefined && out['x-kubernetes-preserve-unknown-fields'] === undefined) out['x-kubernetes-preserve-unknown-fields'] = true;
  return out;
}

function withDescription(out: Json, node: Json): Json {
  if (typeof node.description === 'string') out.description = node.description;
  if (node.default !== undefined) out.default = node.default;
  return out;
}

function unionToStructural(members: Json[], node: Json): Json {
  // A union of literals of one type is an enum.
  if (members.every((m) => m.const !== undefined)) {
    const types = new Set(members.map((m) => jsonTypeOf(m.const)));
    if (types.size === 1) return withDescription({ type: [...types][0], enum: members.map((m) => m.const) }, node);
  }
  const types = new Set(members.map((m) => String(m.type)));
  // Ports: a number or a named port.
  if (types.size === 2 && types.has('integer') && types.has('string')) return withDescription({ 'x-kubernetes-int-or-string': true }, node);
  // Alternative objects: one object with every property; which combination is
  // allowed is checked by the control plane's own validation.
  if (types.size === 1 && types.has('object')) {
    const properties: Json = {};
    for (const m of members) for (const [name, child] of Object.entries((m.properties as Json) ?? {})) properties[name] ??= toStructural(child as Json);
    return withDescription({ type: 'object', properties }, node);
  }
  // Anything else (a string or an object; a string, number or boolean) is kept as
  // written and checked by the control plane.
  return withDescription({ 'x-kubernetes-preserve-unknown-fields': true }, node);
}

/** The CRD of one trellis.dev kind. */
export function buildCrd(kind: CrdKind): Json {
  const source = Object.values(RESOURCE_KINDS).find((k) => k.apiVersion === TRELLIS_API_VERSION && k.kind === kind.kind);
  if (source === undefined) throw new Error(`no trellis.dev kind ${kind.kind}`);
  const resource = JSON.parse(JSON.stringify(source.schema)) as Json;
  const props = (resource.properties ?? {}) as Json;
  const properties: Json = {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    // Only name and generateName may be validated under metadata; the API server owns it.
    metadata: { type: 'object' },
  };
  for (const [name, child] of Object.entries(props)) {
    if (name === 'apiVersion' || name === 'kind' || name === 'metadata') continue;
    properties[name] = toStructural(child as Json);
  }
  const required = ((resource.required as string[] | undefined) ?? []).filter((r) => r in properties && r !== 'apiVersion' && r !== 'kind' && r !== 'metadata');
  const openAPIV3Schema: Json = { type: 'object' };
  if (typeof resource.description === 'string') openAPIV3Schema.description = resource.description;
  openAPIV3Schema.properties = properties;
  if (required.length > 0) openAPIV3Schema.required = required;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${kind.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/part-of': 'trellis' },
      annotations: { 'trellis.dev/generated-by': 'npm run schema (src/k8s/crds.ts); do not edit by hand' },
    },
    spec: {
      group: GROUP,
      names: { kind: kind.kind, listKind: `${kind.kind}List`, plural: kind.plural, singular: kind.kind.toLowerCase(), categories: ['trellis'] },
      scope: 'Namespaced',
      versions: [{ name: VERSION, served: true, storage: true, schema: { openAPIV3Schema } }],
    },
  };
}

/** Every generated file of deploy/kubernetes/crds/: name → exact text. */
export function crdFiles(): Map<string, string> {
  const files = new Map<string, string>();
  const kinds = trellisKinds();
  for (const kind of kinds) {
    files.set(kind.file, `# Generated from src/config/schema by \`npm run schema\`; do not edit.\n${stringify(buildCrd(kind), { lineWidth: 0 })}`);
  }
  const kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: kinds.map((k) => k.file),
  };
  files.set('kustomization.yaml', `# Generated by \`npm run schema\`; do not edit.\n${stringify(kustomization)}`);
  return files;
}

/** Keywords a structural schema must not hold, with why. */
const FORBIDDEN: Record<string, string> = {
  $ref: 'references are not supported in CRD schemas',
  $schema: 'not supported in CRD schemas',
  const: 'not supported in CRD schemas (use enum)',
  patternProperties: 'not supported in CRD schemas (use additionalProperties)',
  definitions: 'not supported in CRD schemas',
  dependencies: 'not supported in CRD schemas',
  additionalItems: 'not supported in CRD schemas',
  id: 'not supported in CRD schemas',
};

/**
 * Why a CRD's openAPIV3Schema is not structural (empty when it is), checked the way
 * the API server's validation of apiextensions.k8s.io/v1 does for the rules our
 * generator could break: every node typed unless it preserves unknown fields or is
 * int-or-string; no forbidden keyword; additionalProperties only a schema and never
 * beside properties; anyOf/allOf/oneOf/not with value validations only; uniqueItems
 * never true; metadata with nothing but a type; patterns in RE2's syntax.
 */
export function structuralProblems(schema: Json, path = 'openAPIV3Schema', inJunctor = false): string[] {
  const problems: string[] = [];
  const preserves = schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-int-or-string'] === true;
  for (const [key, why] of Object.entries(FORBIDDEN)) if (key in schema) problems.push(`${path}.${key}: ${why}`);
  if (inJunctor) {
    for (const key of ['type', 'description', 'default', 'additionalProperties', 'nullable', 'x-kubernetes-preserve-unknown-fields'])
      if (key in schema) problems.push(`${path}.${key}: must not be set inside anyOf/allOf/oneOf/not`);
  } else if (schema.type === undefined && !preserves) problems.push(`${path}.type: must be set`);
  if (schema.additionalProperties === false) problems.push(`${path}.additionalProperties: false is not allowed`);
  if (schema.additionalProperties !== undefined && schema.properties !== undefined)
    problems.push(`${path}: additionalProperties and properties are mutually exclusive`);
  if (schema.uniqueItems === true) problems.push(`${path}.uniqueItems: may not be true`);
  if (schema.type === 'array' && schema.items === undefined) problems.push(`${path}.items: must be set for an array`);
  if (typeof schema.pattern === 'string' && /\\u[0-9a-fA-F]{4}|\(\?[=!<]/.test(schema.pattern)) problems.push(`${path}.pattern: not RE2 syntax`);
  if (schema.type !== undefined && !['object', 'array', 'string', 'integer', 'number', 'boolean'].includes(schema.type as string))
    problems.push(`${path}.type: ${JSON.stringify(schema.type)} is not one type`);
  for (const [name, child] of Object.entries((schema.properties as Json | undefined) ?? {})) {
    if (path === 'openAPIV3Schema' && name === 'metadata') {
      const keys = Object.keys(child as Json).filter((k) => k !== 'type');
      if (keys.length > 0) problems.push(`${path}.properties.metadata: only type is allowed, has ${keys.join(', ')}`);
    }
    problems.push(...structuralProblems(child as Json, `${path}.properties.${name}`, inJunctor));
  }
  if (typeof schema.items === 'object' && schema.items !== null) problems.push(...structuralProblems(schema.items as Json, `${path}.items`, inJunctor));
  if (typeof schema.additionalProperties === 'object' && schema.additionalProperties !== null)
    problems.push(...structuralProblems(schema.additionalProperties as Json, `${path}.additionalProperties`, inJunctor));
  for (const junctor of ['anyOf', 'allOf', 'oneOf']) {
    const members = schema[junctor];
    if (!Array.isArray(members)) continue;
    for (const [i, m] of members.entries()) problems.push(...structuralProblems(m as Json, `${path}.${junctor}[${i}]`, true));
  }
  if (typeof schema.not === 'object' && schema.not !== null) problems.push(...structuralProblems(schema.not as Json, `${path}.not`, true));
  return problems;
}
