// The last good config, kept in the control plane's state folder, so a control plane
// that (re)starts while the files on disk do not load serves what it served before,
// reports the files' problems as a live edit does, and applies the files once they are
// fixed, instead of exiting and being restarted with a growing backoff while the
// admin API is down.
//
// What is kept is the config as loaded (plain JSON data), not the file texts: the
// loader reads includes and folders from disk, and replaying them from copies would
// need a second file system. The record names its format; a record from another
// format (an older or newer Trellis) is ignored, as is one that does not parse.
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ControlConfig } from './mesh-config.js';
import { stableStringify } from '../stable-json.js';
import type { RestoredConfig } from './config-watcher.js';

/** Bump when `ControlConfig`'s shape changes in a way an older record would not fit. */
const FORMAT = 1;
const FILE_NAME = 'last-good-config.json';

interface Record1 {
  format: typeof FORMAT;
  savedAt: number;
  files: string[];
  config: ControlConfig;
}

function isRecord(v: unknown): v is Record1 {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<Record1>;
  const c = r.config as Partial<ControlConfig> | undefined;
  return (
    r.format === FORMAT &&
    typeof r.savedAt === 'number' &&
    Array.isArray(r.files) &&
    r.files.every((f) => typeof f === 'string') &&
    typeof c === 'object' &&
    c !== null &&
    Array.isArray(c.services) &&
    Array.isArray(c.routes) &&
    c.services.every((s) => typeof s === 'object' && s !== null && typeof s.name === 'string' && Array.isArray(s.versions)) &&
    (c.policies === undefined || Array.isArray(c.policies)) &&
    (c.authorizationPolicies === undefined || Array.isArray(c.authorizationPolicies))
  );
}

export class LastGoodConfig {
  /** The record's path. */
  readonly file: string;
  readonly #log: (line: string) => void;
  #writing: Promise<void> = Promise.resolve();
  #lastSaved?: string;

  /** `dir`: the control plane's folder in the state folder (created on the first save). */
  constructor(dir: string, log: (line: string) => void) {
    this.file = path.join(dir, FILE_NAME);
    this.#log = log;
  }

  /**
   * Keeps `config` as the last good one. Writes are queued (the last one wins) and
   * atomic (a temp file renamed over the record), so a crash mid-write leaves the
   * previous record whole. The config holds services' environment, which may hold
   * secrets: the record is 0600 in a 0700 folder. A failed write is logged, never thrown.
   */
  save(config: ControlConfig, files: readonly string[]): Promise<void> {
    const text = `${JSON.stringify({ format: FORMAT, savedAt: Date.now(), files: files.map((f) => path.resolve(f)), config } satisfies Record1)}\n`;
    // Unchanged config (a reload of the same files): nothing to write.
    const key = stableStringify([files, config]);
    if (key === this.#lastSaved) return this.#writing;
    this.#lastSaved = key;
    this.#writing = this.#writing.then(async () => {
      const tmp = `${this.file}.${process.pid}.tmp`;
      try {
        await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
        await writeFile(tmp, text, { mode: 0o600 });
        await chmod(tmp, 0o600);
        await rename(tmp, this.file);
      } catch (err) {
        this.#lastSaved = undefined;
        this.#log(
          `control: could not keep the last good config in ${this.file}: ${err instanceof Error ? err.message : String(err)}; a restart with broken files will not be able to fall back to it`,
        );
      }
    });
    return this.#writing;
  }

  /** The saved record, or undefined (none yet, unreadable, or of another format; the reason is logged). */
  async read(): Promise<RestoredConfig | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log(`control: cannot read the last good config ${this.file}: ${(err as Error).message}`);
      return undefined;
    }
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch {
      record = undefined;
    }
    if (!isRecord(record)) {
      this.#log(`control: ignoring ${this.file}: not a last good config this version of Trellis can read`);
      return undefined;
    }
    return { config: record.config, files: record.files, from: this.file, savedAt: record.savedAt };
  }

  /** Resolves once every queued write is done. */
  flush(): Promise<void> {
    return this.#writing;
  }
}
