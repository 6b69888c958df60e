// A fast, well-mixed 32-bit string hash for the affinity balancers: FNV-1a over the
// UTF-16 code units, then murmur3's finalizer so that keys differing in one character
// land far apart on the ring (FNV-1a alone clusters short, similar keys).
export function hash32(s: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
