// A sidecar's memory in a big mesh (issue 17's target: a sidecar in a 1,000-service mesh
// that calls 5 of them stays within ±5 MB of the same sidecar in a small mesh). A real
// `trellis control` with a generated mesh file of S services (each with one instance: a
// simulated proxy on the real stream protocol, bench/scale.ts, so every service has an
// endpoint the control plane health-checks) and one real `trellis proxy` whose service
// calls 5 of them. Sampled after settling (idle) and again after a route edit to a service
// the sidecar does not call: its RSS (from /proc) and heap used (its own /metrics), the
// upstreams its snapshot holds (/config), and whether the edit reached it at all (its
// snapshot version moved). The big mesh and the small one alternate, a fresh mesh per
// round, so drift of the shared machine hits both alike.
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { BOOTSTRAP_SECRET_ENV, CREDENTIAL_ENV, mintCredential, newBootstrapSecret } from '../src/security/bootstrap-credential.js';
import { median } from './report.js';
import { rssMb, sampleGroups } from './resources.js';
import { SimProxy, openStream } from './scale.js';
import { type Managed, type Processes, freePort, proxyNodeFlags, waitFor200 } from './targets.js';

export interface BigMeshOptions {
  readonly procs: Processes;
  readonly repoRoot: string;
  readonly dir: string;
  /** The mesh sizes to compare (services), e.g. 8 and 1,000. */
  readonly sizes: readonly number[];
  /** Upstreams the measured sidecar's service calls. */
  readonly calls: number;
  readonly rounds: number;
  /** Seconds of quiet before each sample. */
  readonly settleS: number;
  readonly log: (msg: string) => void;
}

/** The sidecar at one moment. */
export interface SidecarSample {
  readonly rssMb: number;
  readonly heapUsedMb: number | undefined;
  /** Its snapshot's version. */
  readonly version: number | undefined;
  /** The upstreams its snapshot holds. */
  readonly upstreams: readonly string[];
}

export interface BigMeshRound {
  readonly services: number;
  /** Simulated instances that got a snapshot (one per service). */
  readonly instances: number;
  readonly idle: SidecarSample;
  /** After a route edit to a service the sidecar does not call. */
  readonly afterChange: SidecarSample;
  /** Upstreams in its snapshot that its service does not call (issue 17: none). */
  readonly foreign: readonly string[];
  /** Whether the edit elsewhere changed the sidecar's snapshot (issue 17: it should not). */
  readonly receivedForeignChange: boolean;
  /** Whether the edit reached the edited service's callers (so it was applied at all). */
  readonly editReachedCallers: boolean;
}

export interface BigMeshResult {
  readonly calls: number;
  readonly rounds: readonly BigMeshRound[];
}

function names(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `svc-${i}`);
}

/** What the sidecar's service (`client`) calls: the first `calls` services. */
function calledBy(o: { calls: number }, services: number): string[] {
  return names(Math.min(o.calls, services));
}

function meshYaml(services: number, calls: number): string {
  const all = names(services);
  const lines = ['apiVersion: trellis.dev/v1alpha1', 'kind: Mesh', 'metadata:', '  name: bigmesh', 'spec:', '  include: [routes.yaml]', '  services:'];
  lines.push('    - name: client', '      protocol: http', `      upstreams: [${calledBy({ calls }, services).join(', ')}]`);
  for (const [i, name] of all.entries()) {
    // Each service calls the next five, so the mesh's other proxies are as busy as a real mesh's.
    const up = Array.from({ length: Math.min(5, services - 1) }, (_, k) => all[(i + 1 + k) % services]);
    lines.push(
      `    - name: ${name}`,
      '      protocol: http',
      `      upstreams: [${up.join(', ')}]`,
      '      health:',
      '        http: { path: /healthz }',
      '        interval: 5s',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** One HTTPRoute per service; the last service's (which the sidecar does not call) carries `marker`. */
function routesYaml(services: number, marker: string): string {
  return names(services)
    .map(
      (name, i) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ${name}-route
spec:
  parentRefs:
    - { group: "", kind: Service, name: ${name} }
  rules:
    - matches:
        - path: { type: PathPrefix, value: /${i === services - 1 ? marker : 'api'} }
      backendRefs:
        - { name: ${name}, port: 80 }
`,
    )
    .join('---\n');
}

function getText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

async function sampleSidecar(m: Managed, admin: string): Promise<SidecarSample> {
  const pid = m.child.pid ?? -1;
  const g = sampleGroups([pid])?.get(pid);
  if (!g || g.processes === 0) throw new Error(`${m.name}: not running (${m.output().slice(-300)})`);
  const metrics = (await getText(`${admin}/metrics`)).body;
  const heap = /^trellis_proxy_nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)$/m.exec(metrics)?.[1];
  const config = JSON.parse((await getText(`${admin}/config`)).body) as { snapshot?: { version?: number; upstreams?: Record<string, unknown> } };
  return {
    rssMb: rssMb(g.rssKb),
    heapUsedMb: heap === undefined ? undefined : Number(heap) / 2 ** 20,
    version: config.snapshot?.version,
    upstreams: Object.keys(config.snapshot?.upstreams ?? {}).sort(),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One fresh mesh of `services` services: control plane, simulated instances, the sidecar; sampled twice. */
async function oneMesh(o: BigMeshOptions, services: number, round: number): Promise<BigMeshRound> {
  const dir = path.join(o.dir, `bigmesh-${services}-${round}`);
  mkdirSync(dir, { recursive: true });
  const meshFile = path.join(dir, 'mesh.yaml');
  writeFileSync(meshFile, meshYaml(services, o.calls));
  writeFileSync(path.join(dir, 'routes.yaml'), routesYaml(services, 'before'));
  const secret = newBootstrapSecret();
  const [cpPort, appPort, inboundPort, adminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  // Every app (the simulated instances' at 127.1.x.y, the sidecar's at 127.0.0.1): one server answering 200.
  const apps = http.createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => apps.listen(appPort, '0.0.0.0', r));
  const started: Managed[] = [];
  const sims: SimProxy[] = [];
  const trellis = path.join(o.repoRoot, 'bin', 'trellis.js');
  try {
    const cp = o.procs.start('trellis control', process.execPath, [trellis, 'control', '--config', meshFile, '--admin', `127.0.0.1:${cpPort}`], dir, {
      [BOOTSTRAP_SECRET_ENV]: secret,
      TRELLIS_HOME: path.join(dir, 'home'),
    });
    started.push(cp);
    await waitFor200(`http://127.0.0.1:${cpPort}/healthz`, [cp], 30_000);
    // One simulated instance per service, 32 at a time.
    let next = 0;
    const all = names(services);
    const connectOne = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        if (i >= services) return;
        const service = all[i]!;
        const id = `${service}-0`;
        const host = `127.1.${Math.floor(i / 250) % 256}.${(i % 250) + 1}`;
        const hp = { host, port: appPort };
        const proxy = { id, service, version: 'default', kind: 'sidecar' as const, app: hp, inbound: hp, admin: hp, upstreams: [], pid: 200_000 + i };
        const hello = { type: 'hello', proxy, credential: mintCredential(secret, { kind: 'sidecar', service, id }) };
        try {
          sims.push(new SimProxy(id, service, await openStream(cpPort, hello, host, ''), () => {}));
        } catch (e) {
          o.log(`bigmesh ${services}: ${id} could not connect: ${(e as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 32 }, connectOne));
    const nodeFlags = await proxyNodeFlags(o.repoRoot);
    const admin = `http://127.0.0.1:${adminPort}`;
    const sidecar = o.procs.start(
      'trellis proxy (client-0)',
      process.execPath,
      [
        ...nodeFlags,
        trellis,
        'proxy',
        '--service',
        'client',
        '--id',
        'client-0',
        '--app',
        `127.0.0.1:${appPort}`,
        '--inbound',
        `127.0.0.1:${inboundPort}`,
        '--admin',
        `127.0.0.1:${adminPort}`,
        '--control',
        `http://127.0.0.1:${cpPort}`,
        '--access-log',
        'off',
      ],
      dir,
      { [CREDENTIAL_ENV]: mintCredential(secret, { kind: 'sidecar', service: 'client', id: 'client-0' }) },
    );
    started.push(sidecar);
    await waitFor200(`${admin}/ready`, [cp, sidecar], 60_000);
    // Settled: every simulated instance has a snapshot, then the quiet period.
    const deadline = performance.now() + 120_000;
    while (sims.some((s) => s.snapshots === 0) && performance.now() < deadline) await sleep(100);
    await sleep(o.settleS * 1000);
    const idle = await sampleSidecar(sidecar, admin);
    // The edit goes to the last service; the simulated instances of its callers (the five
    // services before it) watch for it, so the table can say the edit was applied.
    const marker = `m${Date.now().toString(36)}`;
    const callers = new Set(all.filter((_, i) => i < services - 1 && i + 5 >= services - 1));
    const watchers = sims.filter((s) => callers.has(s.service));
    for (const s of watchers) s.watch(marker);
    writeFileSync(path.join(dir, 'routes.yaml'), routesYaml(services, marker));
    const editDeadline = performance.now() + 60_000;
    while (watchers.some((s) => s.markerAt === 0) && performance.now() < editDeadline) await sleep(50);
    await sleep(o.settleS * 1000);
    const afterChange = await sampleSidecar(sidecar, admin);
    const called = new Set(calledBy(o, services));
    return {
      services,
      instances: sims.filter((s) => s.snapshots > 0).length,
      idle,
      afterChange,
      foreign: afterChange.upstreams.filter((u) => !called.has(u)),
      receivedForeignChange: idle.version !== afterChange.version,
      editReachedCallers: watchers.length > 0 && watchers.every((s) => s.markerAt > 0),
    };
  } finally {
    for (const s of sims) s.socket.destroy();
    await Promise.all(started.reverse().map((m) => o.procs.stop(m)));
    apps.closeAllConnections();
    await new Promise((r) => apps.close(r));
  }
}

export async function runBigMesh(o: BigMeshOptions): Promise<BigMeshResult> {
  const rounds: BigMeshRound[] = [];
  for (let r = 0; r < o.rounds; r++) {
    // Alternate which size goes first, so neither always runs on the warmer machine.
    const order = r % 2 === 0 ? o.sizes : [...o.sizes].reverse();
    for (const services of order) {
      o.log(`bigmesh: round ${r + 1}/${o.rounds}, ${services} services`);
      rounds.push(await oneMesh(o, services, r));
    }
  }
  return { calls: o.calls, rounds };
}

/** Medians per mesh size, and the difference of each size from the smallest. */
export function formatBigMesh(r: BigMeshResult): string {
  const sizes = [...new Set(r.rounds.map((x) => x.services))].sort((a, b) => a - b);
  const mb = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(1));
  const med = (services: number, f: (x: BigMeshRound) => number | undefined): number | undefined =>
    median(
      r.rounds
        .filter((x) => x.services === services)
        .map(f)
        .filter((v): v is number => v !== undefined),
    );
  const lines = [
    `Sidecar memory in a big mesh (MB; median of ${r.rounds.length / Math.max(1, sizes.length)} fresh meshes per size; the sidecar's service calls ${r.calls})`,
    'services  instances  idle RSS  idle heap  after-change RSS  after-change heap  Δ idle RSS  upstreams held  foreign  got foreign change  edit applied',
  ];
  const base = sizes[0] === undefined ? undefined : med(sizes[0], (x) => x.idle.rssMb);
  for (const s of sizes) {
    const xs = r.rounds.filter((x) => x.services === s);
    const idleRss = med(s, (x) => x.idle.rssMb);
    const delta = idleRss !== undefined && base !== undefined ? idleRss - base : undefined;
    lines.push(
      [
        String(s).padEnd(8),
        String(med(s, (x) => x.instances) ?? '-').padStart(9),
        mb(idleRss).padStart(9),
        mb(med(s, (x) => x.idle.heapUsedMb)).padStart(10),
        mb(med(s, (x) => x.afterChange.rssMb)).padStart(17),
        mb(med(s, (x) => x.afterChange.heapUsedMb)).padStart(18),
        (delta === undefined ? '-' : `${delta >= 0 ? '+' : ''}${delta.toFixed(1)}`).padStart(11),
        String(Math.max(...xs.map((x) => x.afterChange.upstreams.length))).padStart(15),
        String(Math.max(...xs.map((x) => x.foreign.length))).padStart(8),
        `${xs.filter((x) => x.receivedForeignChange).length}/${xs.length}`.padStart(19),
        `${xs.filter((x) => x.editReachedCallers).length}/${xs.length}`.padStart(13),
      ].join(' '),
    );
  }
  lines.push('Target (issue 17): the big mesh within ±5 MB of the small one; no upstream it does not call; a route edit elsewhere reaches it not at all.');
  return `${lines.join('\n')}\n`;
}
