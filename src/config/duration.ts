// Durations in config files: `<n>ms|s|m|h` strings (the schema's `duration` shape),
// turned into milliseconds once, at load time, so nothing downstream parses them.
import { TrellisError } from '../errors.js';

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * Converts a config duration such as `500ms`, `2s`, `1m` or `1.5h` to milliseconds.
 * Throws `TRELLIS_E_CONFIG_INVALID` for anything else; config that passed the schema
 * never does.
 */
export function parseDurationMs(s: string): number {
  const m = DURATION.exec(s);
  if (!m) {
    throw new TrellisError('TRELLIS_E_CONFIG_INVALID', {
      file: JSON.stringify(s),
      details: 'is not a duration; write a number and a unit, such as 500ms, 2s, 1m or 1.5h',
    });
  }
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

const GATEWAY_PART = /([0-9]{1,5})(ms|h|m|s)/g;

/**
 * Converts a Gateway API duration (GEP-2257: `1m30s`, `250ms`, `0s`) to milliseconds.
 * Config that passed the schema always has this shape; anything else throws.
 */
export function parseGatewayDurationMs(s: string): number {
  if (!/^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(s)) {
    throw new TrellisError('TRELLIS_E_CONFIG_INVALID', { file: JSON.stringify(s), details: 'is not a Gateway API duration such as 250ms, 10s or 1m30s' });
  }
  let ms = 0;
  for (const m of s.matchAll(GATEWAY_PART)) ms += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return ms;
}
