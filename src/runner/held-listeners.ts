// The listening sockets the runner holds for one sidecar, so that a sidecar restart (a
// crash, an upgrade) never has a moment with nobody listening. Envoy's hot restart hands
// the sockets from the old process to the new one over a Unix socket; that needs the old
// one alive, and a crash has none. systemd's socket activation keeps them in the parent
// instead, and so does this: the runner opens them once (listener-binder.ts; in the pod when isolated),
// keeps the descriptors, and gives them to every start of the sidecar as descriptors 3, 4,
// … with $TRELLIS_LISTEN_FDS saying which is which (src/api/listen-fds.ts). The kernel
// keeps a socket listening while any process holds it, so a connection that arrives
// between two sidecars waits in the accept queue and the next sidecar takes it.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { HostPort } from '../api/protocol.js';
import { formatListenFds, LISTEN_FDS_ENV, LISTEN_FDS_START, listenKey } from '../api/listen-fds.js';
import { TrellisError } from '../errors.js';

const BINDER = fileURLToPath(new URL('./listener-binder.js', import.meta.url));
const BIND_TIMEOUT_MS = 20_000;

/** A raw libuv TCP handle as it arrives over IPC: open, not accepting here. */
interface RawHandle {
  readonly fd: number;
  close(): void;
}

export class HeldListeners {
  readonly #held: { key: string; handle: RawHandle }[];

  private constructor(held: { key: string; handle: RawHandle }[]) {
    this.#held = held;
  }

  /**
   * Opens a listening socket at each address for `what` (a sidecar, for messages), by
   * running the binder as `wrap` says (in a pod's namespace, as the sidecar's uid);
   * resolves when the runner holds all of them, else fails with TRELLIS_E_LISTEN_FAILED.
   */
  static bind(at: readonly HostPort[], what: string, wrap: (argv: string[]) => string[] = (argv) => argv): Promise<HeldListeners> {
    const keys = at.map((a) => listenKey(a.host, a.port));
    const [cmd = '', ...args] = wrap([process.execPath, BINDER, ...keys]);
    const command = [cmd, ...args].join(' ');
    return new Promise((resolve, reject) => {
      const held: { key: string; handle: RawHandle }[] = [];
      let stderr = '';
      let error: string | undefined;
      const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      const timer = setTimeout(() => {
        error = `no answer in ${BIND_TIMEOUT_MS / 1000} s`;
        child.kill('SIGKILL');
      }, BIND_TIMEOUT_MS);
      child.stderr?.on('data', (c: Buffer) => {
        if (stderr.length < 4096) stderr += c.toString();
      });
      child.on('message', (m: { key?: unknown; error?: unknown }, handle: unknown) => {
        const h = handle as Partial<RawHandle> | undefined;
        if (typeof m.error === 'string') error = m.error;
        else if (typeof m.key === 'string' && keys.includes(m.key) && h !== undefined && typeof h.fd === 'number' && h.fd >= 0) {
          held.push({ key: m.key, handle: h as RawHandle });
        }
      });
      child.on('error', (err) => {
        error = err.message;
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        const missing = keys.filter((k) => !held.some((h) => h.key === k));
        if (code === 0 && error === undefined && missing.length === 0) return resolve(new HeldListeners(keys.map((k) => held.find((h) => h.key === k)!)));
        for (const h of held) h.handle.close();
        const reason = error ?? (stderr.trim() || `exited ${code} without ${missing.join(', ')}`);
        reject(
          new TrellisError('TRELLIS_E_LISTEN_FAILED', {
            what,
            addresses: keys.join(', '),
            reason: `${reason.split('\n').slice(0, 5).join(' | ')} (${command})`,
          }),
        );
      });
    });
  }

  /** The descriptors for the child's stdio after stdin, stdout, stderr: it gets them as 3, 4, …. */
  get fds(): number[] {
    return this.#held.map((h) => h.handle.fd);
  }

  /** The environment that tells the child which descriptor listens where. */
  get env(): Record<string, string> {
    return { [LISTEN_FDS_ENV]: formatListenFds(this.#held.map((h, i) => [h.key, LISTEN_FDS_START + i] as const)) };
  }

  /** Closes the runner's copies: once the sidecar has gone too, nothing listens there. */
  close(): void {
    for (const h of this.#held) h.handle.close();
    this.#held.length = 0;
  }
}
