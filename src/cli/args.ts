// Shared flag parsing for the subcommands: node's own util.parseArgs, with errors
// turned into TRELLIS_E_USAGE so every command reports bad flags the same way.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TrellisError } from '../errors.js';

export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = false, command = '') {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `${reason}${command ? `; see \`trellis ${command} --help\`` : ''}` });
  }
}

/** Parses `host:port` or `port` (host defaults to 127.0.0.1). */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `${flag} expects HOST:PORT or PORT, got "${value}"` });
  }
  const host = (m[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  return { host, port };
}

/** Parses a size in bytes: `1048576`, `512KiB`, `10MiB`, `1GiB` (binary units; K, M, G alone mean the same). */
export function parseBytes(value: string, flag: string): number {
  const m = /^(\d+)\s*(k|ki|kib|m|mi|mib|g|gi|gib)?$/i.exec(value.trim());
  const unit = (m?.[2] ?? '').toLowerCase().charAt(0);
  const n = m ? Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `${flag} expects a size such as 1048576 or 10MiB, got "${value}"` });
  return n;
}

/** Parses a whole number of at least 1. */
export function parseCount(value: string, flag: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new TrellisError('TRELLIS_E_USAGE', { reason: `${flag} expects a whole number of at least 1, got "${value}"` });
  return n;
}

/** Parses durations such as `500ms`, `2s`, `1m`, or a bare number of milliseconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new TrellisError('TRELLIS_E_USAGE', { reason: `"${value}" is not a duration (examples: 500ms, 2s, 1m)` });
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
}

/**
 * Ctrl-C as an AbortSignal for a long run: the first SIGINT asks the run to stop and
 * report what it measured, a second one exits at once. Call `dispose()` when done.
 */
export function abortOnSigint(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSigint = (): void => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  return { signal: ac.signal, dispose: () => void process.off('SIGINT', onSigint) };
}
