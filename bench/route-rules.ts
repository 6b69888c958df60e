// The route-matching scenario: does a long route table slow the proxy? Two Trellis
// pairs, one whose service has 1 route rule and one with 50 (in 4 HTTPRoutes: the
// Gateway API allows 16 rules per route), each rule a PathPrefix /api
// plus an Exact header match (x-bench-rule: rNN), all of equal precedence so they stay
// in written order; the request (GET /api/items, x-bench-rule: r49) matches the last
// of the 50, so every other rule is tried and refused first. Both routes also have a
// catch-all rule (PathPrefix /, sorted after the /api rules) so the pair's GET / probe
// works. Max throughput (wrk) is measured alternately, single then fifty, `rounds`
// times; the best run of each counts, and the ratio fifty/single is the result.
import type { Processes, Target } from './targets.js';
import { startTrellisPair } from './targets.js';
import { runWrk, type WrkResult } from './wrk.js';

export const ROUTE_RULES = 50;
const HEADER = 'x-bench-rule';
const PATH = '/api/items';

export interface RouteRulesResult {
  readonly rules: number;
  readonly request: string;
  /** Best max-rate requests per second of each variant. */
  readonly singleRuleRps: number;
  readonly manyRulesRps: number;
  /** manyRulesRps / singleRuleRps; the goal is ≥ 0.9 (within 10%). */
  readonly ratio: number;
  readonly runs: readonly { readonly variant: 'single' | 'many'; readonly rps: number; readonly p99Us: number; readonly errors: number }[];
}

/** The Gateway API's limit of rules per HTTPRoute. */
const RULES_PER_ROUTE = 16;

/**
 * HTTPRoutes on `upstream` with `n` header rules (r{50-n}..r49) in all, at most 16 per
 * route as the Gateway API allows, plus a catch-all; routes without timestamps keep
 * file order, so the proxy's table lists the rules as written.
 */
export function routeRulesYaml(n: number): string {
  const rules: string[] = [];
  for (let i = ROUTE_RULES - n; i < ROUTE_RULES; i++) {
    const id = `r${String(i).padStart(2, '0')}`;
    rules.push(
      `    - matches: [{ path: { type: PathPrefix, value: /api }, headers: [{ name: ${HEADER}, value: ${id} }] }]\n      backendRefs: [{ name: upstream }]`,
    );
  }
  rules.push('    - matches: [{ path: { type: PathPrefix, value: / } }]\n      backendRefs: [{ name: upstream }]');
  const docs: string[] = [];
  for (let i = 0; i < rules.length; i += RULES_PER_ROUTE) {
    docs.push(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bench-rules-${docs.length}
spec:
  parentRefs: [{ name: upstream }]
  rules:
${rules.slice(i, i + RULES_PER_ROUTE).join('\n')}
`);
  }
  return docs.join('---\n');
}

export interface RouteRulesOptions {
  readonly procs: Processes;
  readonly repoRoot: string;
  readonly dir: string;
  readonly upstreamPort: number;
  readonly wrk: string;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly rounds: number;
  readonly log: (msg: string) => void;
}

export async function runRouteRules(o: RouteRulesOptions): Promise<RouteRulesResult> {
  const pairs: Record<'single' | 'many', Target | undefined> = { single: undefined, many: undefined };
  try {
    pairs.single = await startTrellisPair(o.procs, o.repoRoot, o.dir, o.upstreamPort, 'http', { name: 'rules-1', yaml: routeRulesYaml(1) });
    pairs.many = await startTrellisPair(o.procs, o.repoRoot, o.dir, o.upstreamPort, 'http', {
      name: `rules-${ROUTE_RULES}`,
      yaml: routeRulesYaml(ROUTE_RULES),
    });
    const headers = { [HEADER]: `r${ROUTE_RULES - 1}` };
    const run = (t: Target, durationS: number): Promise<WrkResult> =>
      runWrk({ wrk: o.wrk, url: new URL(PATH, t.url).href, threads: 1, connections: o.connections, durationS, timeoutS: 5, headers });
    const runs: { variant: 'single' | 'many'; rps: number; p99Us: number; errors: number }[] = [];
    for (let round = 0; round < o.rounds; round++) {
      for (const variant of ['single', 'many'] as const) {
        const t = pairs[variant]!;
        if (o.warmupS > 0) await run(t, o.warmupS);
        o.log(`route rules: ${variant === 'single' ? '1 rule' : `${ROUTE_RULES} rules`}, round ${round + 1}/${o.rounds}, ${o.durationS}s`);
        const r = await run(t, o.durationS);
        const errors = r.non2xx + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
        runs.push({ variant, rps: r.rps, p99Us: r.latencyUs.p99, errors });
      }
    }
    const best = (v: 'single' | 'many'): number => Math.max(...runs.filter((r) => r.variant === v && r.errors === 0).map((r) => r.rps), 0);
    const single = best('single');
    const many = best('many');
    return {
      rules: ROUTE_RULES,
      request: `GET ${PATH} with ${HEADER}: r${ROUTE_RULES - 1} (matches rule ${ROUTE_RULES} of ${ROUTE_RULES})`,
      singleRuleRps: single,
      manyRulesRps: many,
      ratio: single > 0 ? Math.round((many / single) * 1000) / 1000 : 0,
      runs,
    };
  } finally {
    await pairs.single?.stop();
    await pairs.many?.stop();
  }
}

/** The lines the bench prints for this scenario. */
export function formatRouteRules(r: RouteRulesResult): string {
  const lines = [
    `route matching: max throughput with ${r.rules} rules vs 1 (${r.request})`,
    `  1 rule ${Math.round(r.singleRuleRps)} rps, ${r.rules} rules ${Math.round(r.manyRulesRps)} rps: ratio ${r.ratio.toFixed(3)} (target ≥ 0.9)`,
    `  runs: ${r.runs.map((x) => `${x.variant === 'single' ? '1' : r.rules}:${Math.round(x.rps)}${x.errors ? ` (${x.errors} errors)` : ''}`).join(', ')}`,
  ];
  return `${lines.join('\n')}\n`;
}
