// Bounds what /metrics responses on a proxy's admin server can hold. Each response sends
// an exposition (about 300 KB for 1,000 series) that stays in the proxy until the client
// has taken it, and the admin server has no timeout for a response that never finishes
// (a server-wide idle timeout would cut /tap, a stream meant to stay open). So a client
// opening connections to /metrics and never reading would hold that much per connection,
// forever. The gate caps the responses being sent at once (proxyLimits.maxConcurrentScrapes;
// more are refused, 503 scrape-limit) and destroys a response not sent within
// proxyLimits.scrapeTimeout. Both are read per scrape, so a new snapshot applies to the next.
import type http from 'node:http';

/** The two limits a scrape is held to (listeners/limits.ts has the defaults and why). */
export interface ScrapeLimits {
  readonly maxConcurrentScrapes: number;
  readonly scrapeTimeoutMs: number;
}

/** What the gate did, read at each scrape (trellis_proxy_scrapes_*). */
export interface ScrapeCounts {
  /** /metrics responses being sent now. */
  readonly active: number;
  /** Scrapes refused at the cap. */
  readonly refused: number;
  /** Responses whose connection was destroyed because they were not sent within the timeout. */
  readonly timedOut: number;
}

export class ScrapeGate {
  #active = 0;
  #refused = 0;
  #timedOut = 0;

  /**
   * Admits the /metrics response `res` when fewer than `limits.maxConcurrentScrapes` are
   * being sent: it counts until it closes (sent, or its connection gone), and its
   * connection is destroyed if it has not finished within `limits.scrapeTimeoutMs`.
   * False (counted) at the cap: the caller answers 503 without building an exposition.
   */
  admit(res: http.ServerResponse, limits: ScrapeLimits): boolean {
    if (this.#active >= limits.maxConcurrentScrapes) {
      this.#refused++;
      return false;
    }
    // Its client gone already: 'close' has been emitted and would never count it out.
    if (res.destroyed) return true;
    this.#active++;
    const timer = setTimeout(() => {
      if (res.writableFinished) return;
      this.#timedOut++;
      // The socket with it: a half-sent body cannot be ended any other way. Until the
      // socket has closed the lent bytes stay lent (the next scrape writes into a new
      // buffer); Node 20 then calls the response's end callback too, once libuv has
      // cancelled the write, so they go back for reuse only when nothing reads them.
      res.destroy();
    }, limits.scrapeTimeoutMs);
    // Never what keeps a proxy that is shutting down alive.
    timer.unref();
    res.once('close', () => {
      clearTimeout(timer);
      this.#active--;
    });
    return true;
  }

  counts(): ScrapeCounts {
    return { active: this.#active, refused: this.#refused, timedOut: this.#timedOut };
  }
}
