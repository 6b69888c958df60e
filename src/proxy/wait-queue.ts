// The bounded queue in front of a backend's balancer (Linkerd's): when a backend has no
// endpoint at all (every instance restarting, a version not yet up), a request waits
// for the next snapshot to bring one, instead of failing at once; at most
// QUEUE_CAPACITY wait per backend, each at most QUEUE_WAIT_MS, after which it fails
// with 503 no-endpoints, as does one that finds the queue full. The queue belongs to the
// backend's name in the sidecar, so it outlives the snapshot the requests arrived under.
import type { Exchange, Handler } from './exchange.js';
import type { CompiledBackend } from './router.js';

export const QUEUE_CAPACITY = 100;
export const QUEUE_WAIT_MS = 3000;

interface Waiter {
  readonly ex: Exchange;
  readonly resume: Handler;
  readonly timer: NodeJS.Timeout;
}

export class WaitQueue {
  readonly #waiting: Waiter[] = [];

  get size(): number {
    return this.#waiting.length;
  }

  /** Queues `ex` to run `resume` once its backend has endpoints; false when full. */
  add(ex: Exchange, resume: Handler): boolean {
    if (this.#waiting.length >= QUEUE_CAPACITY) return false;
    const timer = setTimeout(() => this.#expire(ex), QUEUE_WAIT_MS);
    this.#waiting.push({ ex, resume, timer });
    return true;
  }

  /** A new snapshot: every waiting request tries again against `backend` (undefined: gone). */
  drain(backend: CompiledBackend | undefined): void {
    if (this.#waiting.length === 0 || backend === undefined || backend.balancer.endpoints.length === 0) return;
    const waiting = this.#waiting.splice(0);
    for (const w of waiting) {
      clearTimeout(w.timer);
      if (w.ex.finished) continue;
      w.ex.backend = backend;
      w.resume(w.ex);
    }
  }

  #expire(ex: Exchange): void {
    const i = this.#waiting.findIndex((w) => w.ex === ex);
    if (i !== -1) this.#waiting.splice(i, 1);
    ex.fail('TRELLIS_E_NO_ENDPOINTS', { backend: `${ex.backend?.name ?? '?'} (waited ${QUEUE_WAIT_MS} ms for an endpoint)` });
  }
}
