// The kernel objects of one isolated mesh run: a bridge on the host, and per pod a
// network namespace joined to it by a veth pair, its hosts file and its netfilter table.
// Everything is named with a Trellis prefix and the run's id, and the run is recorded
// (with the runner's pid) in RUN_DIR before anything is made, so that a later run, or
// `trellis up --isolate-cleanup`, finds what a killed runner left and removes it: a
// record whose pid is gone, or an object whose run has no record, is stale.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TrellisError } from '../../errors.js';
import { collidingRoutes, type Subnet } from './subnet.js';

/** Namespaces are `trellis-<run>-<pod>`; host links `trl<run>…` (Linux allows 15 characters). */
export const NETNS_PREFIX = 'trellis-';
export const LINK_PREFIX = 'trl';
/** Where runs are recorded (tmpfs: a reboot, which removes every namespace too, clears it). */
export const RUN_DIR = '/run/trellis';
/** `ip netns exec` bind-mounts the files here over /etc in the namespace (hosts). */
export const NETNS_ETC = '/etc/netns';

const RUN_ID = /^[0-9a-f]{6}$/;

export interface PodNetwork {
  /** Short and unique in the run: `cp` for the control plane, else a number. */
  readonly key: string;
  readonly address: string;
  /** The hosts file the pod's processes see as /etc/hosts. */
  readonly hosts: string;
  /** nft -f text for the pod (src/interception/nft-rules.ts); absent: no rules (the control plane's pod). */
  readonly rules?: string;
}

export const netnsName = (runId: string, key: string): string => `${NETNS_PREFIX}${runId}-${key}`;
const bridgeName = (runId: string): string => `${LINK_PREFIX}${runId}br`;
const vethName = (runId: string, key: string): string => `${LINK_PREFIX}${runId}v${key}`;
const peerName = (runId: string, key: string): string => `${LINK_PREFIX}${runId}p${key}`;

/** Runs a program, resolving with stdout; a failure is TRELLIS_E_ISOLATION_FAILED naming the command. */
export function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const command = [cmd, ...args].join(' ');
        reject(new TrellisError('TRELLIS_E_ISOLATION_FAILED', { command, reason: (stderr.trim() || err.message).split('\n').slice(0, 5).join(' | ') }));
      } else {
        resolve(stdout);
      }
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs every `ip` command of `lines` in one process (`ip -batch`); `force` goes on past failures (cleanup). */
function ipBatch(lines: readonly string[], force = false, netns?: string): Promise<string> {
  if (lines.length === 0) return Promise.resolve('');
  return run('ip', [...(netns === undefined ? [] : ['-n', netns]), ...(force ? ['-force'] : []), '-batch', '-'], `${lines.join('\n')}\n`);
}

export class IsolatedNetwork {
  readonly runId: string;
  readonly subnet: Subnet;
  readonly gateway: string;
  readonly #pods: PodNetwork[] = [];
  #created = false;

  constructor(subnet: Subnet, gateway: string, runId: string = randomBytes(3).toString('hex')) {
    this.runId = runId;
    this.subnet = subnet;
    this.gateway = gateway;
  }

  get bridge(): string {
    return bridgeName(this.runId);
  }

  netns(key: string): string {
    return netnsName(this.runId, key);
  }

  /**
   * Records the run, removes stale runs, checks the subnet against the host's routes and
   * makes the bridge (with the host's address on it: the host reaches the pods' sidecars
   * and admin servers, never an app port, which is redirected to a sidecar).
   */
  async create(): Promise<void> {
    await mkdir(RUN_DIR, { recursive: true, mode: 0o700 });
    await writeFile(join(RUN_DIR, `${this.runId}.json`), JSON.stringify({ runId: this.runId, pid: process.pid, subnet: this.subnet.cidr }));
    this.#created = true;
    await cleanStaleRuns(this.runId);
    const routes = JSON.parse((await run('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])) || '[]') as { dst?: string; dev?: string }[];
    const clash = collidingRoutes(
      this.subnet,
      routes,
      (dev) => dev.startsWith(LINK_PREFIX) && dev.slice(LINK_PREFIX.length, LINK_PREFIX.length + 6) === this.runId,
    );
    if (clash.length > 0) {
      throw new TrellisError('TRELLIS_E_USAGE', {
        reason: `--isolate-subnet ${this.subnet.cidr} overlaps routes of this machine (${clash.join(', ')}); give another private subnet, e.g. --isolate-subnet 10.214.0.0/16`,
      });
    }
    const br = this.bridge;
    await ipBatch([`link add ${br} type bridge`, `addr add ${this.gateway}/${this.subnet.prefix} dev ${br}`, `link set ${br} up`]);
  }

  /** Makes one pod: its namespace, the veth pair to the bridge, its address, hosts file and rules. */
  async addPod(pod: PodNetwork): Promise<string> {
    const ns = this.netns(pod.key);
    const veth = vethName(this.runId, pod.key);
    const peer = peerName(this.runId, pod.key);
    this.#pods.push(pod);
    const etc = join(NETNS_ETC, ns);
    await mkdir(etc, { recursive: true });
    await writeFile(join(etc, 'hosts'), pod.hosts);
    await ipBatch([`netns add ${ns}`, `link add ${veth} type veth peer name ${peer} netns ${ns}`, `link set ${veth} master ${this.bridge} up`]);
    await ipBatch([`link set ${peer} name eth0`, `addr add ${pod.address}/${this.subnet.prefix} dev eth0`, 'link set eth0 up', 'link set lo up'], false, ns);
    if (pod.rules !== undefined) await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], pod.rules);
    return ns;
  }

  /** Removes everything of this run (processes still in its namespaces are killed first). */
  async destroy(): Promise<void> {
    if (!this.#created) return;
    await removeRun(this.runId);
  }
}

/** Kills what runs in a run's namespaces and removes its namespaces, links, hosts files and record. Never throws. */
export async function removeRun(runId: string): Promise<void> {
  if (!RUN_ID.test(runId)) return;
  const names = (await listNetns()).filter((n) => n.startsWith(`${NETNS_PREFIX}${runId}-`));
  for (const ns of names) {
    const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => '')).split(/\s+/).filter((p) => /^\d+$/.test(p));
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
  }
  const links = (await listLinks()).filter((l) => l.startsWith(`${LINK_PREFIX}${runId}`));
  // Links first: a veth's end in a namespace goes with the namespace, the host end with the bridge's deletion or its own.
  await ipBatch([...links.map((l) => `link del ${l}`), ...names.map((n) => `netns del ${n}`)], true).catch(() => undefined);
  for (const ns of names) await rm(join(NETNS_ETC, ns), { recursive: true, force: true }).catch(() => undefined);
  const leftEtc = await readdir(NETNS_ETC).catch(() => [] as string[]);
  for (const d of leftEtc) if (d.startsWith(`${NETNS_PREFIX}${runId}-`)) await rm(join(NETNS_ETC, d), { recursive: true, force: true }).catch(() => undefined);
  await rm(join(RUN_DIR, `${runId}.json`), { force: true });
}

/**
 * Removes every run whose runner is gone (its record's pid is not alive), and every
 * Trellis-named object whose run has no record. `except`: this process's own run.
 * Returns the runs removed.
 */
export async function cleanStaleRuns(except?: string): Promise<string[]> {
  const live = new Set<string>();
  const stale = new Set<string>();
  for (const f of await readdir(RUN_DIR).catch(() => [] as string[])) {
    const runId = f.replace(/\.json$/, '');
    if (!RUN_ID.test(runId) || runId === except) continue;
    let pid = 0;
    try {
      pid = Number((JSON.parse(await readFile(join(RUN_DIR, f), 'utf8')) as { pid?: unknown }).pid);
    } catch {
      /* unreadable: stale */
    }
    if (pid > 0 && alive(pid)) live.add(runId);
    else stale.add(runId);
  }
  const seen = [
    ...(await listNetns()).filter((n) => n.startsWith(NETNS_PREFIX)).map((n) => n.slice(NETNS_PREFIX.length, NETNS_PREFIX.length + 6)),
    ...(await listLinks()).filter((l) => l.startsWith(LINK_PREFIX)).map((l) => l.slice(LINK_PREFIX.length, LINK_PREFIX.length + 6)),
    ...(await readdir(NETNS_ETC).catch(() => [] as string[]))
      .filter((n) => n.startsWith(NETNS_PREFIX))
      .map((n) => n.slice(NETNS_PREFIX.length, NETNS_PREFIX.length + 6)),
  ];
  for (const id of seen) if (RUN_ID.test(id) && id !== except && !live.has(id)) stale.add(id);
  for (const id of stale) await removeRun(id);
  return [...stale];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function listNetns(): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']).catch(() => '');
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

async function listLinks(): Promise<string[]> {
  const out = await run('ip', ['-j', 'link', 'show']).catch(() => '[]');
  try {
    return (JSON.parse(out || '[]') as { ifname?: string }[]).flatMap((l) => (typeof l.ifname === 'string' ? [l.ifname] : []));
  } catch {
    return [];
  }
}

/**
 * Capabilities an app in a pod loses (from its bounding set, so no child gets them back):
 * CAP_NET_ADMIN would let it rewrite its pod's rules or take another pod's address (say,
 * the control plane's, whose probes reach app ports directly), CAP_NET_RAW would let it
 * forge packets, CAP_SYS_ADMIN would let it enter another namespace. As in Kubernetes,
 * where a container gets neither NET_ADMIN nor NET_RAW nor SYS_ADMIN unless asked, and
 * only the init container that writes the rules has NET_ADMIN. The app keeps root's other
 * powers (an app may still create users, as the shop's Postgres does); becoming the
 * sidecar's uid gets it around its own pod's rules, not through another pod's sidecar,
 * which takes mutual TLS only (STRICT) and whose key never leaves the sidecar.
 */
export const APP_DROPPED_CAPS = ['net_admin', 'net_raw', 'sys_admin'] as const;

/** Starts an app's `argv` in namespace `ns` without APP_DROPPED_CAPS: the command line a supervisor runs. */
export function appInNetns(ns: string, argv: readonly string[]): string[] {
  return inNetns(ns, ['setpriv', '--inh-caps=-all', `--bounding-set=${APP_DROPPED_CAPS.map((c) => `-${c}`).join(',')}`, '--', ...argv]);
}

/** Starts `argv` inside namespace `ns` (with its hosts file), as `uid` when given: the command line a supervisor runs. */
export function inNetns(ns: string, argv: readonly string[], uid?: number): string[] {
  const as = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--'];
  return ['ip', 'netns', 'exec', ns, ...as, ...argv];
}
