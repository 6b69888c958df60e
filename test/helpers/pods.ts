// Test helper for isolated meshes (`trellis up --isolate`): runs a program inside a pod's
// network namespace as its app would run there (src/runner/isolation/network.ts
// appInNetns: root without NET_ADMIN, NET_RAW, SYS_ADMIN), or on the host, and reports
// how it ended, never throwing for a refused connection: the tests assert on the outcome.
import { execFile } from 'node:child_process';
import { appInNetns } from '../../src/runner/isolation/network.js';
import { REPO } from './mesh-run.js';

export interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `argv` (on the host when `netns` is undefined) with a bound on its time; resolves however it ends. */
export function runIn(netns: string | undefined, argv: readonly string[], timeoutMs = 20_000, env?: NodeJS.ProcessEnv): Promise<Ran> {
  const [cmd = '', ...args] = netns === undefined ? argv : appInNetns(netns, argv);
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: REPO, timeout: timeoutMs, killSignal: 'SIGKILL', env: env ?? process.env }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

/** Runs a Node ES module script in the pod (as its app would); resolves with its stdout, rejects on a non-zero exit. */
export async function nodeIn(netns: string | undefined, script: string, timeoutMs = 20_000): Promise<string> {
  const r = await runIn(netns, [process.execPath, '--input-type=module', '-e', script], timeoutMs);
  if (r.code !== 0) throw new Error(`node in ${netns ?? 'the host'} exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A script that connects to host:port and prints `connected`, or the error's code, or `timeout`. */
export const connectScript = (host: string, port: number): string =>
  `import net from 'node:net'; const s = net.connect(${port}, ${JSON.stringify(host)}); s.setTimeout(3000, () => { console.log('timeout'); process.exit(0); }); s.on('connect', () => { console.log('connected'); s.destroy(); }); s.on('error', (e) => console.log(e.code));`;

/** Sums the samples of a sidecar's /metrics whose line matches `pattern`. */
export async function metricSum(admin: { host: string; port: number }, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}
