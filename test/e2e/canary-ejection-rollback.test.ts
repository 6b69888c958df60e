// `trellis canary` on a real `trellis up` where v2's only instance answers every request
// with 500 (its health check still passes): the callers' outlier detection ejects it
// after five, and its share of the traffic fails over to v1. The canary rolls back
// naming the ejection and the failed requests, not "too little traffic to judge",
// which is what it said when it read only v2's own requests.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runLoad } from '../../src/loadgen/run.js';
import type { WeightsView } from '../../src/api/admin.js';
import { getJson, meshUp, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { shopRoutes, trellisCli, writeShopMesh, type CliResult } from '../helpers/traffic.js';

let dir: string;
let mesh: RunningMesh;
let port: number;

before(async () => {
  const written = await writeShopMesh({ routes: shopRoutes(100, 0), v2Env: { FAIL_RATE: '1' } });
  dir = written.dir;
  mesh = await meshUp(written.meshFile, join(dir, '.trellis'));
  port = mesh.state.instances.find((i) => i.service === 'client')!.upstreams.find((u) => u.service === 'shop')!.port;
});

after(() => stopMesh(mesh, dir));

test('a canary whose only instance is ejected by outlier detection is rolled back for its errors, not for too little traffic', async () => {
  const stopLoad = new AbortController();
  const load = runLoad({
    url: `http://127.0.0.1:${port}/`,
    rate: 100,
    durationMs: 30_000,
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
      '2',
      '--control',
      mesh.state.control,
    ]);
  } finally {
    stopLoad.abort();
  }
  await load;
  assert.equal(cli.code, 1, `${cli.stdout}\n${cli.stderr}`);
  assert.doesNotMatch(cli.stderr, /too little traffic/, cli.stdout);
  // The ejection, when it fell in the step's window; else the failovers that followed it.
  assert.match(
    cli.stderr,
    /^trellis canary: canary of shop v2 rolled back at step 50%: (outlier detection in the callers' sidecars ejected the version's instances \d+ times? \(consecutive-5xx\)|error rate 100% \(\d+ of \d+ requests failed: \d+ answered with errors, \d+ sent to other versions because no instance could take them\) is above --max-error-rate 1%); .*weights now v1=100 v2=0$/m,
    `${cli.stdout}\n${cli.stderr}`,
  );
  assert.match(cli.stdout, /step 1\/2 \(v2 50%\): \d+ requests \(\d+ sent to other versions\) in/);
  const view = await getJson<WeightsView>(`${mesh.state.control}/v1/services/shop/weights`);
  assert.deepEqual(view.weights, { v1: 100, v2: 0 });
});
