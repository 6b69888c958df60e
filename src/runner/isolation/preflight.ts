// What `trellis up --isolate` needs of the machine, checked before anything is made:
// Linux, root (namespaces, veths and netfilter rules need CAP_NET_ADMIN and CAP_SYS_ADMIN),
// and the programs it drives: ip (iproute2), nft (nftables) and setpriv (util-linux, to
// run each sidecar as the mesh's uid). The error names every missing piece at once.
import { findOnPath } from '../on-path.js';
import { TrellisError } from '../../errors.js';

export const ISOLATION_PROGRAMS = { ip: 'iproute2', nft: 'nftables', setpriv: 'util-linux' } as const;

/** What is missing for isolation, one phrase each; empty when nothing is. */
export function isolationMissing(platform: string = process.platform, uid: number | undefined = process.getuid?.(), onPath = findOnPath): string[] {
  if (platform !== 'linux') return [`Linux (network namespaces and netfilter; this is ${platform})`];
  const missing: string[] = [];
  if (uid !== 0) missing.push('root (run it with sudo: namespaces and netfilter rules need CAP_NET_ADMIN and CAP_SYS_ADMIN)');
  for (const [exe, pkg] of Object.entries(ISOLATION_PROGRAMS)) {
    if (onPath(exe) === undefined) missing.push(`${exe} on PATH (Debian package ${pkg}; scripts/install-test-deps.sh installs it)`);
  }
  return missing;
}

/** Throws TRELLIS_E_ISOLATION_UNAVAILABLE naming what is missing. */
export function assertIsolationAvailable(): void {
  const missing = isolationMissing();
  if (missing.length > 0) throw new TrellisError('TRELLIS_E_ISOLATION_UNAVAILABLE', { missing: missing.join('; ') });
}
