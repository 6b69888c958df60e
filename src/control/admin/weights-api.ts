// `GET` and `PUT /v1/services/<name>/weights` of the admin API: the traffic split of a
// service's versions, read from the routes in force and changed by editing the route
// files (sources/route-weights.ts), never by a second copy of the config in memory. A change is
// written, reloaded at once (not after the watcher's debounce), and answered only once
// the distributor has sent it to every proxy that calls the service, with the snapshot
// version each got, so the caller can wait for their ACKs on /v1/proxies.
import { chmod, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errorBody, TrellisError } from '../../errors.js';
import { compileSnapshot } from '../compile/compiler.js';
import { routableInstances } from '../distribute/distributor.js';
import type { MeshModel } from '../model.js';
import { currentWeights, planWeights, splitRules, type SourceFile, type Weights } from '../sources/route-weights.js';
import { stableStringify } from '../stable-json.js';
import { keyOf } from '../sources/mesh-config.js';
import { MAX_WEIGHT } from '../../api/admin.js';
import type { CallerVersion, WeightsChange, WeightsView } from '../../api/admin.js';
import type { Snapshot } from '../../api/protocol.js';
export type { CallerVersion, WeightsChange, WeightsView } from '../../api/admin.js';

export interface WeightsApiOptions {
  model: MeshModel;
  /** Reloads the config files now (ConfigWatcher.reload). */
  reload: () => Promise<void>;
  log?: (line: string) => void;
  /** How long to wait for the distributor to send the change (default 3 s). */
  sendWaitMs?: number;
}

/** An answer of the endpoint: status and JSON body. */
export interface Answer {
  status: number;
  body: unknown;
}

function errorAnswer(err: TrellisError): Answer {
  return { status: err.status, body: errorBody(err) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Writes through a temporary file and a rename, so the watcher never reads half a file. */
async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  const mode = await stat(file).then(
    (s) => s.mode & 0o777,
    () => undefined,
  );
  await writeFile(tmp, text);
  if (mode !== undefined) await chmod(tmp, mode);
  await rename(tmp, file);
}

export class WeightsApi {
  readonly #o: WeightsApiOptions;
  readonly #log: (line: string) => void;
  /** Changes run one at a time: each reads the files the previous one wrote. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(o: WeightsApiOptions) {
    this.#o = o;
    this.#log = o.log ?? (() => {});
  }

  /** The versions of an HTTP service, or the error answer. */
  #versions(service: string): string[] | TrellisError {
    const s = this.#o.model.service(service);
    if (!s) {
      const names = this.#o.model.config.services.map(keyOf);
      return new TrellisError('TRELLIS_E_NOT_FOUND', {
        reason: `no service named "${service}" in the mesh; its services are: ${names.join(', ') || '(none)'}`,
      });
    }
    if (s.protocol === 'tcp') {
      return new TrellisError('TRELLIS_E_WEIGHTS_INVALID', {
        service,
        reason: `${service} is a ${s.protocol} service; HTTPRoute weights split HTTP services only`,
      });
    }
    return s.versions.map((v) => v.name);
  }

  view(service: string): Answer {
    const versions = this.#versions(service);
    if (versions instanceof TrellisError) return errorAnswer(versions);
    const rules = splitRules(this.#o.model.config.routes, service, versions);
    const replicas = Object.fromEntries(this.#o.model.service(service)!.versions.map((v) => [v.name, v.replicas]));
    const view: WeightsView = { service, versions, weights: currentWeights(rules, versions) ?? null, rules, byInstances: replicas };
    return { status: 200, body: view };
  }

  /** Sets the weights from a request body `{"weights": {"v1": 90, "v2": 10}}`. */
  set(service: string, body: unknown): Promise<Answer> {
    const run = this.#queue.then(() => this.#set(service, body));
    this.#queue = run.catch(() => {});
    return run.catch((err: unknown) => {
      if (err instanceof TrellisError) return errorAnswer(err);
      throw err;
    });
  }

  /** Every version's weight from the body; versions left out get 0. */
  #parse(service: string, versions: readonly string[], body: unknown): Weights {
    const invalid = (reason: string): TrellisError => new TrellisError('TRELLIS_E_WEIGHTS_INVALID', { service, reason });
    const given = (body as { weights?: unknown } | null)?.weights;
    if (typeof given !== 'object' || given === null || Array.isArray(given)) {
      throw invalid('the body must be JSON like {"weights": {"v1": 90, "v2": 10}}');
    }
    const entries = Object.entries(given as Record<string, unknown>);
    if (entries.length === 0) throw invalid(`give a weight to at least one version (versions: ${versions.join(', ')})`);
    const weights: Weights = Object.fromEntries(versions.map((v) => [v, 0]));
    for (const [version, w] of entries) {
      if (!versions.includes(version)) throw invalid(`${service} has no version "${version}"; its versions are: ${versions.join(', ')}`);
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > MAX_WEIGHT) {
        throw invalid(`the weight of ${version} must be a whole number from 0 to ${MAX_WEIGHT} (got ${JSON.stringify(w)})`);
      }
      weights[version] = w;
    }
    if (Object.values(weights).every((w) => w === 0))
      throw invalid('every weight is 0, so requests would have nowhere to go; give at least one version a weight above 0');
    return weights;
  }

  async #set(service: string, body: unknown): Promise<Answer> {
    const { model } = this.#o;
    const versions = this.#versions(service);
    if (versions instanceof TrellisError) throw versions;
    const weights = this.#parse(service, versions, body);
    const state = model.configState;
    if (state.failedReload) {
      throw new TrellisError('TRELLIS_E_WEIGHTS_REFUSED', {
        service,
        reason: `the config files on disk do not load (${state.failedReload.problems.length} problem(s), see \`trellis status\`); fix them first, so this change is not mixed with theirs`,
      });
    }
    const before = currentWeights(splitRules(model.config.routes, service, versions), versions) ?? null;
    const files: SourceFile[] = await Promise.all(state.files.map(async (file) => ({ file, text: await readFile(file, 'utf8') })));
    const edit = planWeights({ files, service, versions, weights });
    if (edit.created && existsSync(edit.created)) {
      throw new TrellisError('TRELLIS_E_WEIGHTS_REFUSED', {
        service,
        reason: `no HTTPRoute rule splits ${service}, and ${edit.created}, where a new one would go, exists but is not part of the config; include it from the mesh file or remove it`,
      });
    }
    const callersBefore = this.#callers(service);
    if (edit.writes.length > 0) await this.#write(service, edit.writes, edit.created, files);
    const where = edit.created ? `new route file ${edit.created}` : edit.rules.map((r) => `${r.file} HTTPRoute ${r.route} rule ${r.rule}`).join(', ');
    const text = versions.map((v) => `${v}=${weights[v]}`).join(' ');
    this.#log(`control: weights of ${service} ${edit.writes.length > 0 ? 'set to' : 'already'} ${text} (${where})`);
    const { callers, sent } = await this.#waitSent(service, callersBefore);
    const change: WeightsChange = {
      service,
      before,
      after: weights,
      changed: edit.writes.length > 0,
      rules: edit.rules,
      created: edit.created ?? null,
      callers,
      sent,
    };
    return { status: 200, body: change };
  }

  /** Writes the files and reloads; on a reload with problems, puts the files back. */
  async #write(service: string, writes: SourceFile[], created: string | undefined, originals: SourceFile[]): Promise<void> {
    const { model } = this.#o;
    const startedAt = model.now();
    for (const w of writes) await writeAtomic(w.file, w.text);
    await this.#o.reload();
    const state = model.configState;
    if (!state.failedReload && (state.loadedAt ?? 0) >= startedAt) return;
    const problems = state.failedReload?.problems ?? [];
    for (const w of writes) {
      const original = originals.find((f) => f.file === w.file);
      if (original) await writeAtomic(w.file, original.text);
      else if (w.file === created) await unlink(w.file).catch(() => {});
    }
    await this.#o.reload();
    throw new TrellisError('TRELLIS_E_WEIGHTS_REFUSED', {
      service,
      reason: `the edited config did not load, so the files were put back: ${problems.map((p) => `${p.file}: ${p.path ? `${p.path}: ` : ''}${p.message}`).join('; ') || 'unknown reason'}`,
    });
  }

  /** Connected proxies whose snapshot has the service as an upstream, and their sent version. */
  #callers(service: string): Map<string, number> {
    const out = new Map<string, number>();
    for (const p of this.#o.model.proxies()) {
      if (p.connected && routesOf(p.lastSnapshot, service) !== undefined) out.set(p.id, p.sentVersion ?? 0);
    }
    return out;
  }

  /**
   * Waits until every caller was sent the routes the config in force compiles to (the
   * distributor gathers changes for a few ms first), and says which version that was.
   */
  async #waitSent(service: string, callersBefore: ReadonlyMap<string, number>): Promise<{ callers: CallerVersion[]; sent: boolean }> {
    const { model } = this.#o;
    const deadline = performance.now() + (this.#o.sendWaitMs ?? 3000);
    for (;;) {
      const instances = routableInstances(model);
      const callers: CallerVersion[] = [];
      let pending = false;
      for (const p of model.proxies()) {
        const has = p.connected && routesOf(p.lastSnapshot, service) !== undefined;
        if (!has && !callersBefore.has(p.id)) continue;
        if (!p.connected) continue;
        const want = routesOf(compileSnapshot({ config: model.config, instances, proxy: p.info }), service);
        const got = routesOf(p.lastSnapshot, service);
        if (stableStringify(want) !== stableStringify(got)) pending = true;
        if (want !== undefined) callers.push({ id: p.id, service: p.service, kind: p.kind, version: p.sentVersion ?? 0 });
      }
      if (!pending || performance.now() >= deadline) return { callers, sent: !pending };
      await sleep(5);
    }
  }
}

/**
 * What of a proxy's snapshot a service's routes decide: its upstream's routes, and the
 * route tables of Gateway ports that send to the service (a gateway folds a Service's
 * routes into its own, compile/gateway.ts); undefined when the proxy does not call it.
 */
function routesOf(s: Pick<Snapshot, 'upstreams' | 'gateway'> | undefined, service: string): unknown {
  if (s === undefined) return undefined;
  const own = s.upstreams[service]?.routes;
  const sendsThere = (backend: string): boolean => backend === service || backend.startsWith(`${service}-`);
  const edge = (s.gateway?.ports ?? [])
    .map((p) => s.upstreams[p.upstream]?.routes)
    .filter((routes) => routes?.some((r) => r.backends.some((b) => sendsThere(b.backend))));
  if (own === undefined && edge.length === 0) return undefined;
  return { own, edge };
}
