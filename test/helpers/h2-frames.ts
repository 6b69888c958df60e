// Test helper: an HTTP/2 client written by hand, frame by frame (RFC 9113 §4.1, §6), for
// what node's own client will not send: several frames in one write, more streams than
// the server allows, frames after a GOAWAY. Header blocks are HPACK literals without
// indexing (RFC 7541 §6.2.2); responses are read as frames, not decoded.
import net from 'node:net';
import { eventually } from './eventually.js';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefix: number): number[] {
  const max = (1 << prefix) - 1;
  if (value < max) return [value];
  const out = [max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

const str = (s: string): number[] => [...hpackInt(s.length, 7), ...Buffer.from(s, 'latin1')];

/** A header block of literal fields without indexing, with new names. */
export function headerBlock(headers: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [n, v] of headers) out.push(0x00, ...str(n), ...str(v));
  return Buffer.from(out);
}

/** HEADERS (END_HEADERS, and END_STREAM unless `open`) for a GET of `path`. */
export function request(stream: number, path = '/', opts: { open?: boolean; authority?: string; extra?: [string, string][] } = {}): Buffer {
  const block = headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', path], [':authority', opts.authority ?? 'test'], ...(opts.extra ?? [])]);
  return frame(T.HEADERS, F.END_HEADERS | (opts.open ? 0 : F.END_STREAM), stream, block);
}

export function goaway(lastStream: number, code: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStream, 0);
  p.writeUInt32BE(code, 4);
  return frame(T.GOAWAY, 0, 0, p);
}

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

/** A raw connection: writes bytes, and reads the server's frames as they come. */
export class RawH2 {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  closed = false;
  #buf = Buffer.alloc(0);

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
    });
    this.socket.on('data', (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c]);
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        this.frames.push({
          type: this.#buf[3]!,
          flags: this.#buf[4]!,
          stream: this.#buf.readUInt32BE(5) & 0x7fffffff,
          payload: this.#buf.subarray(9, 9 + len),
        });
        this.#buf = this.#buf.subarray(9 + len);
      }
    });
  }

  write(...parts: Buffer[]): void {
    this.socket.write(Buffer.concat(parts));
  }

  /** Streams the server answered (sent HEADERS on). */
  answered(): Set<number> {
    return new Set(this.frames.filter((f) => f.type === T.HEADERS).map((f) => f.stream));
  }

  /** Streams whose response ended (a DATA or HEADERS frame with END_STREAM). */
  ended(): Set<number> {
    return new Set(this.frames.filter((f) => (f.type === T.HEADERS || f.type === T.DATA) && (f.flags & F.END_STREAM) !== 0).map((f) => f.stream));
  }

  /** RST_STREAM codes the server sent, by stream. */
  resets(): Map<number, number> {
    return new Map(this.frames.filter((f) => f.type === T.RST_STREAM).map((f) => [f.stream, f.payload.readUInt32BE(0)]));
  }

  /** The error code of the server's GOAWAY, if it sent one. */
  goawayCode(): number | undefined {
    const g = this.frames.find((f) => f.type === T.GOAWAY);
    return g?.payload.readUInt32BE(4);
  }

  async until(what: string, pred: (c: RawH2) => boolean, timeoutMs = 5000): Promise<void> {
    await eventually(() => pred(this), { timeoutMs, what });
  }

  close(): void {
    this.socket.destroy();
  }
}
