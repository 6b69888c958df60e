// The bench's last report for the dashboard: the newest bench/results/*.json (names are
// UTC timestamps, so the greatest name is the newest), cut to what the page shows: when,
// where, the goals and whether each was met, and each scenario's max rate and p99. The
// file is read again only when a newer one appears or it changed.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

export interface BenchSummary {
  readonly file: string;
  readonly time: string | null;
  readonly environment: Readonly<Record<string, string | number>>;
  readonly goals: readonly { readonly name: string; readonly limit: string; readonly measured: string; readonly met: boolean }[];
  readonly scenarios: readonly {
    readonly name: string;
    readonly path: string;
    readonly maxRps: number | null;
    readonly p99Us: number | null;
    readonly fixedRateP99Us: number | null;
  }[];
  readonly warnings: readonly string[];
}

const MAX_FILE = 8 * 1024 * 1024;
const MAX_ROWS = 200;

const text = (v: unknown): string => (typeof v === 'string' ? v.slice(0, 500) : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '');
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** The summary of one report's JSON. */
export function summarizeBench(file: string, body: unknown): BenchSummary {
  const r = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const environment: Record<string, string | number> = {};
  if (typeof r.environment === 'object' && r.environment !== null) {
    for (const [k, v] of Object.entries(r.environment).slice(0, 30))
      if (typeof v === 'string' || typeof v === 'number') environment[k] = typeof v === 'string' ? v.slice(0, 200) : v;
  }
  const list = (v: unknown): Record<string, unknown>[] =>
    Array.isArray(v) ? v.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null).slice(0, MAX_ROWS) : [];
  const p99 = (v: unknown): number | null => num((v as { latencyUs?: { p99?: unknown } } | undefined)?.latencyUs?.p99);
  return {
    file,
    time: typeof r.time === 'string' ? r.time : null,
    environment,
    goals: list(r.goals).map((g) => ({ name: text(g.name), limit: text(g.limit), measured: text(g.measured), met: g.met === true })),
    scenarios: list(r.results).map((s) => ({
      name: text(s.name),
      path: text(s.path),
      maxRps: num((s.maxRate as { rps?: unknown } | undefined)?.rps),
      p99Us: p99(s.maxRate),
      fixedRateP99Us: p99(s.fixedRate),
    })),
    warnings: Array.isArray(r.warnings) ? r.warnings.slice(0, 50).map(text) : [],
  };
}

export class BenchReports {
  readonly #dir: string;
  #cached: { file: string; mtimeMs: number; summary: BenchSummary } | undefined;

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** The newest report's summary; null when there is none (or it does not read). */
  async latest(): Promise<BenchSummary | null> {
    let names: string[];
    try {
      names = (await readdir(this.#dir)).filter((n) => n.endsWith('.json')).sort();
    } catch {
      return null;
    }
    const name = names[names.length - 1];
    if (name === undefined) return null;
    const file = path.join(this.#dir, name);
    try {
      const s = await stat(file);
      if (this.#cached?.file === file && this.#cached.mtimeMs === s.mtimeMs) return this.#cached.summary;
      if (s.size > MAX_FILE) return null;
      const summary = summarizeBench(name, JSON.parse(await readFile(file, 'utf8')) as unknown);
      this.#cached = { file, mtimeMs: s.mtimeMs, summary };
      return summary;
    } catch {
      return null;
    }
  }
}
