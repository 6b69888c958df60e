// One trace across the shop under `trellis up` (topology 2: ingress → frontend →
// backend → Postgres): the sidecars' spans (sent to the control plane by default) and
// the apps' own OpenTelemetry SDK spans (sent to the same receiver, as the runner tells
// them) join into one tree, down to the backend's Postgres query; `trellis trace` shows it.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { SpanView, TraceView } from '../../src/api/traces.js';
import { eventually } from '../helpers/eventually.js';
import { allGone, meshUp, REPO, request, type RunningMesh } from '../helpers/mesh-run.js';
import { trellisCli } from '../helpers/traffic.js';
import { adminHeaders, resolveAdminToken } from '../../src/security/admin-token.js';

let dir: string;
let mesh: RunningMesh;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-trace-'));
  // Postgres runs as the unprivileged `postgres` user and must reach its data folder.
  await chmod(dir, 0o755);
  mesh = await meshUp(join(REPO, 'examples', 'shop', 'topology-2.yaml'), join(dir, 'state'), ['--free-ports'], 120_000);
});

after(async () => {
  const pids = [mesh?.state.controlPid, ...(mesh?.state.instances ?? []).flatMap((i) => [i.appPid, i.sidecarPid])];
  assert.equal(await mesh?.stop(), 0);
  await allGone(pids);
  await rm(dir, { recursive: true, force: true });
});

function hex(n: number): string {
  let s = '';
  while (s.length < n) s += Math.floor(Math.random() * 16).toString(16);
  return s.replace(/^0/, '1');
}

test('app spans and sidecar spans join into one trace from the ingress to Postgres', async () => {
  const port = mesh.public('frontend');
  // The caller samples the trace (the mesh's own rate is 1%): every hop keeps that decision.
  const caller = hex(16);
  const traceId = await eventually(
    async () => {
      const id = hex(32);
      const r = await request(port, '/api/products', { traceparent: `00-${id}-${caller}-01` });
      assert.equal(r.status, 200, r.body);
      // A request the cache answered never reaches Postgres: ask again until one does.
      assert.equal((JSON.parse(r.body) as { source: string }).source, 'postgres');
      return id;
    },
    { timeoutMs: 30_000 },
  );
  const trace = await eventually(
    async () => {
      const res = await fetch(`${mesh.state.control}/v1/traces/${traceId}`, { headers: adminHeaders(await resolveAdminToken({ url: mesh.state.control })) });
      assert.equal(res.status, 200);
      const t = (await res.json()) as TraceView;
      assert.ok(t.spans.length >= 8, `${t.spans.length} spans so far`);
      return t;
    },
    { timeoutMs: 15_000 },
  );
  const byId = new Map(trace.spans.map((s) => [s.spanId, s]));
  const db = trace.spans.find((s) => s.attributes['db.system.name'] === 'postgresql');
  assert.ok(db, 'the backend’s Postgres query is in the trace');
  // Walk from the database span up to the caller: every hop, app and sidecar, in order.
  const chain: SpanView[] = [];
  for (let s: SpanView | undefined = db; s !== undefined; s = byId.get(s.parentSpanId)) chain.push(s);
  const hops = chain.map((s) => `${s.service}:${s.kind === 2 ? 'server' : s.kind === 3 ? 'client' : s.kind}:${s.attributes['trellis.direction'] ?? 'app'}`);
  assert.deepEqual(hops, [
    'backend:client:app', // SELECT products (pg, the app's span)
    'backend:server:app', // the backend app's request
    'backend:server:inbound', // the backend's sidecar
    'frontend:client:outbound', // the frontend's sidecar, to the backend
    'frontend:client:app', // the frontend app's call
    'frontend:server:app', // the frontend app's request
    'frontend:server:inbound', // the frontend's sidecar
    'trellis-ingress:client:outbound', // the ingress
  ]);
  assert.equal(chain.at(-1)!.parentSpanId, caller, 'the ingress span is the caller’s child');
  assert.ok(trace.spans.every((s) => s.traceId === traceId));
  const out = await trellisCli(['trace', traceId, '--control', mesh.state.control]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /SELECT products/);
  assert.match(out.stdout, /trellis-ingress +client/);
});
