// The bounded queue in front of a backend's balancer (Linkerd's): when a backend has no
// endpoint at all (every instance restarting, a version not yet up), a request waits
// for the next snapshot to bring one, instead of failing at once; at most
// QUEUE_CAPACITY wait per backend, each at most QUEUE_WAIT_MS, after which it fails
// with 503 no-endpoints, as does one that finds the queue full. The queue belongs to the
// backend's name in the sidecar, so it outlives the snapshot the requests arrived under.

export const QUEUE_CAPACITY = 100;
export const QUEUE_WAIT_MS = 3000;

/** What waits: something that may end meanwhile (an exchange whose client left). */
export interface Waiting {
  readonly finished: boolean;
}

/** A backend as the queue sees it: whether it has endpoints now. */
export interface QueuedFor {
  readonly balancer: { readonly endpoints: readonly unknown[] };
}

interface Waiter<B> {
  readonly item: Waiting;
  readonly resume: (backend: B) => void;
  readonly timer: NodeJS.Timeout;
}

/** The queue of one backend (`B`: the compiled backend, router.ts). */
export class WaitQueue<B extends QueuedFor> {
  readonly #waiting: Waiter<B>[] = [];

  get size(): number {
    return this.#waiting.length;
  }

  /**
   * Queues `item` to run `resume` with the backend once it has endpoints, or `expire`
   * after {@link QUEUE_WAIT_MS}; false when the queue is full.
   */
  add(item: Waiting, resume: (backend: B) => void, expire: () => void): boolean {
    if (this.#waiting.length >= QUEUE_CAPACITY) return false;
    const timer = setTimeout(() => {
      const i = this.#waiting.findIndex((w) => w.item === item);
      if (i !== -1) this.#waiting.splice(i, 1);
      if (!item.finished) expire();
    }, QUEUE_WAIT_MS);
    this.#waiting.push({ item, resume, timer });
    return true;
  }

  /** A new snapshot: every waiting request tries again against `backend` (undefined: gone). */
  drain(backend: B | undefined): void {
    if (this.#waiting.length === 0 || backend === undefined || backend.balancer.endpoints.length === 0) return;
    const waiting = this.#waiting.splice(0);
    for (const w of waiting) {
      clearTimeout(w.timer);
      if (w.item.finished) continue;
      w.resume(backend);
    }
  }
}
