// Test helper: runs `trellis up` as a real child process on a mesh file, waits until it
// is up, reads its state.json, and stops it (checking nothing is left behind).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { MeshState } from '../../src/runner/local-mesh.js';
import { eventually } from './eventually.js';
import { adminHeaders, resolveAdminToken, TRELLIS_HOME_ENV } from '../../src/security/admin-token.js';

// The control planes the tests start leave the pointer to their admin token (for the CLI)
// in $TRELLIS_HOME: one folder per test process, not the user's ~/.trellis. The meshes
// and commands the tests spawn inherit it, so `trellis status` and friends find the token
// with no flag, as a user's do.
if (process.env[TRELLIS_HOME_ENV] === undefined) {
  const home = mkdtempSync(join(tmpdir(), 'trellis-home-'));
  process.env[TRELLIS_HOME_ENV] = home;
  process.on('exit', () => rmSync(home, { recursive: true, force: true }));
}

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const TRELLIS = join(REPO, 'bin', 'trellis.js');

/** A public URL of a mesh, and the CA that vouches for it when it is HTTPS (the localhost certificate's). */
export interface PublicEndpoint {
  url: string;
  ca?: string;
}

export interface RunningMesh {
  child: ChildProcess;
  state: MeshState;
  /** Where service NAME is public (its URL in state.json, with the local CA for HTTPS). */
  public(service: string): PublicEndpoint;
  output: () => string;
  stop(): Promise<number | null>;
}

export async function meshUp(meshFile: string, stateDir: string, extraArgs: string[] = [], timeoutMs = 90_000): Promise<RunningMesh> {
  // Prometheus only for the tests that ask for it (`--prometheus`): it costs a busy machine memory and CPU.
  const prometheus = extraArgs.includes('--prometheus') ? [] : ['--prometheus', 'off'];
  const child = spawn(process.execPath, [TRELLIS, 'up', meshFile, '--admin', '127.0.0.1:0', '--state-dir', stateDir, ...prometheus, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: REPO,
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`trellis up did not come up within ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const check = (): void => {
      if (out.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`trellis up exited with ${code}:\n${out}`));
    });
  });
  const state = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')) as MeshState;
  const ca = state.localCa !== undefined ? readFileSync(state.localCa, 'utf8') : undefined;
  return {
    child,
    state,
    public(service) {
      const url = state.publicUrls[service];
      assert.ok(url !== undefined, `${service} has a public URL (${JSON.stringify(state.publicUrls)})`);
      return { url, ...(ca !== undefined && url.startsWith('https:') ? { ca } : {}) };
    },
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGINT');
      return exited;
    },
  };
}

export const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });
const keepAliveTls = new Map<string, https.Agent>();

export function request(
  port: number | PublicEndpoint,
  path = '/',
  headers: Record<string, string> = {},
  agent: http.Agent | false = keepAlive,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    };
    let req: http.ClientRequest;
    if (typeof port === 'number') {
      req = http.request({ host: '127.0.0.1', port, path, headers, agent }, onResponse);
    } else {
      // A public endpoint: its URL's port, over HTTPS verified against its CA when it is HTTPS.
      const u = new URL(port.url);
      if (u.protocol === 'https:') {
        let tlsAgent = keepAliveTls.get(port.ca ?? '');
        if (tlsAgent === undefined)
          keepAliveTls.set(port.ca ?? '', (tlsAgent = new https.Agent({ keepAlive: true, maxSockets: 16, ...(port.ca ? { ca: port.ca } : {}) })));
        req = https.request(
          {
            host: '127.0.0.1',
            servername: u.hostname,
            port: Number(u.port),
            path,
            headers,
            agent: agent === false ? false : tlsAgent,
            ...(port.ca ? { ca: port.ca } : {}),
          },
          onResponse,
        );
      } else {
        req = http.request({ host: '127.0.0.1', port: Number(u.port), path, headers, agent }, onResponse);
      }
    }
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** GETs JSON; a control plane's admin API is sent its token (found as the CLI finds it). */
export async function getJson<T>(url: string): Promise<T> {
  const token = await resolveAdminToken({ url: new URL(url).origin });
  const res = await fetch(url, { headers: adminHeaders(token) });
  return (await res.json()) as T;
}

/** True when a process with this pid still exists. */
export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits (boundedly) until none of `pids` exists: a process its parent has just been
 * told to end may take a moment to be reaped, one left behind never goes.
 */
export async function allGone(pids: (number | undefined)[]): Promise<void> {
  await eventually(() => {
    for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} is gone after stop`);
  });
}

/**
 * Stops a mesh as Ctrl-C does, checks that `trellis up` exited 0 and that none of its
 * processes (control plane, apps, sidecars, ingress) is left, then removes `dir`.
 */
export async function stopMesh(mesh: RunningMesh | undefined, dir?: string): Promise<void> {
  const pids = [
    mesh?.state.controlPid,
    ...(mesh?.state.instances ?? []).flatMap((i) => [i.appPid, i.sidecarPid]),
    mesh?.state.ingress?.pid,
    ...(mesh?.state.gateways ?? []).map((g) => g.pid),
    mesh?.state.prometheus?.pid,
  ];
  const code = await mesh?.stop();
  if (mesh) assert.equal(code, 0, `trellis up exits 0 on SIGINT; its last output:\n${mesh.output().slice(-3000)}`);
  await allGone(pids);
  const storage = mesh?.state.prometheus?.storageDir;
  if (storage !== undefined) assert.equal(existsSync(storage), false, "Prometheus's storage is removed with the mesh");
  if (dir) await rm(dir, { recursive: true, force: true });
}
