// The loopback address the DNS responder (dns-responder.ts) answers for each mesh
// service: one per service in 127.255.0.0/16, where the sidecar opens that service's
// outbound listeners on the service's own ports. Linux routes all of 127.0.0.0/8 to lo,
// so every such address can be listened on without configuring anything.
//
// Stable per service: the address is a hash of the service key (FNV-1a, 16 bits), with
// linear probing past a collision, so a sidecar that restarts gives most services the
// address it gave before (an app holding a cached answer keeps working), and an address,
// once given, is never given to another service while this process lives.

/** The first two octets of every address given. */
const PREFIX = '127.255';
/** The last octet is kept out of 0 and 255 (they read as a network and a broadcast address). */
const SLOTS = 256 * 254;

export class LoopbackAddresses {
  readonly #byKey = new Map<string, string>();
  readonly #taken = new Set<number>();
  readonly #max: number;

  /** At most `max` services get an address (the rest are answered as any name: forwarded). */
  constructor(max: number) {
    this.#max = Math.min(max, SLOTS);
  }

  /** The address of service `key`, given now if it has none; undefined once `max` are given. */
  addressOf(key: string): string | undefined {
    const known = this.#byKey.get(key);
    if (known !== undefined) return known;
    if (this.#byKey.size >= this.#max) return undefined;
    let slot = fnv1a(key) % SLOTS;
    while (this.#taken.has(slot)) slot = (slot + 1) % SLOTS;
    this.#taken.add(slot);
    const address = `${PREFIX}.${Math.floor(slot / 254)}.${(slot % 254) + 1}`;
    this.#byKey.set(key, address);
    return address;
  }

  get size(): number {
    return this.#byKey.size;
  }
}

/** 32-bit FNV-1a of a string's UTF-16 code units: cheap, and spreads similar names apart. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
