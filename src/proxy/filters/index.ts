// Gateway API filters in the outbound pipeline. A route's filters are compiled once
// per snapshot; `ruleFilters` applies the rule's after the route is matched, and
// `backendFilters` those of the backendRef that `split` picked. Each filter is its
// own module; this one only orders them: a redirect answers at once; header edits,
// then the URL rewrite, change the head the codec sends; response header edits are
// kept for when the response head comes back up the stack; mirrors copy the edited request.
import type { Exchange } from '../stack/exchange.js';
import type { Layer } from '../stack/layer.js';
import type { Routed, Split } from '../stack/decisions.js';
import type { CompiledFilters } from './compile.js';
import { HeadEdits } from './head-edits.js';
import { mirror } from './request-mirror.js';
import { redirect } from './request-redirect.js';
import { rewrite } from './url-rewrite.js';

/** Applies `f` to the exchange; false when a filter answered it (a redirect). `mirrors` false skips the copies. */
export function applyFilters(ex: Routed, f: CompiledFilters, matchedPrefix: string, mirrors = true): boolean {
  if (f.redirect !== undefined) {
    redirect(ex, f.redirect, matchedPrefix);
    return false;
  }
  if (f.requestHeaders !== undefined) (ex.headEdits ??= new HeadEdits(ex.req)).headers(f.requestHeaders);
  if (f.rewrite !== undefined) rewrite((ex.headEdits ??= new HeadEdits(ex.req)), f.rewrite, matchedPrefix);
  if (f.responseHeaders !== undefined) (ex.responseEdits ??= []).push(f.responseHeaders);
  if (mirrors) for (const m of f.mirrors) mirror(ex, ex.upstream.backends.get(m.backend), m.percent, ex.headEdits);
  return true;
}

/**
 * The matched rule's filters; sits between route and split. On the way back it hands
 * the response header edits (the rule's, and the picked backendRef's) to the response
 * head the codec is about to write.
 */
export const ruleFilters: Layer<Routed> = (next) => ({
  request(ex) {
    const r = ex.route;
    if (r.filters === undefined || applyFilters(ex, r.filters, r.matchedPrefix)) next(ex);
  },
  back(ex, o, outer) {
    if (o.kind === 'head' && ex.responseEdits !== undefined) o.edits = ex.responseEdits;
    return outer(ex, o);
  },
});

/** The filters of the backendRef split picked; sits between split and balance. */
export const backendFilters: Layer<Split> = (next) => ({
  request(ex) {
    const r = ex.route;
    if (r.backendFilters === undefined) return next(ex);
    // A retry runs this layer again: start from the rule's edits each time, and mirror once.
    const again = ex.ruleEdits !== undefined;
    if (again) restoreRuleEdits(ex);
    else ex.ruleEdits = { lines: ex.headEdits?.lines, path: ex.headEdits?.path, responses: ex.responseEdits?.length ?? 0 };
    const f = r.backendFilters[ex.backendIndex];
    if (f === undefined || applyFilters(ex, f, r.matchedPrefix, !again)) next(ex);
  },
});

function restoreRuleEdits(ex: Exchange): void {
  const saved = ex.ruleEdits;
  if (saved === undefined) return;
  if (saved.lines === undefined || saved.path === undefined) ex.headEdits = undefined;
  else if (ex.headEdits !== undefined) {
    ex.headEdits.lines = saved.lines;
    ex.headEdits.path = saved.path;
  }
  if (ex.responseEdits !== undefined) ex.responseEdits.length = saved.responses;
}
