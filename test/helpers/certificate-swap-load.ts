// Load across a certificate swap, for the tests that replace a Gateway's certificate
// under traffic (a Secret replaced in the Kubernetes API, a file renamed over on disk):
// four clients, two on kept-alive connections made before the swap and two handshaking
// per request, until each has made `maxRequests` or the new certificate has been served
// for `afterSwapMs`. The swap starts once the load is under way (20 requests).
import type https from 'node:https';
import { Agent } from 'node:https';
import { eventually } from './eventually.js';

export interface SwapLoadOptions {
  /** One request on `agent` (false: a new connection); its status and the serial of the certificate it got (upper-case hex). */
  get(agent: https.Agent | false): Promise<{ status: number; serial: string }>;
  /** The serial of the new certificate (upper-case hex). */
  readonly newSerial: string;
  /** Replaces the certificate. */
  swap(): Promise<void> | void;
  readonly maxRequests: number;
  readonly afterSwapMs: number;
  /** Options of the kept-alive clients' agents (one socket each). */
  readonly agentOptions?: https.AgentOptions;
}

export interface SwapLoadResult {
  readonly count: number;
  /** A status other than 200, or the error, of each request that failed. */
  readonly failures: string[];
  /** The serials served. */
  readonly served: Set<string>;
  /** When the new certificate was first served (Date.now); undefined: never. */
  readonly swappedSeenAt: number | undefined;
}

export async function loadAcrossCertificateSwap(o: SwapLoadOptions): Promise<SwapLoadResult> {
  const failures: string[] = [];
  const served = new Set<string>();
  let swappedSeenAt: number | undefined;
  let stop = false;
  let count = 0;
  const worker = async (agent: https.Agent | false): Promise<void> => {
    for (let n = 0; n < o.maxRequests && !stop; n++) {
      count++;
      try {
        const r = await o.get(agent);
        if (r.status !== 200) failures.push(`status ${r.status}`);
        served.add(r.serial);
        if (r.serial === o.newSerial) swappedSeenAt ??= Date.now();
      } catch (err) {
        failures.push(err instanceof Error ? err.message : String(err));
      }
      if (swappedSeenAt !== undefined && Date.now() - swappedSeenAt > o.afterSwapMs) stop = true;
    }
  };
  const keepAlive = [new Agent({ keepAlive: true, maxSockets: 1, ...o.agentOptions }), new Agent({ keepAlive: true, maxSockets: 1, ...o.agentOptions })];
  try {
    const load = Promise.all([worker(keepAlive[0]!), worker(keepAlive[1]!), worker(false), worker(false)]);
    await eventually(() => count >= 20, { what: 'the load under way' });
    await o.swap();
    await load;
  } finally {
    stop = true;
    for (const a of keepAlive) a.destroy();
  }
  return { count, failures, served, swappedSeenAt };
}
