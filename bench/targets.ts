// Starting and stopping what the bench measures: the upstream (one nginx answering a
// fixed 1 KB body) and the three proxy pairs in front of it (Trellis, nginx, HAProxy).
//
// Every process is started in its own process group with config, pid and log files in a
// temp folder, and is registered in one `Processes` set so that an error, SIGINT or
// SIGTERM in the harness still ends all of them. Nothing here starts a system service.
import { BOOTSTRAP_SECRET_ENV, CREDENTIAL_ENV, mintCredential, newBootstrapSecret } from '../src/security/bootstrap-credential.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** The upstream's answer to `GET /`: exactly 1024 bytes. */
export const BODY_1KB = makeBody(1024);

/** Paths the upstream answers besides `GET /`, for the body-size scenarios. */
export const UPSTREAM_PATHS = {
  /** `GET /10k`: 10,240 bytes. */
  get10k: { path: '/10k', bytes: 10 * 1024 },
  /** `GET /100k`: 102,400 bytes. */
  get100k: { path: '/100k', bytes: 100 * 1024 },
  /** `POST /post`: reads and discards the request body, answers the 1 KB body. */
  post: { path: '/post', bytes: 1024 },
} as const;

export function makeBody(n: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[i % alphabet.length];
  return s;
}

/** A started process, with the tail of what it printed (for error messages). */
export interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
  output(): string;
}

/** Every process the bench started; `stopAll()` ends them, `killAllSync()` is for exit paths. */
export class Processes {
  readonly #all = new Set<Managed>();
  readonly #groups = new Set<number>();

  /** Process-group ids of everything started (each child leads its own group). */
  get groups(): ReadonlySet<number> {
    return this.#groups;
  }

  /** `env`: variables added to this process's environment (a secret or credential, never a flag: `ps` shows flags). */
  start(name: string, command: string, args: readonly string[], cwd: string, env?: Readonly<Record<string, string>>): Managed {
    const child = spawn(command, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
    if (child.pid !== undefined) this.#groups.add(child.pid);
    let tail = '';
    const keep = (d: Buffer): void => {
      tail = (tail + d.toString()).slice(-4000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let done = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('error', (e) => {
        keep(Buffer.from(`\n${e.message}`));
        done = true;
        resolve({ code: -1, signal: null });
      });
      child.once('exit', (code, signal) => {
        done = true;
        resolve({ code, signal });
      });
    });
    const m: Managed = { name, child, exited, hasExited: () => done, output: () => tail.trim() };
    this.#all.add(m);
    void exited.then(() => this.#all.delete(m));
    return m;
  }

  /** Starts a process and waits until `ready` says it serves; one that never does is stopped and the error thrown. */
  async startReady(name: string, bin: string, args: readonly string[], cwd: string, ready: (m: Managed) => Promise<void>): Promise<Managed> {
    const m = this.start(name, bin, args, cwd);
    try {
      await ready(m);
    } catch (e) {
      await this.stop(m);
      throw e;
    }
    return m;
  }

  /** SIGTERM to the process group, then SIGKILL after `graceMs`. */
  async stop(m: Managed, graceMs = 3000): Promise<void> {
    if (m.hasExited()) return;
    signalGroup(m.child, 'SIGTERM');
    const timer = new Promise<'late'>((r) => setTimeout(() => r('late'), graceMs).unref());
    if ((await Promise.race([m.exited, timer])) === 'late') {
      signalGroup(m.child, 'SIGKILL');
      await Promise.race([m.exited, new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    // nginx workers or node children left behind in the group go too.
    signalGroup(m.child, 'SIGKILL');
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#all].map((m) => this.stop(m)));
  }

  /** Synchronous last resort for `process.on('exit')`. */
  killAllSync(): void {
    for (const m of this.#all) signalGroup(m.child, 'SIGKILL');
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/** A port the kernel says is free right now (bound to 0 and released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** One request (GET unless told) over a fresh connection; resolves with status and body length, never rejects. */
export function probe(
  url: string,
  timeoutMs = 1000,
  init: { method?: string; body?: Buffer } = {},
): Promise<{ status: number; bytes: number } | { error: string }> {
  return new Promise((resolve) => {
    const headers = init.body ? { 'Content-Length': String(init.body.length), 'Content-Type': 'application/octet-stream' } : undefined;
    const req = http.request(url, { method: init.method ?? 'GET', agent: false, timeout: timeoutMs, headers }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ error: e.message }));
    req.end(init.body);
  });
}

/**
 * Polls `url` until it answers 200, every process in `watch` is still running, and at
 * most `timeoutMs` has passed. Throws with the reason (and the output of a process that died).
 */
export async function waitFor200(url: string, watch: readonly Managed[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt';
  for (let attempt = 0; attempt < 1000 && Date.now() < deadline; attempt++) {
    const dead = watch.find((m) => m.hasExited());
    if (dead) {
      const r = await dead.exited;
      const out = dead.output().split('\n').slice(-3).join(' | ');
      throw new Error(`${dead.name} exited (${r.signal ?? `code ${r.code}`})${out ? `: ${out}` : ''}`);
    }
    const r = await probe(url);
    if ('status' in r && r.status === 200) return;
    last = 'status' in r ? `HTTP ${r.status}` : r.error;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`no 200 from ${url} within ${Math.round(timeoutMs / 1000)} s (last: ${last})`);
}

/** Where the peer binaries are. */
export interface Binaries {
  readonly nginx: string;
  readonly haproxy: string;
  readonly wrk: string;
}

/** Finds a binary on PATH or in the sbin folders (nginx and haproxy live in /usr/sbin). */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Version line of a binary (nginx prints it on stderr, haproxy on stdout). */
export function versionOf(bin: string, args: readonly string[]): string {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 5000 });
  return (
    `${r.stdout ?? ''}${r.stderr ?? ''}`
      .split('\n')
      .find((l) => l.trim())
      ?.trim() ?? 'unknown'
  );
}

/** A proxy process of a target, for its RSS and CPU (`role`: outbound or inbound). */
export interface TargetProcess {
  readonly role: 'outbound' | 'inbound';
  readonly managed: Managed;
}

/** A running target the load goes to; `stop()` ends its processes. */
export interface Target {
  readonly name: string;
  /** What the load client calls (HTTP targets: a URL; TCP targets: `tcp://127.0.0.1:PORT`). */
  readonly url: string;
  /** The proxies (none for direct), outbound first. */
  readonly processes?: readonly TargetProcess[];
  /** A Trellis pair's outbound proxy's admin address (`http://127.0.0.1:PORT`: /metrics). */
  readonly outboundAdmin?: string;
  /** A Trellis pair's control plane (its CPU counts where spans are received). */
  readonly control?: Managed;
  stop(): Promise<void>;
}

let cpuProfileDir: string | undefined;

/**
 * `--cpu-prof DIR`: every Trellis proxy (and a pair's control plane) started after this writes a V8 CPU profile
 * (`node --cpu-prof`) into DIR when it stops (a proxy stops cleanly on SIGTERM, which
 * is when Node writes it). Open the `.cpuprofile` files in Chrome DevTools or speedscope.
 */
export function profileProxiesInto(dir: string): void {
  mkdirSync(dir, { recursive: true });
  cpuProfileDir = path.resolve(dir);
}

/** The profiling flags of one proxy, named after its role so the files tell which is which. */
export function cpuProfFlags(label: string): string[] {
  return cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfileDir}`, `--cpu-prof-name=${label}-${Date.now()}.cpuprofile`];
}

/** `tcp://127.0.0.1:PORT` → the port. */
export function tcpPort(url: string): number {
  const m = /^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(url);
  if (!m) throw new Error(`not a loopback tcp:// address: ${url}`);
  return Number(m[1]);
}

/**
 * One round trip through an echo path on a fresh connection: sends `payload`, resolves
 * true when the same bytes came back within `timeoutMs`. Never rejects.
 */
export function echoProbe(port: number, timeoutMs = 1000, payload = Buffer.from('trellis-bench-echo-probe\n')): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => s.write(payload));
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= payload.length) done(got.subarray(0, payload.length).equals(payload));
    });
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

/** Like waitFor200 for a TCP echo path: polls until a round trip succeeds. */
export async function waitForEcho(port: number, watch: readonly Managed[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 1000 && Date.now() < deadline; attempt++) {
    const dead = watch.find((m) => m.hasExited());
    if (dead) {
      const r = await dead.exited;
      const out = dead.output().split('\n').slice(-3).join(' | ');
      throw new Error(`${dead.name} exited (${r.signal ?? `code ${r.code}`})${out ? `: ${out}` : ''}`);
    }
    if (await echoProbe(port)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`no echo through 127.0.0.1:${port} within ${Math.round(timeoutMs / 1000)} s`);
}

// ---------------------------------------------------------------------------
// nginx

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

export function nginxHead(dir: string, name: string, loadModule?: string): string {
  // Run as root when we are root so workers can use the 0700 temp folder.
  return `${loadModule ? `load_module ${loadModule};\n` : ''}${isRoot ? 'user root;\n' : ''}worker_processes 1;
daemon off;
master_process on;
pid ${dir}/${name}.pid;
error_log ${dir}/${name}.error.log warn;
events { worker_connections 4096; }
`;
}

export function nginxMain(dir: string, name: string, http: string): string {
  return `${nginxHead(dir, name)}http {
  access_log off;
  client_body_temp_path ${dir}/${name}-client-body;
  proxy_temp_path ${dir}/${name}-proxy;
  fastcgi_temp_path ${dir}/${name}-fastcgi;
  uwsgi_temp_path ${dir}/${name}-uwsgi;
  scgi_temp_path ${dir}/${name}-scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  server_tokens off;
${http}
}
`;
}

async function startNginx(procs: Processes, bin: string, dir: string, name: string, http: string, url: string): Promise<Managed> {
  const conf = path.join(dir, `${name}.conf`);
  writeFileSync(conf, nginxMain(dir, name, http));
  return procs.startReady(name, bin, ['-p', dir, '-e', path.join(dir, `${name}.error.log`), '-c', conf], dir, (m) => waitFor200(url, [m], 10_000));
}

/**
 * The upstream: one nginx worker answering as fast as anything here:
 * `GET /` with 1 KB (a `return`), `GET /10k` and `GET /100k` with fixed bodies (static
 * files, kept open), and `POST /post`, which reads and discards the request body
 * (nginx discards it before sending a `return` answer, keeping the connection) and
 * answers 1 KB.
 */
export async function startUpstream(procs: Processes, bins: Binaries, dir: string): Promise<Target & { port: number }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const files = path.join(dir, 'upstream-files');
  mkdirSync(files, { recursive: true });
  writeFileSync(path.join(files, '10k'), makeBody(UPSTREAM_PATHS.get10k.bytes));
  writeFileSync(path.join(files, '100k'), makeBody(UPSTREAM_PATHS.get100k.bytes));
  const m = await startNginx(
    procs,
    bins.nginx,
    dir,
    'upstream-nginx',
    `  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  server {
    listen 127.0.0.1:${port};
    default_type text/plain;
    client_max_body_size 1m;
    client_body_buffer_size 128k;
    location = ${UPSTREAM_PATHS.get10k.path} { root ${files}; try_files /10k =404; }
    location = ${UPSTREAM_PATHS.get100k.path} { root ${files}; try_files /100k =404; }
    location = ${UPSTREAM_PATHS.post.path} { return 200 "${BODY_1KB}"; }
    location / {
      return 200 "${BODY_1KB}";
    }
  }`,
    url,
  );
  return { name: 'upstream', url, port, stop: () => procs.stop(m) };
}

function nginxProxyServer(listen: number, next: number): string {
  return `  upstream next {
    server 127.0.0.1:${next};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass http://next;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`;
}

/**
 * Two proxies in a row: the inbound one (towards the backend) on `inner`, the outbound
 * one (the client's) on `outer`; if the second cannot start, the first is stopped.
 */
export async function startPair(
  procs: Processes,
  name: 'nginx' | 'haproxy',
  scheme: 'http' | 'tcp',
  start: (role: 'inbound' | 'outbound', listen: number, next: number) => Promise<Managed>,
  backendPort: number,
): Promise<Target> {
  const inner = await freePort();
  const outer = await freePort();
  const a = await start('inbound', inner, backendPort);
  let b: Managed;
  try {
    b = await start('outbound', outer, inner);
  } catch (e) {
    await procs.stop(a);
    throw e;
  }
  return {
    name,
    url: scheme === 'http' ? `http://127.0.0.1:${outer}/` : `tcp://127.0.0.1:${outer}`,
    processes: [
      { role: 'outbound', managed: b },
      { role: 'inbound', managed: a },
    ],
    stop: async () => void (await Promise.all([procs.stop(b), procs.stop(a)])),
  };
}

/** client → nginx → nginx → upstream, one worker each. */
export async function startNginxPair(procs: Processes, bins: Binaries, dir: string, upstreamPort: number): Promise<Target> {
  return startPair(
    procs,
    'nginx',
    'http',
    (role, listen, next) => startNginx(procs, bins.nginx, dir, `nginx-${role}`, nginxProxyServer(listen, next), `http://127.0.0.1:${listen}/`),
    upstreamPort,
  );
}

/** Where nginx's dynamic stream module is, or undefined when nginx cannot proxy TCP. */
export function nginxStreamModule(nginx: string): { load: string | undefined } | undefined {
  const v = spawnSync(nginx, ['-V'], { encoding: 'utf8', timeout: 5000 });
  const flags = `${v.stdout ?? ''}${v.stderr ?? ''}`;
  if (/--with-stream(\s|$)/.test(flags)) return { load: undefined }; // built in
  if (!/--with-stream=dynamic/.test(flags)) return undefined;
  const modulesPath = /--modules-path=(\S+)/.exec(flags)?.[1] ?? '/usr/lib/nginx/modules';
  for (const dir of [modulesPath, '/usr/lib/nginx/modules', '/usr/share/nginx/modules']) {
    const so = path.join(dir, 'ngx_stream_module.so');
    if (existsSync(so)) return { load: so };
  }
  return undefined;
}

async function startNginxStream(
  procs: Processes,
  bin: string,
  dir: string,
  name: string,
  module: string | undefined,
  listen: number,
  next: number,
): Promise<Managed> {
  const conf = path.join(dir, `${name}.conf`);
  writeFileSync(
    conf,
    `${nginxHead(dir, name, module)}stream {
  server {
    listen 127.0.0.1:${listen};
    proxy_pass 127.0.0.1:${next};
    proxy_connect_timeout 5s;
    proxy_timeout 30s;
  }
}
`,
  );
  return procs.startReady(name, bin, ['-p', dir, '-e', path.join(dir, `${name}.error.log`), '-c', conf], dir, (m) => waitForEcho(listen, [m], 10_000));
}

/** TCP: client → nginx stream → nginx stream → echo server, one worker each. Needs the stream module. */
export async function startNginxTcpPair(procs: Processes, bins: Binaries, dir: string, echoPort: number): Promise<Target> {
  const mod = nginxStreamModule(bins.nginx);
  if (!mod) {
    throw new Error('this nginx has no stream module (nginx-light builds it as a separate package, libnginx-mod-stream, which is not installed)');
  }
  return startPair(
    procs,
    'nginx',
    'tcp',
    (role, listen, next) => startNginxStream(procs, bins.nginx, dir, `nginx-tcp-${role}`, mod.load, listen, next),
    echoPort,
  );
}

// ---------------------------------------------------------------------------
// HAProxy

/**
 * An HAProxy config of one frontend and one backend. `tls`: what the bind and server lines
 * add for the TLS pairs (bench/tls-peers.ts: certificates, verification, SNI).
 */
export function haproxyConfig(listen: number, next: number, mode: 'http' | 'tcp' = 'http', tls: { bind?: string; server?: string } = {}): string {
  // No `log` lines: HAProxy logs nothing.
  const httpOptions = mode === 'http' ? '\n  option http-keep-alive\n  http-reuse always' : '';
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode ${mode}${httpOptions}
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 65s

frontend fe
  bind 127.0.0.1:${listen}${tls.bind ? ` ${tls.bind}` : ''}
  default_backend be

backend be
  server next 127.0.0.1:${next}${tls.server ? ` ${tls.server}` : ''}
`;
}

async function startHaproxy(
  procs: Processes,
  bin: string,
  dir: string,
  name: string,
  listen: number,
  next: number,
  mode: 'http' | 'tcp' = 'http',
): Promise<Managed> {
  const conf = path.join(dir, `${name}.cfg`);
  writeFileSync(conf, haproxyConfig(listen, next, mode));
  // -db: stay in the foreground, no daemon.
  return procs.startReady(name, bin, ['-db', '-f', conf], dir, (m) =>
    mode === 'http' ? waitFor200(`http://127.0.0.1:${listen}/`, [m], 10_000) : waitForEcho(listen, [m], 10_000),
  );
}

/** client → haproxy → haproxy → upstream, one thread each. */
export async function startHaproxyPair(procs: Processes, bins: Binaries, dir: string, upstreamPort: number): Promise<Target> {
  return startPair(procs, 'haproxy', 'http', (role, listen, next) => startHaproxy(procs, bins.haproxy, dir, `haproxy-${role}`, listen, next), upstreamPort);
}

/** TCP: client → haproxy → haproxy → echo server (`mode tcp`), one thread each. */
export async function startHaproxyTcpPair(procs: Processes, bins: Binaries, dir: string, echoPort: number): Promise<Target> {
  return startPair(
    procs,
    'haproxy',
    'tcp',
    (role, listen, next) => startHaproxy(procs, bins.haproxy, dir, `haproxy-tcp-${role}`, listen, next, 'tcp'),
    echoPort,
  );
}

// ---------------------------------------------------------------------------
// TCP echo server

/**
 * The TCP echo upstream: `dist/bench/echo-server.js` in its own Node process (so the
 * load client's event loop does not share a thread with it), on a free loopback port.
 */
export async function startEchoServer(procs: Processes, repoRoot: string, dir: string): Promise<Target & { port: number }> {
  const script = path.join(repoRoot, 'dist', 'bench', 'echo-server.js');
  if (!existsSync(script)) throw new Error(`the echo server is not built (${script} missing)`);
  const port = await freePort();
  const m = await procs.startReady('echo server', process.execPath, [script, '--port', String(port)], dir, (m) => waitForEcho(port, [m], 10_000));
  return { name: 'echo', url: `tcp://127.0.0.1:${port}`, port, stop: () => procs.stop(m) };
}

/**
 * An HTTP upstream that answers after `delayMs` (`dist/bench/slow-server.js`, its own
 * Node process), for the balancing scenario. `count()` asks it how many requests it answered.
 */
export async function startSlowServer(
  procs: Processes,
  repoRoot: string,
  dir: string,
  name: string,
  delayMs: number,
): Promise<Target & { port: number; count(): Promise<number> }> {
  const script = path.join(repoRoot, 'dist', 'bench', 'slow-server.js');
  if (!existsSync(script)) throw new Error(`the slow server is not built (${script} missing)`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const m = await procs.startReady(name, process.execPath, [script, '--port', String(port), '--delay-ms', String(delayMs)], dir, (m) =>
    waitFor200(url, [m], 10_000),
  );
  return {
    name,
    url,
    port,
    stop: () => procs.stop(m),
    count: async () => Number(await (await fetch(`${url}__count`)).text()),
  };
}

// ---------------------------------------------------------------------------
// Trellis

/**
 * client → trellis outbound sidecar → trellis inbound sidecar → upstream.
 *
 * This is the one place that knows how to start a Trellis pair: change it when the
 * CLI flags or the mesh file change. It starts the control plane with a two-service
 * mesh file, the inbound sidecar of `upstream` in front of the upstream (nginx, or the
 * echo server with `protocol: 'tcp'`), and the outbound sidecar of `bench-client` whose
 * local listener for `upstream` is what the load client calls; then waits (≤ 15 s)
 * until a GET through that listener is a 200 (TCP: an echo round trip succeeds).
 * Any failure throws with a reason, and everything started so far is stopped.
 */
export async function startTrellisPair(
  procs: Processes,
  repoRoot: string,
  dir: string,
  upstreamPort: number,
  protocol: 'http' | 'tcp' = 'http',
  /**
   * A named variant with more config (routes, policies) appended to the mesh file, in its
   * own folder, and optionally more instances of `upstream` (an inbound sidecar each, in
   * front of its own app port).
   */
  variant?: {
    readonly name: string;
    readonly yaml: string;
    readonly moreInstances?: readonly number[];
    /** Lines added under the Mesh's `spec:` (indented by two spaces), e.g. `telemetry:`. */
    readonly meshSpec?: string;
  },
): Promise<Target> {
  const trellis = path.join(repoRoot, 'bin', 'trellis.js');
  if (!existsSync(path.join(repoRoot, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('the Trellis CLI is not built (dist/src/cli/main.js missing)');
  }
  const nodeFlags = await proxyNodeFlags(repoRoot);
  const [cpPort, inboundPort, outboundPort, outboundAdminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const profileName = `${protocol}${variant ? `-${variant.name}` : ''}`;
  const tdir = path.join(dir, `${protocol === 'tcp' ? 'trellis-tcp' : 'trellis'}${variant ? `-${variant.name}` : ''}`);
  mkdirSync(tdir, { recursive: true });
  const meshFile = path.join(tdir, 'mesh.yaml');
  writeFileSync(
    meshFile,
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: bench
spec:
  services:
    - name: upstream
      protocol: ${protocol}
      health:
        tcp: {}
    - name: bench-client
      upstreams: [upstream]
${variant?.meshSpec ?? ''}${variant?.yaml ? `---\n${variant.yaml}` : ''}`,
  );
  const control = `http://127.0.0.1:${cpPort}`;
  const node = process.execPath;
  const started: Managed[] = [];
  const url = protocol === 'tcp' ? `tcp://127.0.0.1:${outboundPort}` : `http://127.0.0.1:${outboundPort}/`;
  try {
    // Proxies prove which instance they are with a credential minted from the control
    // plane's bootstrap secret (src/security/bootstrap-credential.ts), as `trellis up`
    // does; a baseline build from before credentials ignores both variables.
    const secret = newBootstrapSecret();
    const credential = (service: string, id: string, kind: 'sidecar' | 'gateway' = 'sidecar'): Record<string, string> => ({
      [CREDENTIAL_ENV]: mintCredential(secret, { kind, service, id }),
    });
    const cp = procs.start(
      'trellis control',
      node,
      [...cpuProfFlags(`control-${profileName}`), trellis, 'control', '--config', meshFile, '--admin', `127.0.0.1:${cpPort}`],
      tdir,
      {
        [BOOTSTRAP_SECRET_ENV]: secret,
        // The pointer to its admin token (for the CLI) goes in the run's folder, not the user's ~/.trellis.
        TRELLIS_HOME: path.join(tdir, 'home'),
      },
    );
    started.push(cp);
    await waitForHealthz(`${control}/healthz`, cp, 10_000);
    started.push(
      procs.start(
        'trellis proxy (inbound, upstream-0)',
        node,
        [
          ...nodeFlags,
          ...cpuProfFlags(`inbound-${profileName}`),
          trellis,
          'proxy',
          '--service',
          'upstream',
          '--id',
          'upstream-0',
          '--app',
          `127.0.0.1:${upstreamPort}`,
          '--inbound',
          `127.0.0.1:${inboundPort}`,
          '--admin',
          '127.0.0.1:0',
          '--control',
          control,
          '--access-log',
          'off',
        ],
        tdir,
        credential('upstream', 'upstream-0'),
      ),
    );
    for (const [i, appPort] of (variant?.moreInstances ?? []).entries()) {
      const id = `upstream-${i + 1}`;
      started.push(
        procs.start(
          `trellis proxy (inbound, ${id})`,
          node,
          [
            ...nodeFlags,
            ...cpuProfFlags(`inbound-${profileName}-${id}`),
            trellis,
            'proxy',
            '--service',
            'upstream',
            '--id',
            id,
            '--app',
            `127.0.0.1:${appPort}`,
            '--inbound',
            `127.0.0.1:${await freePort()}`,
            '--admin',
            '127.0.0.1:0',
            '--control',
            control,
            '--access-log',
            'off',
          ],
          tdir,
          credential('upstream', id),
        ),
      );
    }
    started.push(
      procs.start(
        'trellis proxy (outbound, bench-client-0)',
        node,
        [
          ...nodeFlags,
          ...cpuProfFlags(`outbound-${profileName}`),
          trellis,
          'proxy',
          '--service',
          'bench-client',
          '--id',
          'bench-client-0',
          '--upstream',
          `upstream=127.0.0.1:${outboundPort}`,
          '--admin',
          `127.0.0.1:${outboundAdminPort}`,
          '--control',
          control,
          '--access-log',
          'off',
        ],
        tdir,
        // No app beside it: the client's proxy is a gateway.
        credential('bench-client', 'bench-client-0', 'gateway'),
      ),
    );
    if (protocol === 'tcp') await waitForEcho(outboundPort, started, 15_000);
    else await waitFor200(url, started, 15_000);
  } catch (e) {
    await Promise.all(started.map((m) => procs.stop(m)));
    throw e;
  }
  return {
    name: 'trellis',
    url,
    processes: [
      { role: 'outbound', managed: started[started.length - 1]! },
      { role: 'inbound', managed: started[1]! },
    ],
    outboundAdmin: `http://127.0.0.1:${outboundAdminPort}`,
    control: started[0]!,
    stop: async () => void (await Promise.all(started.map((m) => procs.stop(m)))),
  };
}

/**
 * The Node flags the checkout at `repoRoot` starts its proxies with, read from its own
 * build: a baseline build (`--baseline`) runs with the flags it shipped with, since a
 * change of flags is part of what an A/B compares. A build from before
 * dist/src/proxy/node-flags.js existed started its proxies with none.
 */
export async function proxyNodeFlags(repoRoot: string): Promise<readonly string[]> {
  const file = path.join(repoRoot, 'dist', 'src', 'proxy', 'node-flags.js');
  if (!existsSync(file)) return [];
  const flags = ((await import(pathToFileURL(file).href)) as { PROXY_NODE_FLAGS?: unknown }).PROXY_NODE_FLAGS;
  return Array.isArray(flags) ? flags.filter((f): f is string => typeof f === 'string') : [];
}

async function waitForHealthz(url: string, m: Managed, timeoutMs: number): Promise<void> {
  try {
    await waitFor200(url, [m], timeoutMs);
  } catch (e) {
    throw new Error(`control plane not ready: ${(e as Error).message}`);
  }
}
