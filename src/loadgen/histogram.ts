// Latency histograms: HDR histograms (hdr-histogram-js) in microseconds, and the
// summary every report quotes (p50, p90, p99, p99.9, max, mean).
import { build, type Histogram } from 'hdr-histogram-js';

/** Percentiles in microseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

/** 1 µs to 120 s at 3 significant digits: enough for any request a run can time out. */
export function newHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

/** Records a duration given in milliseconds (clamped to at least 1 µs). */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(Math.min(120_000_000, Math.max(1, Math.round(ms * 1000))));
}

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  return {
    count: h.totalCount,
    p50: h.getValueAtPercentile(50),
    p90: h.getValueAtPercentile(90),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
    mean: Math.round(h.mean),
  };
}
