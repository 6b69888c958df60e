// Keeps the model's config in step with the files: loads them, watches every file read
// (and its folder, because editors save by writing a new file and renaming it over the
// old one), and reloads after a quiet moment. A reload with problems changes nothing but
// the reported problems: the last good config stays in force.
//
// fs.watch is lossy by design (events coalesce, a closed watcher drops what was queued
// for it, a swapped symlink fires nothing), so events only say "look soon". What makes
// every write end up applied is the fingerprint check: the files are fingerprinted
// before each load, and again once the load is in force and the watchers are armed (and
// on a slow poll); any difference means something was written that the load may not
// have seen, and the files are loaded again.
import fs from 'node:fs';
import path from 'node:path';
import type { ControlConfig } from './mesh-config.js';
import type { ConfigProblem, MeshModel } from '../model.js';
import { changedSince, fingerprint, type Fingerprints } from './file-fingerprint.js';

/** What the config loader returns (src/config/load.ts `loadConfig`). */
export interface LoadOutcome {
  config?: ControlConfig;
  files: string[];
  /** Folders the loader read (an include folder, even an empty one): watched for files added to them. */
  folders?: string[];
  problems: ConfigProblem[];
  /** Valid but likely mistakes (a backendRef to a missing service): logged, and the config is applied. */
  warnings?: ConfigProblem[];
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
  /**
   * How often the files are fingerprinted for changes no event reported (default 1000
   * ms; 0: never). A few small files stat'ed and hashed once a second cost nothing,
   * and it is what catches a ConfigMap's `..data` symlink swap.
   */
  pollMs?: number;
  /** Called with every config put in force from the files (the control plane saves it as the last good one). */
  onAccept?: (config: ControlConfig, files: readonly string[]) => void;
}

/** A config restored from somewhere other than the files (the last good config saved in the state folder). */
export interface RestoredConfig {
  config: ControlConfig;
  files: readonly string[];
  /** Where it was kept, for the log and the admin API. */
  from: string;
  /** Epoch ms it was saved (when it was last loaded from the files). */
  savedAt: number;
}

const CONFIG_FILE = /\.(ya?ml|json)$/i;
const isConfigFile = (name: string): boolean => CONFIG_FILE.test(name);
/**
 * How many loads in a row one reload may make while the files change under it (or
 * while it finds included files it had not fingerprinted) before it waits for a quiet
 * moment instead.
 */
const MAX_PASSES = 4;

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function inode(p: string): number | undefined {
  try {
    return fs.statSync(p).ino;
  } catch {
    return undefined;
  }
}

export class ConfigWatcher {
  readonly #opts: ConfigWatcherOptions;
  readonly #log: (line: string) => void;
  readonly #debounceMs: number;
  readonly #pollMs: number;
  /** Per watched path: its watcher, and for a file the inode it watches (a rename-replace needs a new one). */
  readonly #watchers = new Map<string, { watcher: fs.FSWatcher; ino?: number }>();
  /** Per folder, the names in it that are config files we read. */
  #names = new Map<string, Set<string>>();
  #goodFiles: string[] = [];
  /** The files of the latest load, good or broken, and the folders it read (watched, never read as files). */
  #lastFiles: string[] = [];
  /** Fingerprints taken just before the latest load: what it read is no older than these. */
  #baseline: Fingerprints = new Map();
  /** Counts loads, so a fingerprint check that raced a load drops its answer. */
  #generation = 0;
  #timer?: NodeJS.Timeout;
  #poll?: NodeJS.Timeout;
  #checking = false;
  #checkAgain = false;
  #loading?: Promise<void>;
  #again = false;
  #closed = false;

  constructor(opts: ConfigWatcherOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
    this.#debounceMs = opts.debounceMs ?? 100;
    this.#pollMs = opts.pollMs ?? 1000;
  }

  /**
   * The first load. On success the config goes into the model and `[]` is returned;
   * otherwise the problems are returned and the model is untouched.
   */
  async load(): Promise<ConfigProblem[]> {
    const { result } = await this.#loadSettled([]);
    if (!result.config || result.problems.length > 0) return result.problems;
    this.#accept(result.config, result.files);
    this.#logWarnings(result);
    return [];
  }

  /**
   * Puts a config that did not come from the files in force (after {@link load} failed)
   * and reports the files' problems exactly as a failed reload does.
   */
  restore(restored: RestoredConfig, problems: readonly ConfigProblem[]): void {
    this.#goodFiles = [...restored.files];
    this.#opts.model.setConfig(restored.config, restored.files, { from: restored.from, savedAt: restored.savedAt });
    this.#reportProblems(
      problems,
      `control: the config files have ${problems.length} problem(s); serving the last good config, saved at ${new Date(restored.savedAt).toISOString()} in ${restored.from}, until they are fixed`,
    );
  }

  /** Starts watching the files of the last load (call after {@link load}). */
  watch(): void {
    this.#rewatch([...this.#goodFiles, ...this.#lastFiles]);
    if (this.#pollMs > 0) {
      this.#poll = setInterval(() => void this.#recheck(), this.#pollMs);
      this.#poll.unref();
    }
    // A write between the first load and now had no watcher to see it.
    void this.#recheck();
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
      await this.#recheck();
    })();
    return this.#loading;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#poll) clearInterval(this.#poll);
    for (const { watcher } of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
  }

  async #loadFiles(): Promise<LoadOutcome> {
    this.#generation++;
    try {
      return await this.#opts.load(this.#opts.paths);
    } catch (err) {
      return { files: [], problems: [{ file: this.#opts.paths[0] ?? '', path: '', message: err instanceof Error ? err.message : String(err) }] };
    }
  }

  async #reloadOnce(): Promise<void> {
    const { result, settled } = await this.#loadSettled([...this.#goodFiles, ...this.#lastFiles]);
    if (this.#closed) return;
    if (!settled) {
      // Still being written: what was read may be half a file (an in-place write truncates first, and an empty
      // route file is valid, with no routes). Nothing is applied; the files are read again once quiet.
      this.#log('control: the config files changed while being read; reading them again once they are quiet');
      this.#schedule();
      return;
    }
    if (result.config && result.problems.length === 0) {
      this.#accept(result.config, result.files);
      const c = result.config;
      this.#log(`control: config reloaded (${result.files.length} files, ${c.services.length} services, ${c.routes.length} routes)`);
      this.#logWarnings(result);
      this.#rewatch(this.#lastFiles);
      return;
    }
    const since = this.#opts.model.configState.loadedAt;
    this.#reportProblems(
      result.problems,
      `control: config reload failed with ${result.problems.length} problem(s); keeping the config loaded at ${since ? new Date(since).toISOString() : '?'}`,
    );
    // Watch the broken load's files too, so that fixing an included file reloads.
    this.#rewatch([...this.#goodFiles, ...this.#lastFiles]);
  }

  /**
   * Loads the files between two fingerprints of them, until both agree: then nothing
   * was written while the loader read, and no file it read (an include found on the
   * way) went unfingerprinted. `settled` is false when the files kept changing.
   */
  async #loadSettled(known: readonly string[]): Promise<{ result: LoadOutcome; settled: boolean }> {
    let files = known;
    let result: LoadOutcome | undefined;
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      const before = await this.#fingerprintNow(files);
      result = await this.#loadFiles();
      const read = [...result.files, ...(result.folders ?? [])];
      this.#lastFiles = read;
      this.#baseline = before;
      if (this.#closed) break;
      const after = await this.#fingerprintNow([...files, ...read]);
      if (changedSince(before, after).length === 0) return { result, settled: true };
      files = [...files, ...read];
    }
    return { result: result!, settled: false };
  }

  #logWarnings(result: LoadOutcome): void {
    for (const w of result.warnings ?? []) this.#log(`control: config: warning: ${this.#opts.formatProblem(w)}`);
  }

  #reportProblems(problems: readonly ConfigProblem[], headline: string): void {
    this.#log(headline);
    for (const p of problems) this.#log(`control: config: ${this.#opts.formatProblem(p)}`);
    this.#opts.model.setReloadProblems(problems);
  }

  #accept(config: ControlConfig, files: string[]): void {
    this.#goodFiles = files;
    this.#opts.model.setConfig(config, files);
    this.#opts.onAccept?.(config, files);
  }

  /** Fingerprints of the config paths, `files` and their folders, keyed by absolute path. */
  #fingerprintNow(files: readonly string[]): Promise<Map<string, string>> {
    const all = [...new Set([...this.#opts.paths, ...files].map((f) => path.resolve(f)))];
    const folders: string[] = [];
    const plain: string[] = [];
    for (const f of all) {
      if (isDirectory(f)) folders.push(f);
      else {
        plain.push(f);
        folders.push(path.dirname(f));
      }
    }
    return fingerprint(plain, folders, isConfigFile);
  }

  /**
   * Loads again (after the usual quiet moment) when the files differ from what the
   * latest load started from. Runs after each reload, once the watchers are armed, so a
   * write that landed while loading is never left waiting for the next edit.
   */
  async #recheck(): Promise<void> {
    if (this.#checking) {
      // The check under way may have started before the latest load; it runs once more.
      this.#checkAgain = true;
      return;
    }
    this.#checking = true;
    try {
      do {
        this.#checkAgain = false;
        if (this.#closed || this.#timer) return;
        const generation = this.#generation;
        const now = await this.#fingerprintNow([...this.#goodFiles, ...this.#lastFiles]);
        // A load that started meanwhile has a newer baseline and does its own check when done.
        if (this.#closed || generation !== this.#generation || this.#loading) continue;
        const changed = changedSince(this.#baseline, now);
        if (changed.length === 0) continue;
        this.#log(`control: ${changed.map((p) => path.relative(process.cwd(), p) || p).join(', ')} changed since the config was loaded; loading again`);
        this.#schedule();
      } while (this.#checkAgain);
    } finally {
      this.#checking = false;
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.reload();
    }, this.#debounceMs);
    this.#timer.unref();
  }

  /**
   * Watches one watcher per file (and per given path) and one per folder. Watchers that
   * are still wanted are kept: closing one drops the events queued for it, and a write
   * landing just then would go unseen until the fingerprint check.
   */
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
    const wanted = new Set([...plainFiles, ...names.keys()]);
    for (const [target, { watcher, ino }] of this.#watchers) {
      // A file replaced by rename is a new inode; its old watcher sees nothing of it.
      const stale = !names.has(target) && ino !== inode(target);
      if (wanted.has(target) && !stale) continue;
      watcher.close();
      this.#watchers.delete(target);
    }
    for (const f of plainFiles) this.#watchOne(f, false, () => this.#schedule());
    for (const dir of names.keys()) {
      this.#watchOne(dir, true, (filename) => {
        // Editors write swap and backup files next to the config; only config files count.
        if (filename === null || this.#names.get(dir)?.has(filename) || isConfigFile(filename)) this.#schedule();
      });
    }
  }

  #watchOne(target: string, folder: boolean, onChange: (filename: string | null) => void): void {
    if (this.#watchers.has(target)) return;
    try {
      const ino = folder ? undefined : inode(target);
      const watcher = fs.watch(target, { persistent: false }, (_event, filename) => onChange(filename === null ? null : String(filename)));
      watcher.on('error', () => {
        watcher.close();
        if (this.#watchers.get(target)?.watcher === watcher) this.#watchers.delete(target);
      });
      this.#watchers.set(target, { watcher, ...(ino !== undefined ? { ino } : {}) });
    } catch {
      // Gone (a file deleted, a folder removed): its folder's watcher still sees it return.
    }
  }
}
