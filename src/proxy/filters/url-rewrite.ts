// URLRewrite: the request goes on with another Host header and/or path; the client
// never sees it. ReplacePrefixMatch swaps the PathPrefix the route matched.
import type { RouteFilter } from '../../api/protocol.js';
import type { HeadEdits } from './head-edits.js';
import { modifyPath } from './path-modifier.js';

type RewriteSpec = Extract<RouteFilter, { type: 'URLRewrite' }>;

export function rewrite(edits: HeadEdits, spec: RewriteSpec, matchedPrefix: string): void {
  if (spec.hostname !== undefined) edits.host(spec.hostname);
  if (spec.path !== undefined) edits.path = modifyPath(edits.path, spec.path, matchedPrefix);
}
