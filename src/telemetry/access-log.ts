// JSON access log, one line per request or TCP connection. Lines are batched and
// written once per event-loop turn, so logging costs a string per request rather than
// a write system call.
//
// A log file holds what clients sent, so it is kept as a secret would be: created (and
// on open tightened to) mode 0600, query values redacted unless kept on purpose, and
// rotated by size so it can't fill a disk. Nothing here blocks the event loop after the
// log is opened: rotation renames files with fs/promises while new lines wait in memory,
// and a file is only rotated between two batches, so no line is split or lost.
import { chmodSync, createWriteStream, statSync, type WriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';

export interface AccessLog {
  /** False when logging is off: callers skip building entries. */
  readonly enabled: boolean;
  /**
   * A request target as this log records it: query values redacted (unless the log
   * keeps them) and at most {@link MAX_LOGGED_TARGET} characters.
   */
  target(raw: string): string;
  write(entry: Record<string, unknown>): void;
  /** Lines dropped because the file could not take them (a write error, or far behind). */
  readonly dropped: number;
  close(): Promise<void>;
}

export interface AccessLogOptions {
  /**
   * Log query strings as sent. Default false: values are replaced by `REDACTED` and the
   * parameter names kept. Envoy and nginx log full paths; cloud meshes (Google Cloud
   * Service Mesh, AWS App Mesh's Envoy defaults as configured by most) keep them out,
   * since tokens, passwords and e-mail addresses travel in query strings.
   */
  keepQuery?: boolean;
  /** Rotate the file once it holds this many bytes. Default {@link DEFAULT_MAX_FILE_BYTES}. */
  maxFileBytes?: number;
  /** Rotated files kept beside the current one (`<file>.1` newest … `<file>.<n>`). Default {@link DEFAULT_MAX_FILES}. */
  maxFiles?: number;
  /**
   * The fields each line carries (src/api/views.ts ACCESS_LOG_FIELDS); `ts` is always
   * written, so lines can be ordered (`trellis logs`). Absent: every field.
   */
  fields?: readonly string[];
  /** Told once when the file cannot be written (the lines are dropped and counted meanwhile). */
  onError?: (reason: string) => void;
}

/** The kubelet's container log defaults (containerLogMaxSize 10Mi, containerLogMaxFiles 5): at most 60 MiB per proxy. */
export const DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024;
export const DEFAULT_MAX_FILES = 5;

/** Longest request target logged: 1 KiB keeps every real path and stops a 16 KiB one from making each line 16 KiB. */
export const MAX_LOGGED_TARGET = 1024;

/**
 * Lines held in memory when the file is behind (a slow disk, a rotation): beyond this
 * many bytes they are dropped and counted, so a flood of requests can't grow the heap.
 */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/** How long a log that failed to open or write waits before trying its file again. */
const REOPEN_AFTER_MS = 5000;

const REDACTED = 'REDACTED';

/**
 * `/login?password=hunter2&page=2` → `/login?password=REDACTED&page=REDACTED`: the names
 * say what a client sent, the values (where secrets travel) are gone.
 */
export function redactQuery(target: string): string {
  const q = target.indexOf('?');
  if (q === -1) return target;
  let out = target.slice(0, q + 1);
  let first = true;
  for (const part of target.slice(q + 1).split('&')) {
    if (!first) out += '&';
    first = false;
    const eq = part.indexOf('=');
    out += eq === -1 ? part : `${part.slice(0, eq)}=${REDACTED}`;
  }
  return out;
}

function bounded(s: string): string {
  return s.length <= MAX_LOGGED_TARGET ? s : `${s.slice(0, MAX_LOGGED_TARGET)}…(${s.length} characters)`;
}

/** `-` writes to stdout, `off` disables logging, anything else is a file path (appended). */
export function openAccessLog(target: string, options: AccessLogOptions = {}): AccessLog {
  const keepQuery = options.keepQuery === true;
  const loggedTarget = keepQuery ? bounded : (raw: string): string => bounded(redactQuery(raw));
  if (target === 'off') return { enabled: false, target: loggedTarget, write() {}, dropped: 0, close: async () => {} };
  const sink: Sink = target === '-' ? new StdoutSink() : new RotatingFile(target, options);
  let pending: string[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    sink.write(text);
  };
  let closing: Promise<void> | undefined;
  // A field set: the kept names, `ts` first; the entry is cut down as it is written.
  const fields = options.fields === undefined ? undefined : ['ts', ...options.fields.filter((f) => f !== 'ts')];
  const pick = (entry: Record<string, unknown>): Record<string, unknown> => {
    if (fields === undefined) return entry;
    const out: Record<string, unknown> = {};
    for (const f of fields) if (entry[f] !== undefined) out[f] = entry[f];
    return out;
  };
  return {
    enabled: true,
    target: loggedTarget,
    write(entry) {
      pending.push(`${JSON.stringify(pick(entry))}\n`);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    get dropped() {
      return sink.dropped;
    },
    close() {
      flush();
      return (closing ??= sink.close());
    },
  };
}

interface Sink {
  write(text: string): void;
  readonly dropped: number;
  close(): Promise<void>;
}

class StdoutSink implements Sink {
  dropped = 0;
  #broken = false;

  constructor() {
    // A closed stdout (the runner that read it is gone: EPIPE) must not end the proxy.
    process.stdout.on('error', () => {
      this.#broken = true;
    });
  }

  write(text: string): void {
    if (this.#broken || process.stdout.writableLength > MAX_BUFFERED_BYTES) {
      this.dropped += countLines(text);
      return;
    }
    process.stdout.write(text);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * An append-only file rotated by size: when a batch takes it to `maxFileBytes`, the
 * stream is ended (its lines are all in the file), `<file>.<n-1>` … `<file>` are
 * renamed one up (the oldest beyond `maxFiles` is replaced), and a fresh file opened.
 * Batches that arrive meanwhile wait, in order, and go to the new file.
 */
class RotatingFile implements Sink {
  readonly #path: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  readonly #onError: ((reason: string) => void) | undefined;
  #out: WriteStream | undefined;
  #size = 0;
  /** Set while rotating (or waiting to reopen after an error): batches queue in #waiting. */
  #busy: Promise<void> | undefined;
  #waiting: string[] = [];
  #waitingBytes = 0;
  #failedAt = 0;
  #reported = false;
  #closed = false;
  dropped = 0;

  constructor(path: string, o: AccessLogOptions) {
    this.#path = path;
    this.#maxBytes = positive(o.maxFileBytes, DEFAULT_MAX_FILE_BYTES);
    this.#maxFiles = Math.max(1, Math.floor(positive(o.maxFiles, DEFAULT_MAX_FILES)));
    this.#onError = o.onError;
    // Once, at start: a file left by an earlier run keeps counting towards its rotation,
    // and one created readable by all (before logs were private) is tightened.
    try {
      this.#size = statSync(path).size;
      chmodSync(path, 0o600);
    } catch {
      // not there yet: created 0600 below
    }
    this.#out = this.#open();
  }

  #open(): WriteStream {
    const out = createWriteStream(this.#path, { flags: 'a', mode: 0o600 });
    out.on('error', (err) => this.#failed(out, err));
    return out;
  }

  /** The file could not be opened or written: drop lines (counted) and try again later, telling once. */
  #failed(out: WriteStream, err: Error): void {
    if (this.#out !== out) return;
    this.#out = undefined;
    this.#failedAt = performance.now();
    out.destroy();
    if (!this.#reported) {
      this.#reported = true;
      this.#onError?.(`${err.message}; lines are dropped (counted) until it can be written again`);
    }
  }

  write(text: string): void {
    if (this.#busy !== undefined) {
      this.#hold(text);
      return;
    }
    let out = this.#out;
    if (out === undefined) {
      if (this.#closed || performance.now() - this.#failedAt < REOPEN_AFTER_MS) {
        this.dropped += countLines(text);
        return;
      }
      out = this.#out = this.#open();
    }
    if (out.writableLength > MAX_BUFFERED_BYTES) {
      this.dropped += countLines(text);
      return;
    }
    out.write(text);
    this.#size += Buffer.byteLength(text);
    if (this.#size >= this.#maxBytes) this.#rotate(out);
  }

  #hold(text: string): void {
    if (this.#waitingBytes > MAX_BUFFERED_BYTES) {
      this.dropped += countLines(text);
      return;
    }
    this.#waiting.push(text);
    this.#waitingBytes += text.length;
  }

  #rotate(out: WriteStream): void {
    const busy = (async () => {
      await new Promise<void>((resolve) => {
        out.once('close', resolve);
        out.end();
      });
      const p = this.#path;
      try {
        for (let i = this.#maxFiles - 1; i >= 1; i--) await rename(`${p}.${i}`, `${p}.${i + 1}`).catch(ignoreMissing);
        await rename(p, `${p}.1`);
      } catch (err) {
        // Renaming failed (the folder went away?): the next open reports it if it matters.
        this.#onError?.(`could not rotate: ${(err as Error).message}`);
      }
      this.#size = 0;
      this.#out = this.#closed ? undefined : this.#open();
    })();
    this.#busy = busy;
    void busy.finally(() => {
      this.#busy = undefined;
      const waiting = this.#waiting;
      this.#waiting = [];
      this.#waitingBytes = 0;
      if (waiting.length > 0) this.write(waiting.join(''));
    });
  }

  async close(): Promise<void> {
    while (this.#busy !== undefined) await this.#busy.then(() => new Promise((r) => setImmediate(r)));
    this.#closed = true;
    const out = this.#out;
    this.#out = undefined;
    if (out === undefined || out.destroyed) return;
    await new Promise<void>((resolve) => {
      out.once('close', resolve);
      out.end();
    });
  }
}

function positive(v: number | undefined, fallback: number): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : fallback;
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
