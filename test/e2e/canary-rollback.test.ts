// `trellis canary` on a real `trellis up` where v2 fails one request in five (FAIL_RATE
// in the mesh file): the first step breaches --max-error-rate, the canary sets v2 back
// to 0% and exits 1 naming the metric, its value, the limit and the step.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runLoad } from '../../src/loadgen/run.js';
import type { WeightsView } from '../../src/api/admin.js';
import { getJson, meshUp, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { shopRoutes, trellisCli, writeShopMesh, type CliResult } from '../helpers/traffic.js';

let dir: string;
let mesh: RunningMesh;
let port: number;

before(async () => {
  const written = await writeShopMesh({ routes: shopRoutes(100, 0), v2Env: { FAIL_RATE: '0.2' } });
  dir = written.dir;
  mesh = await meshUp(written.meshFile, join(dir, '.trellis'));
  port = mesh.state.instances.find((i) => i.service === 'client')!.upstreams.find((u) => u.service === 'shop')!.port;
});

after(() => stopMesh(mesh, dir));

test('v2 failing 20% of its requests is rolled back to 0% at the first step, and the command says why', async () => {
  const stopLoad = new AbortController();
  const load = runLoad({
    url: `http://127.0.0.1:${port}/`,
    rate: 100,
    durationMs: 40_000,
    warmupMs: 0,
    connections: 8,
    timeoutMs: 5000,
    signal: stopLoad.signal,
  });
  let cli: CliResult;
  try {
    cli = await trellisCli([
      'canary',
      'shop',
      '--to',
      'v2',
      '--steps',
      '50,100',
      '--interval',
      '1500ms',
      '--max-error-rate',
      '1%',
      '--max-p99',
      '2s',
      '--min-requests',
      '20',
      '--max-waits',
      '3',
      '--control',
      mesh.state.control,
    ]);
  } finally {
    stopLoad.abort();
  }
  const result = await load;
  assert.equal(cli.code, 1, `${cli.stdout}\n${cli.stderr}`);
  const why =
    /^trellis canary: canary of shop v2 rolled back at step 50%: error rate ([\d.]+)% \((\d+) of (\d+) requests failed\) is above --max-error-rate 1%; weights now v1=100 v2=0$/m.exec(
      cli.stderr,
    );
  assert.ok(why, cli.stderr);
  const rate = Number(why[1]);
  assert.ok(rate > 10 && rate < 30, `the error rate measured (${rate}%) is about v2's 20%`);
  assert.match(cli.stdout, /step 1\/2 \(v2 50%\): \d+ requests in [\d.]+ s, error rate [\d.]+% \(max 1%\), .*: error rate over the limit/);
  assert.match(cli.stdout, /rolling back: v2 0%, v1 100%; acknowledged by/);
  assert.doesNotMatch(cli.stdout, /step 2\/2/);

  const view = await getJson<WeightsView>(`${mesh.state.control}/v1/services/shop/weights`);
  assert.deepEqual(view.weights, { v1: 100, v2: 0 });
  assert.equal(await readFile(join(dir, 'routes.yaml'), 'utf8'), shopRoutes(100, 0));
  // The only failures the load saw are v2's own 500s: nothing failed because of the weight changes.
  assert.deepEqual({ ...result.errors, status: {} }, { total: result.errors.status['500'] ?? 0, connect: 0, reset: 0, timeout: 0, protocol: 0, status: {} });
  assert.deepEqual(Object.keys(result.errors.status), ['500']);
});
