// At most so many log lines a minute from one source that anyone can trigger (refused
// hellos, refused admin credentials, broken connections, failed span exports): the
// first `perMinute` lines of a minute are written, the rest counted, and the count is
// written as one line before the next line of a later minute. The metrics beside each
// source count every event; the log only has to stay readable and bounded. Neutral (it
// imports nothing), so the control plane and the proxy share it.

export interface LogLimiterOptions {
  readonly perMinute: number;
  readonly log: (line: string) => void;
  /** The line that says how many were not written in the last minute. */
  readonly dropped: (count: number) => string;
  readonly now?: () => number;
}

export class LogLimiter {
  readonly #o: LogLimiterOptions;
  readonly #now: () => number;
  #minute = 0;
  #written = 0;
  #suppressed = 0;

  constructor(o: LogLimiterOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Writes `line` (made only when it will be written), or counts it when the minute's lines are spent. */
  write(line: string | (() => string)): void {
    const minute = Math.floor(this.#now() / 60_000);
    if (minute !== this.#minute) {
      if (this.#suppressed > 0) this.#o.log(this.#o.dropped(this.#suppressed));
      this.#minute = minute;
      this.#written = 0;
      this.#suppressed = 0;
    }
    if (this.#written >= this.#o.perMinute) {
      this.#suppressed++;
      return;
    }
    this.#written++;
    this.#o.log(typeof line === 'string' ? line : line());
  }
}
