// `trellis logs SERVICE`: the logs of a service's instances under `trellis up`, their
// apps' output (stamped by the runner, runner/log-lines.ts), their sidecars' own output
// and their access logs, interleaved by time, each line labelled with its instance and
// source; `-f` follows them.
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { MeshState } from '../runner/local-mesh.js';
import { parseStampedLine } from '../runner/log-lines.js';
import { TrellisError } from '../errors.js';
import { INGRESS_SERVICE } from '../api/protocol.js';
import { abortOnSigint, parseDuration, parseFlags } from './args.js';
import { printable } from './printable.js';
import { usageError } from './target-flags.js';

export const help = `Usage: trellis logs SERVICE [options]

Prints the logs of SERVICE's instances in a mesh run by \`trellis up\`: each app's
stdout and stderr, its sidecar's own output, and the sidecar's access log (JSON), in
one stream ordered by time, each line labelled with its instance and source (app,
proxy, access). Control characters are shown escaped, never sent to the terminal.

Options:
  -f, --follow       keep printing lines as they are written (Ctrl-C to stop)
  --since D|TIME     only lines from the last D (30s, 5m, 1h) or since an RFC 3339 time
  --instance ID      only this instance
  --state-dir DIR    the mesh's state folder (default: .trellis, trellis up's default
                     beside a mesh file in this folder)
`;

/** One line of one source, with its time. */
export interface LogLine {
  readonly at: number;
  readonly instance: string;
  readonly source: 'app' | 'proxy' | 'access';
  readonly text: string;
}

/** Where one instance's lines are. */
export interface LogSource {
  readonly instance: string;
  readonly source: LogLine['source'];
  readonly path: string;
}

/** The first read of a file takes at most its last this many bytes (logs can be large; what is older is cut). */
const FIRST_READ_BYTES = 8 * 1024 * 1024;
const FOLLOW_POLL_MS = 250;

/** The log files of `service`'s instances in a mesh's state. */
export function logSources(state: MeshState, service: string, instance?: string): LogSource[] {
  const dir = state.logDir;
  if (service === INGRESS_SERVICE) {
    return [
      { instance: INGRESS_SERVICE, source: 'proxy', path: join(dir, `${INGRESS_SERVICE}.log`) },
      { instance: INGRESS_SERVICE, source: 'access', path: join(dir, `${INGRESS_SERVICE}.access.log`) },
    ];
  }
  const out: LogSource[] = [];
  for (const i of state.instances) {
    if (i.service !== service || (instance !== undefined && i.id !== instance)) continue;
    out.push({ instance: i.id, source: 'app', path: join(dir, `${i.id}.log`) });
    out.push({ instance: i.id, source: 'proxy', path: join(dir, `${i.id}.sidecar.log`) });
    out.push({ instance: i.id, source: 'access', path: join(dir, `${i.id}.access.log`) });
  }
  return out;
}

/** Reads one file from where it was last read, line by line; a file that shrank (rotated) is read again from its start. */
export class FileFollower {
  readonly src: LogSource;
  #offset = -1;
  #partial = '';
  /** The time of the file's last stamped line: a line without one (an old line, a part) takes it. */
  #lastAt = 0;

  constructor(src: LogSource) {
    this.src = src;
  }

  async read(): Promise<LogLine[]> {
    let fh: FileHandle;
    try {
      fh = await open(this.src.path, 'r');
    } catch {
      return []; // not written yet
    }
    try {
      const { size } = await fh.stat();
      let first = false;
      if (this.#offset === -1) {
        this.#offset = Math.max(0, size - FIRST_READ_BYTES);
        first = this.#offset > 0;
      } else if (size < this.#offset) {
        this.#offset = 0;
        this.#partial = '';
      }
      if (size === this.#offset) return [];
      const buf = Buffer.alloc(size - this.#offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.#offset);
      this.#offset += bytesRead;
      let text = this.#partial + buf.subarray(0, bytesRead).toString('utf8');
      if (first) text = text.slice(text.indexOf('\n') + 1); // a cut first line is dropped
      const lines = text.split('\n');
      this.#partial = lines.pop() ?? '';
      return lines.filter((l) => l !== '').map((l) => this.#line(l));
    } finally {
      await fh.close();
    }
  }

  #line(raw: string): LogLine {
    const { instance, source } = this.src;
    if (source === 'access') {
      try {
        const ts = (JSON.parse(raw) as { ts?: unknown }).ts;
        const at = typeof ts === 'string' ? Date.parse(ts) : NaN;
        if (!Number.isNaN(at)) this.#lastAt = at;
      } catch {
        // not JSON: printed as it is, at the time of the line before
      }
      return { at: this.#lastAt, instance, source, text: raw };
    }
    const stamped = parseStampedLine(raw);
    if (stamped === undefined) return { at: this.#lastAt, instance, source, text: raw };
    this.#lastAt = stamped.at;
    return { at: stamped.at, instance, source, text: stamped.stream === 'stderr' ? `[stderr] ${stamped.text}` : stamped.text };
  }
}

/** Lines of every source in time order (a stable sort: one file's lines keep their order). */
export function interleave(batches: readonly (readonly LogLine[])[]): LogLine[] {
  return batches.flat().sort((a, b) => a.at - b.at);
}

export function renderLogLine(l: LogLine): string {
  return `${new Date(l.at).toISOString()} ${printable(l.instance, 253)} ${l.source.padEnd(6)} ${printable(l.text, 16 * 1024)}`;
}

/** `--since 5m` or `--since 2026-01-01T10:00:00Z`: ms since the epoch. */
export function sinceFlag(value: string, now = Date.now()): number {
  if (/^\d+(?:\.\d+)?(?:ms|s|m|h)$/.test(value.trim())) return now - parseDuration(value);
  const at = Date.parse(value);
  if (Number.isNaN(at) || !/^\d{4}-\d\d-\d\dT/.test(value)) throw usageError('logs', `--since takes a duration (30s, 5m) or an RFC 3339 time, got "${value}"`);
  return at;
}

export interface LogsRun {
  readonly state: MeshState;
  readonly service: string;
  readonly instance?: string;
  readonly since?: number;
  readonly follow: boolean;
  readonly write: (line: string) => void;
  readonly signal?: AbortSignal;
}

export async function logs(r: LogsRun): Promise<void> {
  const sources = logSources(r.state, r.service, r.instance);
  if (sources.length === 0) {
    const services = [...new Set(r.state.instances.map((i) => i.service))].sort().join(', ');
    throw usageError('logs', `no instance of ${r.service}${r.instance === undefined ? '' : ` with id ${r.instance}`} in this mesh; its services: ${services}`);
  }
  const followers = sources.map((s) => new FileFollower(s));
  const print = (lines: readonly LogLine[]): void => {
    for (const l of lines) if (r.since === undefined || l.at >= r.since) r.write(renderLogLine(l));
  };
  print(interleave(await Promise.all(followers.map((f) => f.read()))));
  while (r.follow && r.signal?.aborted !== true) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, FOLLOW_POLL_MS);
      r.signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
    print(interleave(await Promise.all(followers.map((f) => f.read()))));
  }
}

export async function readMeshState(stateDir: string): Promise<MeshState> {
  const file = join(stateDir, 'state.json');
  try {
    return JSON.parse(await readFile(file, 'utf8')) as MeshState;
  } catch (err) {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `no mesh state at ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}); give the --state-dir of \`trellis up\``,
    });
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      follow: { type: 'boolean', short: 'f', default: false },
      since: { type: 'string' },
      instance: { type: 'string' },
      'state-dir': { type: 'string', default: '.trellis' },
    },
    true,
    'logs',
  );
  if (positionals.length !== 1) throw usageError('logs', 'name one SERVICE');
  const state = await readMeshState(values['state-dir']);
  const sigint = abortOnSigint();
  try {
    await logs({
      state,
      service: positionals[0]!,
      ...(values.instance !== undefined ? { instance: values.instance } : {}),
      ...(values.since !== undefined ? { since: sinceFlag(values.since) } : {}),
      follow: values.follow,
      write: (line) => void process.stdout.write(`${line}\n`),
      signal: sigint.signal,
    });
  } finally {
    sigint.dispose();
  }
  return 0;
}
