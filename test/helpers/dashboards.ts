// The Grafana dashboards under deploy/grafana/dashboards, read as the tests check them:
// every panel query, and PromQL parsed with Prometheus's own grammar (lezer-promql,
// the parser of Prometheus's web UI).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { REPO } from './mesh-run.js';

export const DASHBOARDS = join(REPO, 'deploy', 'grafana', 'dashboards');

export interface Dashboard {
  readonly file: string;
  readonly uid: string;
  readonly title: string;
  readonly templating: { list: { name: string }[] };
  readonly panels: { id: number; title: string; datasource?: { uid?: string }; targets?: { refId: string; expr: string; datasource?: { uid?: string } }[] }[];
}

export interface PanelQuery {
  readonly dashboard: string;
  readonly panel: string;
  readonly expr: string;
}

export function dashboards(): Dashboard[] {
  return readdirSync(DASHBOARDS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: f, ...(JSON.parse(readFileSync(join(DASHBOARDS, f), 'utf8')) as Omit<Dashboard, 'file'>) }));
}

export function panelQueries(): PanelQuery[] {
  return dashboards().flatMap((d) => d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ dashboard: d.file, panel: p.title, expr: t.expr }))));
}

/** The expression as Grafana sends it: its variables replaced (`$__rate_interval`, and `values` by name). */
export function substitute(expr: string, values: Record<string, string>, rateInterval = '10s'): string {
  return expr.replaceAll('$__rate_interval', rateInterval).replace(/\$([a-z_]+)/g, (m, name: string) => values[name] ?? m);
}

/** The variables an expression uses (Grafana's own `$__…` left out). */
export function variablesOf(expr: string): string[] {
  return [...expr.matchAll(/\$([a-z_]+)/g)].map((m) => m[1]!).filter((n) => !n.startsWith('__'));
}

/** Where PromQL's grammar finds `expr` wrong (error nodes' offsets), empty when it parses. */
export function promqlErrors(expr: string): number[] {
  const errors: number[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
    },
  });
  return errors;
}
