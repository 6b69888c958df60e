// RequestHeaderModifier and ResponseHeaderModifier: set, add and remove header lines.
// Compiled once per snapshot into the set of names to drop (removed or overwritten)
// and the lines to append, so applying one is a single pass over the head's lines.
import type { HeaderEditsSpec } from '../../api/protocol.js';

export interface HeaderModifier {
  /** Lower-case names whose existing lines go: `remove` and `set` names. */
  readonly drop: ReadonlySet<string>;
  /** `name: value` lines appended: `set` and `add`. */
  readonly append: readonly string[];
}

export function compileHeaderModifier(spec: HeaderEditsSpec): HeaderModifier {
  const drop = new Set<string>([...(spec.remove ?? []), ...(spec.set ?? []).map((h) => h.name)]);
  // `add` appends a line; a header repeated on separate lines means the same as one
  // comma-joined line (RFC 9110 §5.3), which is what the Gateway API describes.
  const append = [...(spec.set ?? []), ...(spec.add ?? [])].map((h) => `${h.name}: ${h.value}`);
  return { drop, append };
}

/** The lines after the edit; `lines` are `Name: value` strings without CRLF. */
export function editLines(lines: readonly string[], m: HeaderModifier): string[] {
  const out: string[] = [];
  for (const line of lines) {
    if (m.drop.size > 0 && m.drop.has(line.slice(0, line.indexOf(':')).trimEnd().toLowerCase())) continue;
    out.push(line);
  }
  for (const line of m.append) out.push(line);
  return out;
}

/**
 * Applies response edits to the head in `buf[0, end)` (end just past the blank line)
 * and returns a buffer with the edited head followed by the rest of `buf`. Only runs
 * for routes with a ResponseHeaderModifier; framing headers can't be edited (the
 * config check refuses them), so the parsed framing still holds.
 */
export function editResponseHead(buf: Buffer, end: number, edits: readonly HeaderModifier[]): { buf: Buffer; end: number } {
  const text = buf.toString('latin1', 0, end - 4);
  const lines = text.split('\r\n');
  const status = lines.shift()!;
  let edited: readonly string[] = lines;
  for (const m of edits) edited = editLines(edited, m);
  const head = Buffer.from(`${status}\r\n${edited.length > 0 ? `${edited.join('\r\n')}\r\n` : ''}\r\n`, 'latin1');
  return { buf: end === buf.length ? head : Buffer.concat([head, buf.subarray(end)]), end: head.length };
}
