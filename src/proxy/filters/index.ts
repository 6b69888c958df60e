// Gateway API filters in the outbound pipeline. A route's filters are compiled once
// per snapshot; `ruleFilters` applies the rule's after the route is matched, and
// `backendFilters` those of the backendRef that `split` picked. Each filter is its
// own module; this one only orders them: a redirect answers at once; header edits,
// then the URL rewrite, change the head the forwarder sends; response header edits
// are kept for when the response head comes back; mirrors copy the edited request.
import type { RouteFilter } from '../../api/protocol.js';
import type { Exchange, Layer } from '../exchange.js';
import { HeadEdits } from './head-edits.js';
import { compileHeaderModifier, type HeaderModifier } from './header-modifier.js';
import { mirror } from './request-mirror.js';
import { redirect } from './request-redirect.js';
import { rewrite } from './url-rewrite.js';

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
      case 'RequestRedirect': out = { ...out, redirect: f }; break;
      case 'URLRewrite': out = { ...out, rewrite: f }; break;
      case 'RequestHeaderModifier': out = { ...out, requestHeaders: compileHeaderModifier(f.edits) }; break;
      case 'ResponseHeaderModifier': out = { ...out, responseHeaders: compileHeaderModifier(f.edits) }; break;
      case 'RequestMirror': if (f.percent > 0) mirrors.push({ backend: f.backend, percent: f.percent }); break;
    }
  }
  return { ...out, mirrors };
}

/** Applies `f` to the exchange; false when a filter answered it (a redirect). `mirrors` false skips the copies. */
export function applyFilters(ex: Exchange, f: CompiledFilters, matchedPrefix: string, mirrors = true): boolean {
  if (f.redirect !== undefined) {
    redirect(ex, f.redirect, matchedPrefix);
    return false;
  }
  if (f.requestHeaders !== undefined) (ex.headEdits ??= new HeadEdits(ex.req)).headers(f.requestHeaders);
  if (f.rewrite !== undefined) rewrite((ex.headEdits ??= new HeadEdits(ex.req)), f.rewrite, matchedPrefix);
  if (f.responseHeaders !== undefined) (ex.responseEdits ??= []).push(f.responseHeaders);
  if (mirrors) for (const m of f.mirrors) mirror(ex, ex.upstream!.backends.get(m.backend), m.percent, ex.headEdits);
  return true;
}

/** The matched rule's filters; sits between route and split. */
export const ruleFilters: Layer = (next) => (ex) => {
  const r = ex.route!;
  if (r.filters === undefined || applyFilters(ex, r.filters, r.matchedPrefix)) next(ex);
};

/** The filters of the backendRef split picked; sits between split and balance. */
export const backendFilters: Layer = (next) => (ex) => {
  const r = ex.route!;
  if (r.backendFilters === undefined) return next(ex);
  // A retry runs this layer again: start from the rule's edits each time, and mirror once.
  const again = ex.ruleEdits !== undefined;
  if (again) restoreRuleEdits(ex);
  else ex.ruleEdits = { lines: ex.headEdits?.lines, path: ex.headEdits?.path, responses: ex.responseEdits?.length ?? 0 };
  const f = r.backendFilters[ex.backendIndex];
  if (f === undefined || applyFilters(ex, f, r.matchedPrefix, !again)) next(ex);
};

function restoreRuleEdits(ex: Exchange): void {
  const saved = ex.ruleEdits!;
  if (saved.lines === undefined || saved.path === undefined) ex.headEdits = undefined;
  else if (ex.headEdits !== undefined) {
    ex.headEdits.lines = saved.lines;
    ex.headEdits.path = saved.path;
  }
  if (ex.responseEdits !== undefined) ex.responseEdits.length = saved.responses;
}
