// Reads the YAML documents of one config file and keeps, beside each document's
// value, a way back from a field path to its line and column. The validator works on
// plain values; when it finds a problem at `spec.services[2].port` it asks the
// document where that is, through the node ranges the yaml parser recorded.
import { LineCounter, isMap, isScalar, isSeq, parseAllDocuments, type Node, type Range } from 'yaml';
import type { Problem, Segment } from './problems.js';
import { fieldPath } from './problems.js';

/** A 1-based line and column. */
export interface Position {
  line: number;
  column: number;
}

/** One YAML document of a file, as a plain value plus its source positions. */
export interface SourceDocument {
  file: string;
  /** 1-based position of the document within its file. */
  index: number;
  value: unknown;
  /**
   * Where a field path is in the file: the value's position, or the key's when
   * `at` is 'key' (for "unknown field"); the nearest existing ancestor when the
   * path does not exist (for "is required").
   */
  locate(path: readonly Segment[], at?: 'key' | 'value'): Position | undefined;
}

/** The documents of one file and the YAML syntax errors found in it. */
export interface ParsedFile {
  documents: SourceDocument[];
  problems: Problem[];
}

/** Parses every document (`---`) of a file; documents with syntax errors are left out. */
export function parseYamlFile(file: string, text: string): ParsedFile {
  const lineCounter = new LineCounter();
  // prettyErrors off: we place the error with line/column ourselves, and the pretty
  // form would append a source excerpt to the one-line message.
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const position = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset);
    return { line: Math.max(line, 1), column: Math.max(col, 1) };
  };
  const documents: SourceDocument[] = [];
  const problems: Problem[] = [];
  let index = 0;
  for (const doc of docs) {
    index++;
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        problems.push({ file, path: '', message: `YAML syntax error: ${err.message}`, ...position(err.pos[0]) });
      }
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 1000 });
    } catch (err) {
      // e.g. an alias that expands too often ("billion laughs").
      const start = doc.contents?.range?.[0] ?? 0;
      problems.push({ file, path: '', message: `YAML error: ${(err as Error).message}`, ...position(start) });
      continue;
    }
    // A bare `---` or a file of comments holds no resource; that is not an error.
    if (value === null || value === undefined) continue;
    const contents = doc.contents;
    documents.push({
      file,
      index,
      value,
      locate: (path, at = 'value') => {
        const range = findRange(contents, path, at);
        return range ? position(range[0]) : undefined;
      },
    });
  }
  return { documents, problems };
}

/** A problem at a field path of a document, with its line and column when known. */
export function problemAt(doc: SourceDocument, path: readonly Segment[], message: string, at: 'key' | 'value' = 'value'): Problem {
  return { file: doc.file, path: fieldPath(path), message, ...doc.locate(path, at) };
}

function findRange(root: Node | null, path: readonly Segment[], at: 'key' | 'value'): Range | undefined {
  let node: unknown = root;
  let best: Range | undefined = root?.range ?? undefined;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) break;
      const keyRange = isScalar(pair.key) ? (pair.key.range ?? undefined) : undefined;
      const valueRange = (pair.value as Node | null)?.range ?? undefined;
      best = last && at === 'key' ? (keyRange ?? valueRange) : (valueRange ?? keyRange ?? best);
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as Node | undefined;
      if (!item) break;
      best = item.range ?? best;
      node = item;
    } else {
      break;
    }
  }
  return best;
}
