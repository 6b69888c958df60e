// Listening sockets a runner hands to the proxy it starts, as systemd's socket activation
// does (LISTEN_FDS): the runner binds them once and keeps them open, the proxy listens on
// the descriptors it inherits, and a proxy that restarts (a crash, an upgrade) takes the
// same sockets again. Connections that arrive while no proxy runs wait in the kernel's
// accept queue instead of being refused. The runner (src/runner/held-listeners.ts) writes
// the variable and the proxy (src/cli/proxy.ts) reads it; both import this file.
import { TrellisError } from '../errors.js';

/** `host:port=fd,…`: which inherited descriptor listens at which address. */
export const LISTEN_FDS_ENV = 'TRELLIS_LISTEN_FDS';

/** The first descriptor a child is given after stdin, stdout and stderr (systemd's SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** At most this many inherited listeners (a pod has a handful; the bound keeps a bad variable cheap). */
const MAX_LISTEN_FDS = 1024;

/** The key a listener is found by: the address it was asked to listen at. */
export const listenKey = (host: string, port: number): string => `${host}:${port}`;

/** `[["127.0.0.1:15100", 3], …]` → the variable's value. */
export function formatListenFds(entries: Iterable<readonly [string, number]>): string {
  return [...entries].map(([key, fd]) => `${key}=${fd}`).join(',');
}

/**
 * The variable's value → address → descriptor. Anything malformed is TRELLIS_E_USAGE
 * naming the variable and the entry: a proxy that cannot tell which socket is which must
 * not guess.
 */
export function parseListenFds(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (text === undefined || text === '') return out;
  const entries = text.split(',');
  if (entries.length > MAX_LISTEN_FDS) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `$${LISTEN_FDS_ENV} names ${entries.length} listeners; at most ${MAX_LISTEN_FDS}` });
  }
  for (const entry of entries) {
    const m = /^(.{1,255}):(\d{1,5})=(\d{1,4})$/.exec(entry);
    const port = Number(m?.[2]);
    const fd = Number(m?.[3]);
    if (m === null || !(port >= 1 && port <= 65535) || fd < LISTEN_FDS_START) {
      throw new TrellisError('TRELLIS_E_USAGE', {
        reason: `$${LISTEN_FDS_ENV}: "${entry.slice(0, 300)}" is not HOST:PORT=FD (a port 1-65535, a descriptor from ${LISTEN_FDS_START})`,
      });
    }
    out.set(listenKey(m[1] ?? '', port), fd);
  }
  return out;
}
