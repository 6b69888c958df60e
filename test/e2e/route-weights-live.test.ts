// `trellis route weights` on a real `trellis up`: the change lands in the files, every
// proxy that calls the service acknowledges it, traffic moves to the new proportions,
// and no request of a steady load fails because of it. The mesh starts with no route
// at all, so the first change also makes (and includes) the route file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runLoad } from '../../src/loadgen/run.js';
import type { ProxyView } from '../../src/api/admin.js';
import type { Snapshot } from '../../src/api/protocol.js';
import { getJson, meshUp, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { countVersions, trellisCli, writeShopMesh } from '../helpers/traffic.js';

let dir: string;
let mesh: RunningMesh;
let port: number; // the client sidecar's listener for shop
let admin: string;

before(async () => {
  const written = await writeShopMesh({});
  dir = written.dir;
  mesh = await meshUp(written.meshFile, join(dir, '.trellis'));
  port = mesh.state.instances.find((i) => i.service === 'client')!.upstreams.find((u) => u.service === 'shop')!.port;
  admin = mesh.state.control.replace(/^http:\/\//, '');
});

after(() => stopMesh(mesh, dir));

test('a weight change under steady load moves the traffic, and no request fails', async () => {
  let answered = 0;
  const load = runLoad({
    url: `http://127.0.0.1:${port}/`,
    rate: 100,
    durationMs: 4000,
    warmupMs: 0,
    connections: 8,
    timeoutMs: 5000,
    onRequest: () => answered++,
  });
  // The change lands under way: once a second's worth of the load has been answered.
  await eventually(() => answered >= 100, { what: 'the load under way' });
  const cli = await trellisCli(['route', 'weights', 'shop', 'v1=20', 'v2=80', '--admin', admin]);
  const result = await load;
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /shop: no rule split it, so .*shop-weights\.yaml was written and included from the mesh file/);
  assert.match(cli.stdout, /v2 +- +80 \(80%\)/);
  assert.deepEqual(result.errors, { total: 0, connect: 0, reset: 0, timeout: 0, protocol: 0, status: {} });
  assert.deepEqual(Object.keys(result.statuses), ['200'], `statuses: ${JSON.stringify(result.statuses)}`);
  assert.ok(result.completed >= 390, `the load ran (${result.completed} requests)`);

  assert.ok(existsSync(join(dir, 'shop-weights.yaml')));
  assert.match(
    await readFile(join(dir, 'mesh.yaml'), 'utf8'),
    /^# client calls shop; shop runs v1 and v2\n[\s\S]*include: \[shop-weights\.yaml\]\n {2}services:\n {4}- name: client\n/,
  );

  const { versions, failures } = await countVersions(port, 1000);
  assert.deepEqual(failures, []);
  const v2 = (versions.v2 ?? 0) / 1000;
  assert.ok(v2 > 0.74 && v2 < 0.86, `v2 share ${v2} (expected 0.80 ± 0.06)`);
});

/**
 * The route a proxy sends shop's requests by: its upstream's first (a sidecar), or the
 * first of a Gateway port's table sending to shop's versions (the ingress folds shop's
 * routes into its own); undefined when the proxy does not call shop.
 */
function shopRoute(snapshot: Snapshot): Snapshot['upstreams'][string]['routes'][number] | undefined {
  if (snapshot.upstreams.shop) return snapshot.upstreams.shop.routes[0];
  for (const port of snapshot.gateway?.ports ?? []) {
    const route = snapshot.upstreams[port.upstream]?.routes.find((r) => r.backends.some((b) => b.backend.startsWith('shop')));
    if (route) return route;
  }
  return undefined;
}

test('every proxy that calls the service acknowledges the change before the command returns', async (t) => {
  const cli = await trellisCli(['route', 'weights', 'shop', 'v1=50', 'v2=50', '--admin', admin]);
  assert.equal(cli.code, 0, cli.stderr);
  const acked = /acknowledged by (\d+) proxies that call shop \(([^)]*)\) in (\d+) ms/.exec(cli.stdout);
  assert.ok(acked, cli.stdout);
  t.diagnostic(`route change acknowledged by all ${acked[1]} callers in ${acked[3]} ms`);

  // What the command waited for is what the control plane records.
  const { proxies } = await getJson<{ proxies: ProxyView[] }>(`${mesh.state.control}/v1/proxies`);
  const callers: string[] = [];
  for (const p of proxies.filter((x) => x.connected)) {
    const snapshot = await getJson<Snapshot>(`${mesh.state.control}/v1/snapshots/${p.id}`);
    const shop = shopRoute(snapshot);
    if (!shop) continue;
    callers.push(p.id);
    assert.equal(p.ackedVersion, p.sentVersion, `${p.id} acknowledged its latest snapshot`);
    assert.deepEqual(
      shop.backends,
      [
        { backend: 'shop-v1', weight: 50 },
        { backend: 'shop-v2', weight: 50 },
      ],
      p.id,
    );
  }
  // The client and the ingress call shop by their config; nothing else does (a sidecar
  // reaches only its service's declared upstreams).
  assert.deepEqual(callers.sort(), acked[2]!.split(', ').sort(), 'the command waited for exactly the proxies that call shop');
  assert.ok(callers.includes('client-0') && callers.includes('trellis-ingress'), callers.join(', '));
  assert.match(
    await readFile(join(dir, 'shop-weights.yaml'), 'utf8'),
    /^# The traffic split between the versions of shop[\s\S]*- name: shop-v1\n {10}weight: 50\n/,
  );
});

test('a hand edit of the route file reaches every proxy that calls the service, and no request of a steady load fails', async (t) => {
  const file = join(dir, 'shop-weights.yaml');
  const text = await readFile(file, 'utf8');
  let answered = 0;
  const load = runLoad({
    url: `http://127.0.0.1:${port}/`,
    rate: 100,
    durationMs: 3000,
    warmupMs: 0,
    connections: 8,
    timeoutMs: 5000,
    onRequest: () => answered++,
  });
  // The edit lands under way: once a second's worth of the load has been answered.
  await eventually(() => answered >= 100, { what: 'the load under way' });
  const t0 = performance.now();
  await writeFile(file, text.replace(/weight: 50\n([\s\S]*)weight: 50\n/, 'weight: 30\n$1weight: 70\n'));
  const callers = await eventually(async () => {
    const { proxies } = await getJson<{ proxies: ProxyView[] }>(`${mesh.state.control}/v1/proxies`);
    const pending: string[] = [];
    let callers = 0;
    for (const p of proxies.filter((x) => x.connected)) {
      const snapshot = await getJson<Snapshot>(`${mesh.state.control}/v1/snapshots/${p.id}`);
      const shop = shopRoute(snapshot);
      if (!shop) continue;
      callers++;
      const weights = shop.backends.map((b) => b.weight);
      if (JSON.stringify(weights) !== '[30,70]' || (p.ackedVersion ?? 0) < snapshot.version) pending.push(p.id);
    }
    assert.deepEqual(pending, [], 'every caller acknowledged a snapshot with the new weights');
    return callers;
  });
  t.diagnostic(
    `hand edit acknowledged by all ${callers} callers ${Math.round(performance.now() - t0)} ms after the file was written (the watcher waits 100 ms for quiet first)`,
  );
  assert.ok(callers >= 2);
  const result = await load;
  assert.equal(result.errors.total, 0, JSON.stringify(result.errors));
  assert.ok(result.completed >= 290, `the load ran (${result.completed} requests)`);
});

test('bad arguments exit 2, a change the config cannot take exits 1, and nothing changes', async () => {
  const routes = await readFile(join(dir, 'shop-weights.yaml'), 'utf8');
  assert.match(routes, /weight: 30\n[\s\S]*weight: 70\n/);
  const usage: [string[], RegExp][] = [
    [['nosuch', 'v1=1'], /no service named "nosuch" in the mesh; its services are: client, shop/],
    [['shop', 'v3=1'], /shop has no version "v3"; its versions are: v1, v2/],
    [['shop', 'v1=ninety'], /"v1=ninety" is not VERSION=WEIGHT with a whole number/],
    [['shop', 'v1=0', 'v2=0'], /every weight is 0/],
  ];
  for (const [args, message] of usage) {
    const r = await trellisCli(['route', 'weights', ...args, '--admin', admin]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }

  // A broken file on disk: the control plane keeps the last good config and refuses to edit on top.
  const meshText = await readFile(join(dir, 'mesh.yaml'), 'utf8');
  await writeFile(join(dir, 'mesh.yaml'), meshText.replace('- name: v2', '- name: v2\n          replicas: many'));
  try {
    await eventually(async () => {
      const config = await getJson<{ reloadFailed: unknown }>(`${mesh.state.control}/v1/config`);
      assert.ok(config.reloadFailed, 'the broken file was read and refused');
    });
    const r = await trellisCli(['route', 'weights', 'shop', 'v1=1', '--admin', admin]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the weights of shop were not changed: the config files on disk do not load/);
  } finally {
    await writeFile(join(dir, 'mesh.yaml'), meshText);
  }
  assert.equal(await readFile(join(dir, 'shop-weights.yaml'), 'utf8'), routes);
});
