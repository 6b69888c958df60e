// A Problem is one thing wrong with the config: the file, the field path inside the
// resource (`spec.services[2].upstreams[0]`) and what is wrong and what would be
// right. Every check (YAML syntax, schema, semantics) reports in this one shape, so
// `trellis validate`, the control plane and editors show them all the same way.

/** One thing wrong with the config. `line` and `column` are 1-based. */
export interface Problem {
  file: string;
  /** Field path inside the resource, e.g. `spec.rules[0].backendRefs[1].name`; '' for the whole file. */
  path: string;
  message: string;
  line?: number;
  column?: number;
}

/** One step of a field path: a mapping key or a list index. */
export type Segment = string | number;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** Renders path segments as `a.b[2].c`; odd keys (labels with dots) as `["app.kubernetes.io/name"]`. */
export function fieldPath(segments: readonly Segment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (IDENTIFIER.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/** `file:line:col: path: message`, leaving out the parts that are missing. */
export function formatProblem(p: Problem): string {
  let where = p.file;
  if (p.line !== undefined) {
    where += `:${p.line}`;
    if (p.column !== undefined) where += `:${p.column}`;
  }
  return [where, p.path, p.message].filter((part) => part !== '').join(': ');
}

/** Shows a value in a message: strings quoted and cut short, containers by kind. */
export function showValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value);
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/** Suggests the closest known name for a likely typo (edit distance at most 2). */
export function didYouMean(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best === undefined ? '' : `; did you mean "${best}"?`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
