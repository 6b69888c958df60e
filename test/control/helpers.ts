// Shared pieces of the control-plane tests: a fake proxy that speaks the stream
// protocol, config fixtures written to a temp folder, and small config builders.
import http from 'node:http';
import { mintCredential } from '../../src/security/bootstrap-credential.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { ControlMessage, HostPort, ProxyInfo, ProxyMessage } from '../../src/api/protocol.js';
import { SnapshotAssembler } from '../../src/api/snapshot-delta.js';
import type { ControlConfig, HTTPRouteConfig, ServiceConfig } from '../../src/control/sources/mesh-config.js';

/** A proxy's side of the stream, driven by the test. */
/** The bootstrap secret the control planes of the tests run with (`bootstrapSecret`). */
export const TEST_BOOTSTRAP_SECRET = 'test-bootstrap-secret';

export class FakeProxy {
  readonly socket: Duplex;
  readonly #buffer: ControlMessage[] = [];
  readonly #waiters: { pred: (m: ControlMessage) => boolean; resolve: (m: ControlMessage) => void }[] = [];
  #partial = '';
  readonly closed: Promise<void>;
  /**
   * Deltas are assembled into the snapshots they make (as a real proxy does) and handed
   * on as `snapshot` messages, so a test reads every push as a whole snapshot.
   */
  readonly assembler = new SnapshotAssembler();
  /** The raw messages, deltas included, in order. */
  readonly received: ControlMessage[] = [];

  constructor(socket: Duplex, head: Buffer) {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    if (head.length > 0) this.#onData(head);
  }

  #onData(chunk: Buffer): void {
    const parts = (this.#partial + chunk.toString('utf8')).split('\n');
    this.#partial = parts.pop() ?? '';
    for (const line of parts) {
      if (line.trim() === '') continue;
      let msg = JSON.parse(line) as ControlMessage;
      this.received.push(msg);
      if (msg.type === 'snapshot') this.assembler.full(msg.snapshot, msg.resources);
      if (msg.type === 'delta') {
        const assembled = this.assembler.delta(msg);
        if (assembled.kind !== 'snapshot') throw new Error(`the fake proxy could not assemble delta ${msg.version}: ${JSON.stringify(assembled)}`);
        msg = { type: 'snapshot', version: msg.version, snapshot: assembled.snapshot };
      }
      const i = this.#waiters.findIndex((w) => w.pred(msg));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(msg);
      else this.#buffer.push(msg);
    }
  }

  /**
   * Sends a message; a hello without a credential gets the one minted for its proxy from
   * {@link TEST_BOOTSTRAP_SECRET} (the control planes of these tests run with it). `sendAsIs` sends as given.
   */
  send(msg: ProxyMessage | Record<string, unknown>): void {
    const m = msg as { type?: unknown; proxy?: ProxyInfo; credential?: unknown };
    if (m.type === 'hello' && m.credential === undefined && m.proxy) {
      const { kind, service, id } = m.proxy;
      return this.sendAsIs({ ...msg, credential: mintCredential(TEST_BOOTSTRAP_SECRET, { kind, service, id }) });
    }
    this.sendAsIs(msg);
  }

  /** Sends a message as given (a hello without its credential stays without). */
  sendAsIs(msg: ProxyMessage | Record<string, unknown>): void {
    this.socket.write(`${JSON.stringify(msg)}\n`);
  }

  sendRaw(text: string): void {
    this.socket.write(text);
  }

  /** The next message matching `pred` (already received or still to come). */
  next(pred: (m: ControlMessage) => boolean = () => true, timeoutMs = 3000): Promise<ControlMessage> {
    const i = this.#buffer.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.#buffer.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (m: ControlMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`no matching message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** The next snapshot message. */
  async snapshot(timeoutMs?: number): Promise<Extract<ControlMessage, { type: 'snapshot' }>> {
    return (await this.next((m) => m.type === 'snapshot', timeoutMs)) as Extract<ControlMessage, { type: 'snapshot' }>;
  }

  /** Messages received and not yet taken by {@link next}. */
  pending(): ControlMessage[] {
    return [...this.#buffer];
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

/** Opens the stream; resolves with the proxy on 101, or with the HTTP status otherwise. */
export function openStream(address: HostPort, headers: Record<string, string> = {}): Promise<FakeProxy | number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: address.host,
      port: address.port,
      path: '/v1/stream',
      headers: { connection: 'Upgrade', upgrade: 'trellis-stream', ...headers },
    });
    req.on('upgrade', (_res, socket, head) => resolve(new FakeProxy(socket, head)));
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

export async function connect(address: HostPort, headers: Record<string, string> = {}): Promise<FakeProxy> {
  const p = await openStream(address, headers);
  if (typeof p === 'number') throw new Error(`stream refused with ${p}`);
  return p;
}

/** A sidecar hello with made-up addresses. */
export function sidecar(id: string, service: string, version = 'default', extra: Partial<ProxyInfo> = {}): ProxyInfo {
  const n = Math.floor(Math.random() * 20000) + 20000;
  return {
    id,
    service,
    version,
    kind: 'sidecar',
    app: { host: '127.0.0.1', port: n },
    inbound: { host: '127.0.0.1', port: n + 1 },
    admin: { host: '127.0.0.1', port: n + 2 },
    upstreams: [],
    pid: process.pid,
    ...extra,
  };
}

export function gateway(id: string, upstreams: string[]): ProxyInfo {
  return {
    id,
    service: id,
    version: 'default',
    kind: 'gateway',
    admin: { host: '127.0.0.1', port: 1 },
    upstreams: upstreams.map((service, i) => ({ service, listen: { host: '127.0.0.1', port: 30000 + i } })),
    pid: process.pid,
  };
}

export function listeners(...services: string[]): ProxyInfo['upstreams'] {
  return services.map((service, i) => ({ service, listen: { host: '127.0.0.1', port: 31000 + i } }));
}

// ---- config builders for the pure tests

export function service(
  name: string,
  opts: Partial<Omit<ServiceConfig, 'upstreams' | 'versions'>> & { upstreams?: string[]; versions?: string[] } = {},
): ServiceConfig {
  const { upstreams, versions, ...rest } = opts;
  return {
    name,
    protocol: 'http',
    health: { type: 'tcp', intervalMs: 2000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 2 },
    ...rest,
    upstreams: (upstreams ?? []).map((s) => ({ service: s })),
    versions: (versions ?? ['default']).map((v) => ({ name: v, labels: {}, replicas: 1 })),
  };
}

export function route(
  name: string,
  parent: string,
  rules: HTTPRouteConfig['spec']['rules'],
  metadata: Partial<HTTPRouteConfig['metadata']> = {},
): { file: string; resource: HTTPRouteConfig } {
  return { file: 'routes.yaml', resource: { metadata: { name, ...metadata }, spec: { parentRefs: [{ name: parent }], rules } } };
}

export function config(services: ServiceConfig[], routes: ControlConfig['routes'] = []): ControlConfig {
  return { services, routes };
}

// ---- files

export async function tempDir(): Promise<{ dir: string; write: (name: string, text: string) => Promise<string>; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'trellis-control-'));
  return {
    dir,
    write: async (name, text) => {
      const file = path.join(dir, name);
      await writeFile(file, text);
      return file;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A two-service mesh: frontend calls backend (versions v1 and v2). */
export const MESH_YAML = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: shop
spec:
  include: [routes.yaml]
  services:
    - name: frontend
      upstreams: [backend]
    - name: backend
      versions:
        - name: v1
        - name: v2
`;

export function routesYaml(backend: string): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend-split
spec:
  parentRefs: [{ name: backend }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /api } }]
      backendRefs: [{ name: ${backend} }]
`;
}

/**
 * A route file the config refuses: its parent is no service of the mesh. (A backendRef
 * to a missing service is no config error, only an invalid backendRef.)
 */
export function brokenRoutesYaml(parent = 'backend-v9'): string {
  return routesYaml('backend-v1').replace('parentRefs: [{ name: backend }]', `parentRefs: [{ name: ${parent} }]`);
}

/** A control plane the tests call the admin API of: where it is and its admin token. */
export interface AdminAccess {
  readonly address: HostPort;
  readonly adminToken: string;
}

/** The headers of an admin API request with the control plane's token. */
export function adminAuth(plane: { readonly adminToken: string }): Record<string, string> {
  return { authorization: `Bearer ${plane.adminToken}` };
}

/** GETs an admin API path with the control plane's token; the body parsed when it is JSON. */
export async function getJson<T = unknown>(plane: AdminAccess, p: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://${plane.address.host}:${plane.address.port}${p}`, { headers: adminAuth(plane) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // plain text (healthz)
  }
  return { status: res.status, body: body as T };
}
