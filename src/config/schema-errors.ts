// Checks a document against its TypeBox schema and turns TypeBox's errors into
// Problems people can act on: the field path in `a.b[2]` form, its line and column,
// what is wrong and what would be right ("must be one of http, tcp (got \"udp\")").
//
// Unions get special care. TypeBox reports a failed union as one error holding the
// errors of every branch; we pick the branch the author evidently meant (by the
// value's type, then by a key only that branch has) and report its errors, so a typo
// inside `{ service, port }` reads "unknown field" and not "expected union value".
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { type Problem, type Segment, showValue } from './problems.js';
import { problemAt, type SourceDocument } from './yaml-source.js';

/** Every schema problem of a document (at most one per field path), in document order. */
export function checkSchema(doc: SourceDocument, schema: TSchema): Problem[] {
  if (Value.Check(schema, doc.value)) return [];
  const seen = new Set<string>();
  const problems: Problem[] = [];
  for (const error of Value.Errors(schema, doc.value)) {
    for (const issue of describe(error, doc.value)) {
      const key = issue.segments.join('\u0000');
      if (seen.has(key)) continue;
      seen.add(key);
      problems.push(problemAt(doc, issue.segments, issue.message, issue.at));
    }
  }
  return problems;
}

interface Issue {
  segments: Segment[];
  message: string;
  at: 'key' | 'value';
}

function describe(error: ValueError, root: unknown): Issue[] {
  const segments = toSegments(error.path, root);
  const schema = error.schema as TSchema & Record<string, unknown>;
  const got = ` (got ${showValue(error.value)})`;
  const issue = (message: string, at: 'key' | 'value' = 'value'): Issue[] => [{ segments, message, at }];
  const described = typeof schema.description === 'string' ? `must be ${schema.description}${got}` : undefined;

  switch (error.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const allowed = Object.keys((schema.properties as Record<string, unknown> | undefined) ?? {});
      const field = String(segments[segments.length - 1]);
      return issue(`unknown field "${field}"; allowed here: ${allowed.join(', ') || 'none'}`, 'key');
    }
    case ValueErrorType.ObjectRequiredProperty:
      return issue('is required');
    case ValueErrorType.Union: {
      const literals = literalChoices(schema);
      if (literals) return issue(`must be one of ${literals.join(', ')}${got}`);
      const branch = chooseBranch(schema, error.value);
      if (branch !== undefined) {
        const inner = error.errors[branch];
        if (inner) return [...inner].flatMap((e) => describe(e, root));
      }
      return issue(described ?? `does not match any allowed shape${got}`);
    }
    case ValueErrorType.Literal:
      return issue(`must be ${JSON.stringify(schema.const)}${got}`);
    case ValueErrorType.ArrayMinItems:
      return issue(`must have at least ${String(schema.minItems)} item${schema.minItems === 1 ? '' : 's'}`);
    case ValueErrorType.ArrayMaxItems:
      return issue(`must have at most ${String(schema.maxItems)} items (got ${(error.value as unknown[]).length})`);
    case ValueErrorType.Array:
      return issue(`must be a list${got}`);
    case ValueErrorType.Object:
      return issue(described ?? `must be a mapping${got}`);
    case ValueErrorType.StringMinLength:
      return issue(described ?? (schema.minLength === 1 ? 'must not be empty' : `must be at least ${String(schema.minLength)} characters`));
    case ValueErrorType.StringMaxLength:
      return issue(described ?? `must be at most ${String(schema.maxLength)} characters`);
    case ValueErrorType.StringPattern:
      return issue(described ?? `must match ${String(schema.pattern)}${got}`);
    case ValueErrorType.String:
      return issue(described ?? `must be a string${got}`);
    case ValueErrorType.Boolean:
      return issue(`must be true or false${got}`);
    case ValueErrorType.Integer:
    case ValueErrorType.Number:
      return issue(described ?? `must be a ${error.type === ValueErrorType.Integer ? 'whole ' : ''}number${got}`);
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.NumberMaximum:
      return issue(described ?? `must be ${range(schema.minimum, schema.maximum)}${got}`);
    default:
      return issue(described ?? `${error.message.charAt(0).toLowerCase()}${error.message.slice(1)}${got}`);
  }
}

function range(min: unknown, max: unknown): string {
  if (typeof min === 'number' && typeof max === 'number') return `between ${min} and ${max}`;
  if (typeof min === 'number') return `at least ${min}`;
  return `at most ${String(max)}`;
}

/** The allowed values when a union is an enum of literals. */
function literalChoices(schema: Record<string, unknown>): string[] | undefined {
  const branches = schema.anyOf as Record<string, unknown>[];
  if (!branches.every((b) => 'const' in b)) return undefined;
  return branches.map((b) => String(b.const));
}

/** The index of the union branch the author meant, when that is clear. */
function chooseBranch(schema: Record<string, unknown>, value: unknown): number | undefined {
  const branches = schema.anyOf as Record<string, unknown>[];
  const sameType = branches.flatMap((b, i) => (jsonType(value) === b.type || (b.type === 'integer' && typeof value === 'number') ? [i] : []));
  if (sameType.length === 1) return sameType[0];
  if (sameType.length === 0 || jsonType(value) !== 'object') return undefined;
  // Several object shapes: pick the one whose own distinguishing key is present
  // (`http` vs `tcp` for a health check); none or several means no clear intent.
  const keys = (b: Record<string, unknown>) => Object.keys((b.properties as object | undefined) ?? {});
  const present = sameType.filter((i) => {
    const others = new Set(sameType.filter((j) => j !== i).flatMap((j) => keys(branches[j]!)));
    return keys(branches[i]!).some((k) => !others.has(k) && k in (value as object));
  });
  return present.length === 1 ? present[0] : undefined;
}

function jsonType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'object' : typeof value;
}

/** JSON pointer → segments, with list indices as numbers (looked up in the value). */
function toSegments(pointer: string, root: unknown): Segment[] {
  if (pointer === '') return [];
  const segments: Segment[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      segments.push(Number(key));
      node = node[Number(key)];
    } else {
      segments.push(key);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
    }
  }
  return segments;
}
