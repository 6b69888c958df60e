// Per-proxy snapshot versions: a counter that moves only when what the proxy would
// receive actually changed, so proxies (and the ACK/NACK record) are not churned by
// recompiles that came out the same.
import type { Snapshot } from '../../api/protocol.js';
import type { SnapshotContent } from '../compile/compiler.js';
import { stableStringify } from '../stable-json.js';

export class SnapshotVersions {
  readonly #byProxy = new Map<string, { key: string; version: number }>();

  /**
   * Stamps `content` with the proxy's version: the previous version when the content is
   * unchanged, the next one otherwise (versions start at 1).
   */
  stamp(proxyId: string, content: SnapshotContent): { snapshot: Snapshot; changed: boolean } {
    const key = stableStringify(content);
    const previous = this.#byProxy.get(proxyId);
    if (previous && previous.key === key) return { snapshot: { version: previous.version, ...content }, changed: false };
    const version = (previous?.version ?? 0) + 1;
    this.#byProxy.set(proxyId, { key, version });
    return { snapshot: { version, ...content }, changed: true };
  }

  /** The version a proxy is at, if it was ever stamped. */
  current(proxyId: string): number | undefined {
    return this.#byProxy.get(proxyId)?.version;
  }
}
