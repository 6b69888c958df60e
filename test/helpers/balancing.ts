// Test helpers for balancers: endpoints and a seeded random source.
import type { Endpoint } from '../../src/api/protocol.js';

export const ep = (id: string, port: number, weight?: number): Endpoint => ({
  id,
  host: '127.0.0.1',
  port,
  version: 'v1',
  ...(weight === undefined ? {} : { weight }),
});

/** A seeded random source (mulberry32), so every run draws the same. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
