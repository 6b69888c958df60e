// Loopback ports for a local mesh: fixed ones from the mesh file are checked, the rest
// are picked by the kernel (bind to port 0) and never handed out twice in one run.
import net from 'node:net';
import { TrellisError } from '../errors.js';

/** The kernel hands out ports in turn, so a few taken ones in a row are already unusual. */
const MAX_TRIES = 50;

export class PortAllocator {
  readonly #taken = new Set<number>();

  /** A free port on 127.0.0.1 not yet handed out by this allocator. */
  async free(): Promise<number> {
    for (let i = 0; i < MAX_TRIES; i++) {
      const port = await new Promise<number>((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      if (!this.#taken.has(port)) {
        this.#taken.add(port);
        return port;
      }
    }
    throw new TrellisError('TRELLIS_E_NO_FREE_PORT', { tries: MAX_TRIES });
  }

  /** Reserves a fixed port; resolves false when something already listens there. */
  async fixed(port: number): Promise<boolean> {
    if (this.#taken.has(port)) return false;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) this.#taken.add(port);
    return ok;
  }
}
