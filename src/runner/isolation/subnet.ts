// The private IPv4 subnet of an isolated mesh and the addresses drawn from it. The lower
// half holds the bridge's own address (the host's, .1), the control plane's pod (.2) and
// one address per instance; the upper half the services' virtual addresses, which never
// appear on a wire: every connection to one is redirected inside its pod (nft-rules.ts).
import { TrellisError } from '../../errors.js';

/** The default: unlikely to collide with home, office or cloud networks (10.0/16, 10.1/16, 192.168/16 are common). */
export const DEFAULT_ISOLATE_SUBNET = '10.213.0.0/16';

export interface Subnet {
  readonly base: number;
  readonly prefix: number;
  readonly cidr: string;
}

export function parseSubnet(cidr: string): Subnet {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const octets = m === null ? [] : m.slice(1, 5).map(Number);
  const prefix = m === null ? Number.NaN : Number(m[5]);
  if (m === null || octets.some((o) => o > 255) || !(prefix >= 8 && prefix <= 24)) {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `--isolate-subnet expects an IPv4 subnet from /8 to /24 such as ${DEFAULT_ISOLATE_SUBNET}, got "${cidr}"`,
    });
  }
  const raw = octets.reduce((n, o) => n * 256 + o, 0);
  const size = 2 ** (32 - prefix);
  const base = raw - (raw % size);
  return { base, prefix, cidr: `${toIp(base)}/${prefix}` };
}

export function toIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

function fromIp(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** Hands out the subnet's addresses: the gateway, the control plane, instances, and services' virtual addresses. */
export class SubnetPlan {
  readonly subnet: Subnet;
  readonly gateway: string;
  readonly control: string;
  #nextPod: number;
  #nextVip: number;
  readonly #half: number;

  constructor(subnet: Subnet) {
    this.subnet = subnet;
    this.#half = 2 ** (32 - subnet.prefix) / 2;
    this.gateway = toIp(subnet.base + 1);
    this.control = toIp(subnet.base + 2);
    this.#nextPod = subnet.base + 10;
    this.#nextVip = subnet.base + this.#half + 10;
  }

  pod(): string {
    if (this.#nextPod >= this.subnet.base + this.#half)
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `--isolate-subnet ${this.subnet.cidr} has no address left for another instance; give a larger one` });
    return toIp(this.#nextPod++);
  }

  vip(): string {
    if (this.#nextVip >= this.subnet.base + 2 * this.#half - 1)
      throw new TrellisError('TRELLIS_E_USAGE', {
        reason: `--isolate-subnet ${this.subnet.cidr} has no virtual address left for another service; give a larger one`,
      });
    return toIp(this.#nextVip++);
  }
}

/** Whether two subnets share any address. */
export function overlaps(a: Subnet, b: Subnet): boolean {
  const aEnd = a.base + 2 ** (32 - a.prefix);
  const bEnd = b.base + 2 ** (32 - b.prefix);
  return a.base < bEnd && b.base < aEnd;
}

/**
 * The routes of the host (`ip -j -4 route` output) that overlap `subnet`, except the
 * default route and those on devices `ours` says belong to a Trellis run (a stale one is
 * cleaned before this is asked).
 */
export function collidingRoutes(subnet: Subnet, routes: readonly { dst?: string; dev?: string }[], ours: (dev: string) => boolean): string[] {
  const out: string[] = [];
  for (const r of routes) {
    if (r.dst === undefined || r.dst === 'default' || (r.dev !== undefined && ours(r.dev))) continue;
    const [ip = '', len] = r.dst.split('/');
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) continue;
    const prefix = len === undefined ? 32 : Number(len);
    const raw = fromIp(ip);
    const size = 2 ** (32 - prefix);
    if (overlaps(subnet, { base: raw - (raw % size), prefix, cidr: r.dst })) out.push(`${r.dst}${r.dev === undefined ? '' : ` dev ${r.dev}`}`);
  }
  return out;
}
