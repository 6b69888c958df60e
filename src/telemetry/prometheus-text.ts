// Reads Prometheus text exposition (version 0.0.4), the format every sidecar's
// /metrics prints: the one parser for whatever reads the proxies' metrics back (the
// load generator's per-hop account, the canary's judgement).
//
// Ours, not a package: the npm parser there is (parse-prometheus-text-format, with a
// dependency of its own) folds samples into prom2json-style families with string values
// and cannot skip a metric before parsing its labels, which the readers here need (a
// sidecar's histogram buckets are most of its text, and they want flat samples).

/** One sample of the exposition: `name{labels} value`. */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/gy;

function unescapeLabel(v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

/**
 * Parses Prometheus text exposition. Comments and blank lines are skipped, so are lines
 * that do not parse and samples whose value is not a number (NaN). A timestamp after
 * the value is ignored. `keep` filters by metric name before the labels are parsed.
 */
export function parsePrometheus(text: string, keep?: (name: string) => boolean): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const name = m[1]!;
    if (keep && !keep(name)) continue;
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    LABEL.lastIndex = 0;
    let ok = true;
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body);
      if (!l) {
        ok = false;
        break;
      }
      labels[l[1]!] = unescapeLabel(l[2]!);
    }
    const value = parseValue(m[3]!);
    if (ok && !Number.isNaN(value)) out.push({ name, labels, value });
  }
  return out;
}
