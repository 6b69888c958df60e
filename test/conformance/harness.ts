// Runs conformance cases on a real mesh: `trellis up` (control plane, echo apps, their
// sidecars) on a mesh file from meshes.ts, each case's routes written into its routes
// folder and waited for until the client's sidecar holds them, and each check sent from
// the client pod's sidecar as upstream's echo client sends it from inside the pod.
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdir, mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parseAllDocuments } from 'yaml';
import { eventually } from '../helpers/eventually.js';
import { getJson, meshUp, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import type { Check, Expect, RequestCheck, WeightCheck } from './case-types.js';
import { type ClientRef, type MeshDef, meshFile } from './meshes.js';

type Instance = RunningMesh['state']['instances'][number];

/** What a request got: status, response headers, and what the echo saw (undefined when the echo did not answer). */
export interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly echo?: EchoSeen;
}

/** The echo app's JSON (test/fixtures/apps/conformance-echo.js). */
export interface EchoSeen {
  readonly pod: string;
  readonly namespace: string;
  readonly path: string;
  readonly host: string;
  readonly headers: Record<string, string[]>;
}

/** A mesh started once for its cases: started on first use, stopped by `stop()`. */
export class ConformanceMesh {
  readonly #def: MeshDef;
  #started: Promise<{ mesh: RunningMesh; dir: string }> | undefined;
  #mesh: RunningMesh | undefined;
  #dir: string | undefined;
  #lastRoutes = '';
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

  constructor(def: MeshDef) {
    this.#def = def;
  }

  /** Starts the mesh (once; a start that failed fails every later use alike). */
  async #get(): Promise<RunningMesh> {
    this.#started ??= (async () => {
      const dir = await mkdtemp(join(tmpdir(), `trellis-conformance-${this.#def.id}-`));
      this.#dir = dir;
      await mkdir(join(dir, 'routes'));
      await writeFile(join(dir, 'routes', 'case.yaml'), '# no routes yet\n');
      await writeFile(join(dir, 'mesh.yaml'), meshFile(this.#def));
      const mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'), [], 30_000);
      this.#mesh = mesh;
      return { mesh, dir };
    })();
    return (await this.#started).mesh;
  }

  async stop(): Promise<void> {
    this.#agent.destroy();
    if (this.#started === undefined) return;
    await this.#started.catch(() => undefined);
    await stopMesh(this.#mesh, this.#dir);
  }

  /** The instance of `ref` (by service, namespace and version, or by its mesh-wide key `name.namespace`). */
  #instance(mesh: RunningMesh, ref: ClientRef): Instance {
    const key = ref.namespace === 'default' ? ref.service : `${ref.service}.${ref.namespace}`;
    const found = mesh.state.instances.find((i) => {
      const ns = (i as Instance & { namespace?: string }).namespace ?? 'default';
      const named = i.service === key || (i.service === ref.service && ns === ref.namespace);
      return named && (ref.version === undefined || i.version === ref.version);
    });
    assert.ok(found, `no instance of ${key}${ref.version ? ` version ${ref.version}` : ''} in the mesh`);
    return found;
  }

  #client(mesh: RunningMesh, name = 'default'): Instance {
    const ref = this.#def.clients[name];
    assert.ok(ref, `mesh ${this.#def.id} has no client ${name}`);
    return this.#instance(mesh, ref);
  }

  /**
   * Puts `routes` in force and waits until every client's sidecar holds them: the control
   * plane has loaded exactly the case's routes (after the write), and each client's
   * sidecar routes as the control plane's current snapshot for it says. A config the
   * control plane refuses fails at once with its problems.
   */
  async applyRoutes(routes: string): Promise<void> {
    const mesh = await this.#get();
    const dir = this.#dir;
    assert.ok(dir);
    const expected = routeKeys(routes);
    const clients = Object.keys(this.#def.clients).map((n) => this.#client(mesh, n));
    const before = await Promise.all(clients.map((c) => sidecarRoutes(c)));
    const unchanged = routes === this.#lastRoutes;
    const writtenAt = Date.now();
    // Written beside and renamed over, so a reload never reads half a file.
    const tmp = join(dir, 'routes', 'case.yaml.next');
    await writeFile(tmp, routes === '' ? '# no routes\n' : routes);
    await rename(tmp, join(dir, 'routes', 'case.yaml'));
    this.#lastRoutes = routes;
    const refused = await eventually(
      async () => {
        const config = await getJson<ConfigView>(`${mesh.state.control}/v1/config`);
        if (config.reloadFailed && Date.parse(config.reloadFailed.at) >= writtenAt) return config.reloadFailed.problems.map((p) => p.text).join('\n');
        assert.ok(config.loadedAt !== null && Date.parse(config.loadedAt) >= writtenAt, 'the control plane has loaded the new routes');
        assert.deepEqual([...config.routes].sort(), expected, 'the control plane holds exactly the case routes');
        let changed = 0;
        for (const [i, c] of clients.entries()) {
          const held = await sidecarRoutes(c);
          const wanted = routesOf(await getJson<SnapshotLike>(`${mesh.state.control}/v1/snapshots/${encodeURIComponent(c.id)}`));
          assert.equal(held, wanted, `sidecar ${c.id} routes as the control plane's snapshot says`);
          if (held !== before[i]) changed++;
        }
        // Some client takes the new routes; a caller they do not concern (a consumer route
        // of another namespace) may keep its own.
        if (!unchanged) assert.ok(changed > 0, 'a client sidecar has taken the new routes');
        return '';
      },
      { timeoutMs: 15_000 },
    );
    if (refused !== '') throw new Error(`the control plane refused the case's routes:\n${refused}`);
  }

  /** Runs one check; throws an AssertionError naming what differed. */
  async check(check: Check): Promise<void> {
    const mesh = await this.#get();
    if (check.kind === 'weights') return this.#checkWeights(mesh, check);
    const answer = await this.#send(mesh, check);
    expectAnswer(check, answer);
  }

  async #send(mesh: RunningMesh, check: RequestCheck): Promise<Answer> {
    const client = this.#client(mesh, check.from);
    const host =
      typeof check.host === 'string'
        ? check.host
        : addressOf(this.#instance(mesh, { service: check.host.podOf, namespace: this.#def.clients.default?.namespace ?? 'default' }));
    let port = client.httpProxy.port;
    if (check.via?.listener === 'upstream') {
      const service = check.via.service;
      // Listeners are named by the service's mesh-wide key: `name.namespace` outside default.
      const ns = this.#def.clients[check.from ?? 'default']?.namespace ?? 'default';
      const key = ns === 'default' ? service : `${service}.${ns}`;
      const upstream = client.upstreams.find((u) => u.service === key);
      assert.ok(upstream, `client ${client.id} has no listener for ${service}`);
      port = upstream.port;
    }
    return check.protocol === 'grpc' ? grpcCall(port, host, check.headers ?? {}) : this.#http(port, host, check);
  }

  #http(port: number, host: string, check: RequestCheck): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: check.method ?? 'GET', path: check.path ?? '/', headers: { ...check.headers, host }, agent: this.#agent },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, ...echoOf(body) }));
          res.on('error', reject);
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.end();
    });
  }

  /** Upstream's distribution check: 500 requests, 10 at a time; each backend's share within ±5 points; up to 3 rounds. */
  async #checkWeights(mesh: RunningMesh, check: WeightCheck): Promise<void> {
    const total = 500;
    let last: unknown;
    for (let round = 0; round < 3; round++) {
      const counts = new Map<string, number>();
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < total) {
          next++;
          const answer = await this.#send(mesh, { kind: 'request', name: check.name, protocol: check.protocol, host: check.host, expect: {} });
          assert.equal(answer.status, 200, 'every weighted request succeeds');
          const backend = Object.keys(check.weights).find((b) => answer.echo?.pod.startsWith(b)) ?? `unexpected:${answer.echo?.pod}`;
          counts.set(backend, (counts.get(backend) ?? 0) + 1);
        }
      };
      await Promise.all(Array.from({ length: 10 }, worker));
      try {
        for (const b of counts.keys()) assert.ok(b in check.weights, `traffic reached ${b}`);
        for (const [b, want] of Object.entries(check.weights)) {
          const got = (counts.get(b) ?? 0) / total;
          assert.ok(Math.abs(got - want) <= 0.05, `backend ${b} got ${(got * 100).toFixed(1)}% of the traffic, want ${want * 100}% ±5`);
        }
        return;
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }
}

interface ConfigView {
  loadedAt: string | null;
  routes: string[];
  reloadFailed: { at: string; problems: { text: string }[] } | null;
}

interface SnapshotLike {
  upstreams?: Record<string, { routes?: unknown }>;
  snapshot?: SnapshotLike;
}

/** The routes of every upstream in a snapshot, as comparable text. */
function routesOf(s: SnapshotLike): string {
  const snap = s.snapshot ?? s;
  const out: Record<string, unknown> = {};
  for (const [name, u] of Object.entries(snap.upstreams ?? {}).sort(([a], [b]) => a.localeCompare(b))) out[name] = u.routes ?? [];
  return JSON.stringify(out);
}

async function sidecarRoutes(i: Instance): Promise<string> {
  return routesOf(await getJson<SnapshotLike>(`http://${i.admin.host}:${i.admin.port}/config`));
}

/** `<namespace>/<name>` of every route in a case's YAML, sorted, as the admin API lists them. */
export function routeKeys(yaml: string): string[] {
  return parseAllDocuments(yaml)
    .map((d) => d.toJS() as { metadata?: { name?: string; namespace?: string } } | null)
    .filter((r) => r?.metadata?.name !== undefined)
    .map((r) => `${r?.metadata?.namespace ?? 'default'}/${r?.metadata?.name}`)
    .sort();
}

function addressOf(i: Instance): string {
  return `${i.app.host}:${i.app.port}`;
}

function echoOf(body: string): { echo?: EchoSeen } {
  try {
    const parsed = JSON.parse(body) as Partial<EchoSeen>;
    return typeof parsed.pod === 'string' && parsed.headers ? { echo: parsed as EchoSeen } : {};
  } catch {
    return {};
  }
}

const json = {
  serialize: (v: unknown): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): unknown => JSON.parse(b.toString()),
};

/**
 * One unary call of upstream's echo service method through the sidecar listener at
 * `port`, with `authority` as :authority (grpc-js over h2c, JSON messages). A gRPC OK
 * is status 200, as upstream's checker maps it; an error, 500 + its code in the headers.
 */
function grpcCall(port: number, authority: string, headers: Readonly<Record<string, string>>): Promise<Answer> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return new Promise<Answer>((resolve) => {
    client.makeUnaryRequest(
      '/proto.EchoTestService/Echo',
      json.serialize,
      json.deserialize,
      { message: 'conformance' },
      metadata,
      { deadline: Date.now() + 10_000 },
      (err, value) => {
        if (err) resolve({ status: 500, headers: { 'grpc-status': String(err.code), 'grpc-message': err.details } });
        else resolve({ status: 200, headers: {}, echo: value as EchoSeen });
      },
    );
  }).finally(() => client.close());
}

/** Checks `answer` against the check's expectations, as upstream's checkers do. */
export function expectAnswer(check: RequestCheck, answer: Answer): void {
  const e: Expect = check.expect;
  const context = `status ${answer.status}, headers ${JSON.stringify(answer.headers)}${answer.echo ? `, echo saw ${JSON.stringify(answer.echo)}` : ''}`;
  assert.equal(answer.status, e.status ?? 200, `status (${context})`);
  const seen = answer.echo;
  if (e.backend !== undefined) {
    assert.ok(seen, `an echo answered (${context})`);
    assert.ok(seen.pod.startsWith(e.backend), `pod ${seen.pod} starts with ${e.backend}`);
  }
  if (e.path !== undefined) {
    assert.ok(seen, `an echo answered (${context})`);
    assert.equal(seen.path, e.path, 'the path the echo received');
  }
  for (const [name, want] of Object.entries(e.requestHeaders ?? {})) {
    assert.ok(seen, `an echo answered (${context})`);
    assert.equal(seen.headers[name.toLowerCase()]?.join(','), want, `request header ${name} (echo saw ${JSON.stringify(seen.headers)})`);
  }
  for (const name of e.absentRequestHeaders ?? []) {
    assert.ok(seen, `an echo answered (${context})`);
    assert.equal(seen.headers[name.toLowerCase()], undefined, `request header ${name} is absent`);
  }
  for (const [name, want] of Object.entries(e.responseHeaders ?? {})) {
    assert.equal(answer.headers[name.toLowerCase()], want, `response header ${name} (${context})`);
  }
  for (const name of e.absentResponseHeaders ?? []) {
    assert.equal(answer.headers[name.toLowerCase()], undefined, `response header ${name} is absent (${context})`);
  }
  if (e.redirect !== undefined) expectRedirect(check, answer, e.redirect);
}

function expectRedirect(check: RequestCheck, answer: Answer, want: NonNullable<Expect['redirect']>): void {
  const location = answer.headers.location;
  assert.ok(typeof location === 'string', `a Location header (headers ${JSON.stringify(answer.headers)})`);
  const url = new URL(location);
  const scheme = url.protocol.replace(/:$/, '');
  const requestHost = typeof check.host === 'string' ? check.host.replace(/:\d+$/, '') : '';
  assert.equal(scheme, want.scheme ?? 'http', `redirect scheme (Location ${location})`);
  assert.equal(url.hostname, want.host ?? requestHost, `redirect host (Location ${location})`);
  // URL drops a scheme's default port, which upstream accepts as "absent or the default".
  assert.equal(url.port, want.port ?? '', `redirect port (Location ${location})`);
  assert.equal(url.pathname, want.path ?? (check.path ?? '/').replace(/\?.*$/, ''), `redirect path (Location ${location})`);
}
