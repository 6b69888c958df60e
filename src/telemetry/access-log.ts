// JSON access log, one line per request or TCP connection. Lines are batched and
// written once per event-loop turn, so logging costs a string per request rather than
// a write system call.
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';

export interface AccessLog {
  /** False when logging is off: callers skip building entries. */
  readonly enabled: boolean;
  write(entry: Record<string, unknown>): void;
  close(): Promise<void>;
}

/** `-` writes to stdout, `off` disables logging, anything else is a file path (appended). */
export function openAccessLog(target: string): AccessLog {
  if (target === 'off') return { enabled: false, write() {}, close: async () => {} };
  const out: Writable = target === '-' ? process.stdout : createWriteStream(target, { flags: 'a' });
  let pending: string[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    out.write(text);
  };
  return {
    enabled: true,
    write(entry) {
      pending.push(JSON.stringify(entry) + '\n');
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    close() {
      flush();
      if (out === process.stdout) return Promise.resolve();
      return new Promise((resolve) => out.end(resolve));
    },
  };
}
