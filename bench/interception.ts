// Transparent interception against the explicit-port path (issue 16): a mesh run with
// `trellis up --isolate` (its network namespaces, bridge and nftables rules made by the
// runner, and removed by it, or by this scenario by the run's id if the runner did not),
// a client pod calling an echo service through its sidecar. wrk runs inside the client's
// pod, as an app there, against the same sidecar listener two ways:
//
//   intercepted  http://echo:8080/          (the name in the pod's hosts file → the virtual
//                                            address → nat output REDIRECT to the listener)
//   explicit     http://127.0.0.1:15100/    (the listener's own port, as without --isolate)
//
// each with keep-alive (the nat rule is looked up once per connection) and with
// `Connection: close` (once per request: the case where interception costs most). Rounds
// alternate the two paths so a drift of the machine is shared. Bounded: each wrk run has
// its deadline, the mesh its start timeout, and everything is stopped in `finally`.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isolationMissing } from '../src/runner/isolation/preflight.js';
import { appInNetns, removeRun } from '../src/runner/isolation/network.js';
import { POD_PORTS } from '../src/runner/isolation/pods.js';
import type { MeshState } from '../src/runner/local-mesh.js';
import { runWrk, type WrkResult } from './wrk.js';

export interface InterceptionOptions {
  readonly repoRoot: string;
  readonly dir: string;
  readonly wrk: string;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly rounds: number;
  readonly log: (msg: string) => void;
}

export interface InterceptionRow {
  readonly path: 'intercepted' | 'explicit';
  readonly connection: 'keep-alive' | 'close';
  readonly rounds: readonly WrkResult[];
}

export interface InterceptionResult {
  readonly rows: readonly {
    path: InterceptionRow['path'];
    connection: InterceptionRow['connection'];
    rps: number[];
    p50Us: number[];
    p99Us: number[];
    errors: number;
  }[];
}

const SUBNET = '10.227.0.0/16';
const ECHO_PORT = 8080;

function meshFile(repoRoot: string): string {
  const echo = path.join(repoRoot, 'test/fixtures/apps/echo-server.js');
  return `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: bench-interception
spec:
  services:
    - name: client
      protocol: http
      command: node ${echo}
      port: 8000
      upstreams: [echo]
      health: { http: { path: /healthz }, interval: 1s }
    - name: echo
      protocol: http
      command: node ${echo}
      port: ${ECHO_PORT}
      health: { http: { path: /healthz }, interval: 1s }
`;
}

/** `trellis up --isolate` on the scenario's mesh; resolves once it printed that it is up. */
function meshUp(o: InterceptionOptions, file: string, stateDir: string): { child: ChildProcess; up: Promise<MeshState> } {
  const child = spawn(
    process.execPath,
    [
      path.join(o.repoRoot, 'bin/trellis.js'),
      'up',
      file,
      '--isolate',
      '--isolate-subnet',
      SUBNET,
      '--admin',
      '127.0.0.1:0',
      '--state-dir',
      stateDir,
      '--prometheus',
      'off',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const up = new Promise<MeshState>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`trellis up --isolate did not come up within 120 s:\n${out.slice(-2000)}`)), 120_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve(JSON.parse(readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as MeshState);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`trellis up --isolate exited with ${code}:\n${out.slice(-2000)}`));
    });
  });
  return { child, up };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(killer);
}

export async function runInterception(o: InterceptionOptions): Promise<InterceptionResult> {
  const missing = isolationMissing();
  if (missing.length > 0) throw new Error(`the interception scenario needs ${missing.join('; ')}`);
  const file = path.join(o.dir, 'interception-mesh.yaml');
  writeFileSync(file, meshFile(o.repoRoot));
  const { child, up } = meshUp(o, file, path.join(o.dir, 'interception-state'));
  let runId = '';
  try {
    const state = await up;
    runId = state.isolation?.runId ?? '';
    const netns = state.isolation?.pods['client-0']?.netns;
    if (netns === undefined) throw new Error('the client has no pod');
    // wrk runs as an app of the pod does (appInNetns): the same rules apply to it.
    const prefix = appInNetns(netns, []);
    const urls = { intercepted: `http://echo:${ECHO_PORT}/`, explicit: `http://127.0.0.1:${POD_PORTS.upstream}/` } as const;
    const rows: InterceptionRow[] = [];
    for (const connection of ['keep-alive', 'close'] as const) {
      const headers = connection === 'close' ? { Connection: 'close' } : undefined;
      const byPath = { intercepted: [] as WrkResult[], explicit: [] as WrkResult[] };
      for (const p of ['intercepted', 'explicit'] as const) {
        // Warm-up: the sidecar's pool, JIT, conntrack.
        await runWrk({
          wrk: o.wrk,
          url: urls[p],
          threads: 1,
          connections: o.connections,
          durationS: o.warmupS,
          timeoutS: 5,
          prefix,
          ...(headers ? { headers } : {}),
        });
      }
      for (let r = 0; r < o.rounds; r++) {
        const order = r % 2 === 0 ? (['intercepted', 'explicit'] as const) : (['explicit', 'intercepted'] as const);
        for (const p of order) {
          const res = await runWrk({
            wrk: o.wrk,
            url: urls[p],
            threads: 1,
            connections: o.connections,
            durationS: o.durationS,
            timeoutS: 5,
            prefix,
            ...(headers ? { headers } : {}),
          });
          o.log(`interception ${p} ${connection} round ${r + 1}: ${res.rps.toFixed(0)} req/s, p99 ${(res.latencyUs.p99 / 1000).toFixed(2)} ms`);
          byPath[p].push(res);
        }
      }
      for (const p of ['intercepted', 'explicit'] as const) rows.push({ path: p, connection, rounds: byPath[p] });
    }
    return {
      rows: rows.map((r) => ({
        path: r.path,
        connection: r.connection,
        rps: r.rounds.map((x) => x.rps),
        p50Us: r.rounds.map((x) => x.latencyUs.p50),
        p99Us: r.rounds.map((x) => x.latencyUs.p99),
        errors: r.rounds.reduce((n, x) => n + x.non2xx + x.socketErrors.connect + x.socketErrors.read + x.socketErrors.write + x.socketErrors.timeout, 0),
      })),
    };
  } finally {
    await stop(child);
    // The runner removes its run on the way out; this is for a runner that could not.
    if (runId !== '') await removeRun(runId);
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : (s[Math.floor((s.length - 1) / 2)] ?? 0);
};

export function formatInterception(r: InterceptionResult): string {
  const lines = ['Interception (trellis up --isolate): wrk in the client pod, the same sidecar listener by name (nat REDIRECT) or by port', ''];
  lines.push('connection  path         req/s (median)  p50 ms  p99 ms  errors');
  for (const row of r.rows) {
    lines.push(
      `${row.connection.padEnd(11)} ${row.path.padEnd(12)} ${median(row.rps).toFixed(0).padStart(14)}  ${(median(row.p50Us) / 1000).toFixed(2).padStart(6)}  ${(median(row.p99Us) / 1000).toFixed(2).padStart(6)}  ${String(row.errors).padStart(6)}`,
    );
  }
  for (const connection of ['keep-alive', 'close'] as const) {
    const i = r.rows.find((x) => x.connection === connection && x.path === 'intercepted');
    const e = r.rows.find((x) => x.connection === connection && x.path === 'explicit');
    if (i && e && median(e.rps) > 0) lines.push(`${connection}: intercepted / explicit throughput ${(median(i.rps) / median(e.rps)).toFixed(3)}`);
  }
  return `${lines.join('\n')}\n`;
}
