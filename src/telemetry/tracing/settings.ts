// Checks a snapshot's `tracing` before a proxy applies it (a NACK names the problem):
// the snapshot comes from the control plane, but a proxy never trusts a shape it is sent.
import type { TracingSnapshot } from '../../api/protocol.js';

function positiveInt(v: unknown, max: number): boolean {
  return v === undefined || (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= max);
}

/** Why `t` cannot be used, or undefined when it can (absent included: tracing off). */
export function checkTracing(t: TracingSnapshot | undefined): string | undefined {
  if (t === undefined) return undefined;
  if (typeof t !== 'object' || t === null) return 'not an object';
  if (typeof t.samplingRate !== 'number' || !(t.samplingRate >= 0 && t.samplingRate <= 1)) return 'samplingRate must be a number from 0 to 1';
  if (t.trustIncomingSampling !== undefined && typeof t.trustIncomingSampling !== 'boolean') return 'trustIncomingSampling must be true or false';
  if (t.endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(t.endpoint);
    } catch {
      return 'endpoint is not a URL';
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'endpoint must be an http or https URL';
  }
  if (!positiveInt(t.maxQueueSpans, 1_000_000) || !positiveInt(t.batchSpans, 100_000)) return 'maxQueueSpans and batchSpans must be whole numbers above 0';
  if (!positiveInt(t.flushIntervalMs, 3_600_000) || !positiveInt(t.exportTimeoutMs, 3_600_000))
    return 'flushIntervalMs and exportTimeoutMs must be whole numbers of milliseconds above 0';
  return undefined;
}
