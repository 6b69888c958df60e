// Keeps the model's config in step with the files: loads them, watches every file read
// (and its folder, because editors save by writing a new file and renaming it over the
// old one), and reloads after a quiet moment. A reload with problems changes nothing but
// the reported problems: the last good config stays in force.
import fs from 'node:fs';
import path from 'node:path';
import type { ControlConfig } from './mesh-config.js';
import type { ConfigProblem, MeshModel } from './model.js';

/** What the config loader returns (src/config/load.ts `loadConfig`). */
export interface LoadOutcome {
  config?: ControlConfig;
  files: string[];
  problems: ConfigProblem[];
}

export type ConfigLoader = (paths: string[]) => Promise<LoadOutcome>;

export interface ConfigWatcherOptions {
  paths: string[];
  model: MeshModel;
  load: ConfigLoader;
  /** One line per problem, as `trellis validate` prints it. */
  formatProblem: (p: ConfigProblem) => string;
  log?: (line: string) => void;
  debounceMs?: number;
}

const CONFIG_FILE = /\.(ya?ml|json)$/i;

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export class ConfigWatcher {
  readonly #opts: ConfigWatcherOptions;
  readonly #log: (line: string) => void;
  readonly #debounceMs: number;
  readonly #watchers = new Map<string, fs.FSWatcher>();
  /** Per folder, the names in it that are config files we read. */
  #names = new Map<string, Set<string>>();
  #goodFiles: string[] = [];
  #timer?: NodeJS.Timeout;
  #loading?: Promise<void>;
  #again = false;
  #closed = false;

  constructor(opts: ConfigWatcherOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
    this.#debounceMs = opts.debounceMs ?? 100;
  }

  /**
   * The first load. On success the config goes into the model and `[]` is returned;
   * otherwise the problems are returned and the model is untouched.
   */
  async load(): Promise<ConfigProblem[]> {
    const result = await this.#opts.load(this.#opts.paths);
    if (!result.config || result.problems.length > 0) return result.problems;
    this.#accept(result.config, result.files);
    return [];
  }

  /** Starts watching the files of the last load (call after {@link load}). */
  watch(): void {
    this.#rewatch(this.#goodFiles);
  }

  /** Reloads now; resolves when this (and any reload queued behind it) is done. */
  reload(): Promise<void> {
    if (this.#loading) {
      this.#again = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      try {
        do {
          this.#again = false;
          await this.#reloadOnce();
        } while (this.#again && !this.#closed);
      } finally {
        this.#loading = undefined;
      }
    })();
    return this.#loading;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  async #reloadOnce(): Promise<void> {
    let result: LoadOutcome;
    try {
      result = await this.#opts.load(this.#opts.paths);
    } catch (err) {
      result = { files: [], problems: [{ file: this.#opts.paths[0] ?? '', path: '', message: err instanceof Error ? err.message : String(err) }] };
    }
    if (this.#closed) return;
    if (result.config && result.problems.length === 0) {
      this.#accept(result.config, result.files);
      const c = result.config;
      this.#log(`control: config reloaded (${result.files.length} files, ${c.services.length} services, ${c.routes.length} routes)`);
      this.#rewatch(result.files);
      return;
    }
    const since = this.#opts.model.configState.loadedAt;
    this.#log(`control: config reload failed with ${result.problems.length} problem(s); keeping the config loaded at ${since ? new Date(since).toISOString() : '?'}`);
    for (const p of result.problems) this.#log(`control: config: ${this.#opts.formatProblem(p)}`);
    this.#opts.model.setReloadProblems(result.problems);
    // Watch the broken load's files too, so that fixing an included file reloads.
    this.#rewatch([...this.#goodFiles, ...result.files]);
  }

  #accept(config: ControlConfig, files: string[]): void {
    this.#goodFiles = files;
    this.#opts.model.setConfig(config, files);
  }

  #onEvent(): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.reload();
    }, this.#debounceMs);
    this.#timer.unref();
  }

  /** Replaces the watchers: one per file (and per given path) and one per folder. */
  #rewatch(files: readonly string[]): void {
    if (this.#closed) return;
    const targets = [...new Set([...files, ...this.#opts.paths].map((f) => path.resolve(f)))];
    const names = new Map<string, Set<string>>();
    const plainFiles: string[] = [];
    for (const f of targets) {
      // A folder given as a config path is watched like the folder of a file.
      if (isDirectory(f)) {
        if (!names.has(f)) names.set(f, new Set());
        continue;
      }
      plainFiles.push(f);
      const dir = path.dirname(f);
      if (!names.has(dir)) names.set(dir, new Set());
      names.get(dir)!.add(path.basename(f));
    }
    this.#names = names;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    for (const f of plainFiles) this.#watchOne(f, () => this.#onEvent());
    for (const dir of names.keys()) {
      this.#watchOne(dir, (filename) => {
        // Editors write swap and backup files next to the config; only config files count.
        if (filename === null || this.#names.get(dir)?.has(filename) || CONFIG_FILE.test(filename)) this.#onEvent();
      });
    }
  }

  #watchOne(target: string, onChange: (filename: string | null) => void): void {
    if (this.#watchers.has(target)) return;
    try {
      const w = fs.watch(target, { persistent: false }, (_event, filename) => onChange(filename === null ? null : String(filename)));
      w.on('error', () => {
        w.close();
        this.#watchers.delete(target);
      });
      this.#watchers.set(target, w);
    } catch {
      // Gone (a file deleted, a folder removed): its folder's watcher still sees it return.
    }
  }
}
