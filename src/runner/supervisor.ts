// Runs one process of a local mesh and keeps it running: output to a log file, a
// restart with exponential backoff when it exits on its own, and a stop that reaches
// the whole process group (so a shell command's children go too) and ends in SIGKILL
// when SIGTERM is not enough. Descriptors the runner holds (listening sockets) can be
// given to every start, so a restart takes the same sockets.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { LineStamper } from './log-lines.js';

export interface ProcessSpec {
  name: string;
  /** Program and arguments; a string is run by /bin/sh. */
  command: string | string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  logFile: string;
  /** Restart when it exits on its own (default true). */
  restart?: boolean;
  /**
   * Open descriptors every start of the process gets as 3, 4, … (listening sockets the
   * runner holds across restarts: held-listeners.ts). The supervisor does not close them.
   */
  fds?: readonly number[];
}

export interface SupervisorEvents {
  onExit?(name: string, code: number | null, signal: string | null, restartInMs: number | undefined): void;
  onStart?(name: string, pid: number, restarts: number): void;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A process that stayed up this long has its backoff reset. */
const STABLE_AFTER_MS = 10_000;
const STOP_GRACE_MS = 5000;
/**
 * After the process ended, how long a stop waits for its output pipes to close (what it
 * wrote last is read into the log first). Bounded: a process that left the group (setsid)
 * may hold them open; what it writes later is dropped, never written to an ended log.
 */
const STDIO_DRAIN_MS = 1000;

export class Supervised {
  readonly spec: ProcessSpec;
  readonly #events: SupervisorEvents;
  #child: ChildProcess | undefined;
  #log: WriteStream;
  #stopping = false;
  #restarts = 0;
  #failures = 0;
  #startedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #logFailed = false;

  constructor(spec: ProcessSpec, events: SupervisorEvents = {}) {
    this.spec = spec;
    this.#events = events;
    this.#log = createWriteStream(spec.logFile, { flags: 'a' });
    // A log file that fails (a full disk, its folder removed) costs the process's lines,
    // never the runner: without a listener the stream's 'error' would end `trellis up`.
    this.#log.on('error', (e) => {
      if (this.#logFailed) return;
      this.#logFailed = true;
      process.stderr.write(`trellis: the log of ${spec.name} failed (${e.message}); its lines are dropped from now on\n`);
    });
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get restarts(): number {
    return this.#restarts;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  start(): void {
    const { command, cwd, env } = this.spec;
    const [file, args] = typeof command === 'string' ? ['/bin/sh', ['-c', `exec ${command}`]] : [command[0]!, command.slice(1)];
    this.#startedAt = Date.now();
    const child = spawn(file, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe', ...(this.spec.fds ?? [])], detached: true });
    this.#child = child;
    // Each line stamped with the time it was read (log-lines.ts), for `trellis logs`.
    const out = new LineStamper('stdout', this.#log);
    const err = new LineStamper('stderr', this.#log);
    // As pipe() would: a process writing faster than the disk takes it waits.
    const log = this.#log;
    const feed = (from: NodeJS.ReadableStream, stamper: LineStamper) =>
      from.on('data', (c: Buffer) => {
        // Output after the log ended (a stop, below) is dropped: a write after end would be an error.
        if (!log.writable) return;
        if (!stamper.write(c)) {
          from.pause();
          log.once('drain', () => from.resume());
        }
      });
    feed(child.stdout!, out);
    feed(child.stderr!, err);
    child.stdout!.once('end', () => log.writable && out.flush());
    child.stderr!.once('end', () => log.writable && err.flush());
    child.on('error', (err) => log.writable && log.write(`trellis: could not start ${this.spec.name}: ${err.message}\n`));
    child.on('exit', (code, signal) => this.#onExit(child, code, signal));
    if (child.pid !== undefined) this.#events.onStart?.(this.spec.name, child.pid, this.#restarts);
  }

  #onExit(child: ChildProcess, code: number | null, signal: string | null): void {
    if (child !== this.#child) return;
    if (this.#stopping || this.spec.restart === false) {
      this.#events.onExit?.(this.spec.name, code, signal, undefined);
      return;
    }
    this.#failures = Date.now() - this.#startedAt > STABLE_AFTER_MS ? 1 : this.#failures + 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.#failures - 1));
    this.#events.onExit?.(this.spec.name, code, signal, delay);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopping) return;
      this.#restarts++;
      this.start();
    }, delay);
  }

  /** Stops the process group: SIGTERM, then SIGKILL after a grace period. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
      killGroup(child.pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child.pid!, 'SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
      // Anything the process left in its group goes too.
      killGroup(child.pid, 'SIGKILL');
      let drainTimer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (drainTimer = setTimeout(resolve, STDIO_DRAIN_MS)))]);
      clearTimeout(drainTimer);
    }
    await new Promise<void>((resolve) => this.#log.end(resolve));
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}
