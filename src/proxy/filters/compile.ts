// A route's Gateway API filters, compiled once per snapshot into what the filter layers
// (index.ts) apply per request.
import type { RouteFilter } from '../../api/protocol.js';
import { compileHeaderModifier, type HeaderModifier } from './header-modifier.js';

export interface CompiledFilters {
  readonly redirect?: Extract<RouteFilter, { type: 'RequestRedirect' }>;
  readonly requestHeaders?: HeaderModifier;
  readonly rewrite?: Extract<RouteFilter, { type: 'URLRewrite' }>;
  readonly responseHeaders?: HeaderModifier;
  readonly mirrors: readonly { readonly backend: string; readonly percent: number }[];
}

/** Undefined when there is nothing to apply, so the hot path tests one field. */
export function compileFilters(specs: readonly RouteFilter[] | undefined): CompiledFilters | undefined {
  if (specs === undefined || specs.length === 0) return undefined;
  let out: { -readonly [K in keyof CompiledFilters]: CompiledFilters[K] } = { mirrors: [] };
  const mirrors: { backend: string; percent: number }[] = [];
  for (const f of specs) {
    switch (f.type) {
      case 'RequestRedirect':
        out = { ...out, redirect: f };
        break;
      case 'URLRewrite':
        out = { ...out, rewrite: f };
        break;
      case 'RequestHeaderModifier':
        out = { ...out, requestHeaders: compileHeaderModifier(f.edits) };
        break;
      case 'ResponseHeaderModifier':
        out = { ...out, responseHeaders: compileHeaderModifier(f.edits) };
        break;
      case 'RequestMirror':
        if (f.percent > 0) mirrors.push({ backend: f.backend, percent: f.percent });
        break;
    }
  }
  return { ...out, mirrors };
}
