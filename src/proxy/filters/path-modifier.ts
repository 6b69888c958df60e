// The path half of RequestRedirect and URLRewrite: ReplaceFullPath, or
// ReplacePrefixMatch, which swaps the PathPrefix the route matched for another,
// keeping whole path elements as the Gateway API's table of examples says
// (/foo + /foo/bar → /xyz/bar; /foo + /foo → /xyz; replacement / + /foo/bar → /bar).
import type { PathModifierSpec } from '../../api/protocol.js';

/** The new path of `path`, given the PathPrefix value the route matched (`/` when none). */
export function modifyPath(path: string, spec: PathModifierSpec, matchedPrefix: string): string {
  if (spec.type === 'ReplaceFullPath') return spec.value;
  const prefix = matchedPrefix.endsWith('/') ? matchedPrefix.slice(0, -1) : matchedPrefix;
  const rest = path.slice(prefix.length);
  const replacement = spec.value.endsWith('/') ? spec.value.slice(0, -1) : spec.value;
  const out = replacement + rest;
  return out === '' ? '/' : out.charCodeAt(0) === 47 ? out : `/${out}`;
}

/** The query string of a request target, with its `?`, or ''. */
export function queryOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? '' : target.slice(q);
}
