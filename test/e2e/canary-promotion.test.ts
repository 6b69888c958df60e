// `trellis canary` on a real `trellis up` with a healthy v2 under steady load: every
// step passes on what the callers' sidecars counted, v2 is promoted to 100% in the
// route file (its comments kept), and no request fails on the way. Ctrl-C in the
// middle of a canary puts the weights back where they started.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runLoad } from '../../src/loadgen/run.js';
import type { WeightsView } from '../../src/api/admin.js';
import { getJson, meshUp, stopMesh, REPO, TRELLIS, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { shopRoutes, trellisCli, writeShopMesh, type CliResult } from '../helpers/traffic.js';

let dir: string;
let mesh: RunningMesh;
let port: number;
let admin: string;

before(async () => {
  const written = await writeShopMesh({ routes: shopRoutes(100, 0) });
  dir = written.dir;
  mesh = await meshUp(written.meshFile, join(dir, '.trellis'));
  port = mesh.state.instances.find((i) => i.service === 'client')!.upstreams.find((u) => u.service === 'shop')!.port;
  admin = mesh.state.control.replace(/^http:\/\//, '');
});

after(() => stopMesh(mesh, dir));

const weights = async (): Promise<WeightsView['weights']> => (await getJson<WeightsView>(`${mesh.state.control}/v1/services/shop/weights`)).weights;

test('Ctrl-C during a canary puts the weights back where they started', async () => {
  const child = spawn(process.execPath, [TRELLIS, 'canary', 'shop', '--to', 'v2', '--steps', '10,100', '--interval', '60s', '--admin', admin], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await eventually(() => assert.match(out, /step 1\/2 \(v2 10%\): v2 10%, v1 90%; acknowledged/));
    assert.deepEqual(await weights(), { v1: 90, v2: 10 });
    child.kill('SIGINT');
    assert.equal(await exited, 130, out);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  assert.match(out, /interrupted: putting shop back to v1=100 v2=0; acknowledged by/);
  assert.deepEqual(await weights(), { v1: 100, v2: 0 });
});

test('a healthy v2 passes every step and is promoted, and no request fails', async () => {
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
      '--admin',
      admin,
    ]);
  } finally {
    stopLoad.abort();
  }
  const result = await load;
  assert.equal(cli.code, 0, `${cli.stdout}\n${cli.stderr}`);
  const checks = cli.stdout.split('\n').filter((l) => /^step \d\/2 \(v2 \d+%\): \d+ requests in/.test(l));
  assert.ok(checks.length >= 2, cli.stdout);
  assert.match(checks[checks.length - 1]!, /^step 2\/2 \(v2 100%\): \d+ requests in [\d.]+ s, error rate 0% \(max 1%\), p99 [\d.]+ m?s \(max 2000 ms\): pass$/);
  assert.match(cli.stdout, /promoted: shop v2 takes 100% of the requests \(v1=0 v2=100\)/);
  assert.deepEqual(await weights(), { v1: 0, v2: 100 });
  const routes = await readFile(join(dir, 'routes.yaml'), 'utf8');
  assert.equal(routes, shopRoutes(0, 100), 'the route file says so, comments kept');

  assert.equal(result.errors.total, 0, JSON.stringify(result.errors));
  assert.ok(result.completed > 200, `the load ran (${result.completed} requests)`);

  const again = await trellisCli(['canary', 'shop', '--to', 'v2', '--admin', admin]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^shop v2 already takes every request \(v1=0 v2=100\); nothing to do$/m);
});
