// The lines the local runner keeps of each process's stdout and stderr, stamped as the
// Kubernetes container runtime (CRI) writes container logs: `<RFC 3339 time> <stream>
// <F|P> <text>`, F a full line, P part of one (a line longer than MAX_LINE, or the last
// bytes a process wrote without a newline). The time is when the runner read the line,
// so `trellis logs` can interleave an app's lines with its sidecar's access log.
import type { Writable } from 'node:stream';

/** A longer line is written in parts (P): one process can't hold the runner's memory. */
const MAX_LINE = 16 * 1024;

/** Stamps one stream's bytes into `out`, line by line. */
export class LineStamper {
  readonly #stream: 'stdout' | 'stderr';
  readonly #out: Writable;
  #partial = '';

  constructor(stream: 'stdout' | 'stderr', out: Writable) {
    this.#stream = stream;
    this.#out = out;
  }

  /** False when `out` is backed up: the caller pauses its source until `out` drains. */
  write(chunk: Buffer | string): boolean {
    let text = this.#partial + chunk.toString();
    let batch = '';
    const ts = new Date().toISOString();
    let nl: number;
    while ((nl = text.indexOf('\n')) !== -1) {
      batch += `${ts} ${this.#stream} F ${text.slice(0, nl).replace(/\r$/, '')}\n`;
      text = text.slice(nl + 1);
    }
    while (text.length > MAX_LINE) {
      batch += `${ts} ${this.#stream} P ${text.slice(0, MAX_LINE)}\n`;
      text = text.slice(MAX_LINE);
    }
    this.#partial = text;
    return batch === '' || this.#out.write(batch);
  }

  /** Writes what is left of an unfinished line (the process ended). */
  flush(): void {
    if (this.#partial === '') return;
    this.#out.write(`${new Date().toISOString()} ${this.#stream} P ${this.#partial}\n`);
    this.#partial = '';
  }
}

/** One stamped line, read back. */
export interface StampedLine {
  /** ms since the epoch. */
  readonly at: number;
  readonly stream: string;
  readonly text: string;
}

const STAMPED = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) (stdout|stderr) ([FP]) (.*)$/;

/** A runner log line read back; a line without a stamp (written before stamping) is undefined. */
export function parseStampedLine(line: string): StampedLine | undefined {
  const m = STAMPED.exec(line);
  if (!m) return undefined;
  const at = Date.parse(m[1]!);
  return Number.isNaN(at) ? undefined : { at, stream: m[2]!, text: m[4]! };
}
