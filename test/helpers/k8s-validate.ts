// Test helper: validates Kubernetes objects against the schemas they will meet on a
// cluster. Built-in kinds (and CustomResourceDefinitions themselves) against the
// Kubernetes OpenAPI schemas shipped by `kubernetes-models`; the kinds Trellis reads
// (trellis.dev and the Gateway API ones) against Trellis's own TypeBox schema, the one
// the control plane applies. Anything else is a problem: no object goes unchecked.
import { Value } from '@sinclair/typebox/value';
import { RESOURCE_KINDS } from '../../src/config/schema/kinds.js';

interface Validatable {
  validate(): void;
}
type ModelClass = new (data: unknown) => Validatable;

/** What is wrong with one object (empty when it is valid). */
export async function k8sProblems(object: unknown): Promise<string[]> {
  if (typeof object !== 'object' || object === null) return ['not an object'];
  const { apiVersion, kind } = object as { apiVersion?: unknown; kind?: unknown };
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['apiVersion and kind must be strings'];
  const name = `${apiVersion}/${kind}`;
  const ours = apiVersion === 'v1' ? undefined : RESOURCE_KINDS[name];
  if (ours !== undefined) return [...Value.Errors(ours.schema, object)].map((e) => `${name} ${e.path}: ${e.message}`);
  if (!/^[a-z0-9.]*\/?v[0-9a-z]+$/.test(apiVersion) || !/^[A-Za-z]+$/.test(kind)) return [`${name}: not a Kubernetes kind`];
  let Model: ModelClass;
  try {
    const module = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, ModelClass>;
    Model = module[kind]!;
  } catch {
    return [`${name}: no schema for this kind in kubernetes-models`];
  }
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    return [`${name} ${(object as { metadata?: { name?: string } }).metadata?.name ?? ''}: ${(error as Error).message}`];
  }
}

/**
 * What is wrong with one object by the openAPIV3Schema of its CRD among `crds` (the
 * API server's own check of a custom resource, less CEL rules and formats), or a
 * problem when no CRD serves its version.
 */
export async function crdProblems(object: { apiVersion: string; kind: string }, crds: readonly Record<string, unknown>[]): Promise<string[]> {
  const { default: Ajv } = (await import('ajv')) as unknown as {
    default: new (o: object) => { compile(s: object): ((v: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] } };
  };
  const [group, version] = object.apiVersion.split('/');
  // biome-ignore lint/suspicious/noExplicitAny: CRDs read from YAML
  const crd = crds.find((c: any) => c.spec?.group === group && c.spec?.names?.kind === object.kind) as any;
  const served = crd?.spec.versions.find((v: { name: string }) => v.name === version);
  if (served === undefined) return [`${object.apiVersion}/${object.kind}: no CRD serves it`];
  const validate = new Ajv({ strict: false, allErrors: true, validateFormats: false, logger: false }).compile(served.schema.openAPIV3Schema);
  if (validate(object)) return [];
  return (validate.errors ?? []).map((e) => `${object.kind} ${e.instancePath}: ${e.message}`);
}
