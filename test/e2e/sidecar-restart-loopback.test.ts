// `trellis up` on loopback (no --isolate): the runner holds each sidecar's outbound
// listeners across its restarts too (src/runner/held-listeners.ts). The client's sidecar
// is killed (SIGKILL: a crash) while connections to its listener for web keep coming at a
// bounded rate, as the client app's would: none is refused, the ones opened while no
// sidecar ran are served by the next one, and only one the killed sidecar held may fail.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { meshUp, REPO, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';

const MESH = join(REPO, 'test/fixtures/sidecar-restart/mesh.yaml');

/** One request on a new connection: [start, end, status or error code]. */
function once(port: number): Promise<[number, number, number | string]> {
  const start = Date.now();
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host: 'web' }, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve([start, Date.now(), res.statusCode ?? 0]));
      res.on('error', (e: NodeJS.ErrnoException) => resolve([start, Date.now(), e.code ?? e.message]));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve([start, Date.now(), e.code ?? e.message]));
  });
}

describe('trellis up (loopback): a sidecar restart refuses none of its app connections', { timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-sidecar-restart-'));
  let mesh: RunningMesh | undefined;

  before(async () => {
    mesh = await meshUp(MESH, dir, ['--free-ports']);
  });

  after(async () => {
    try {
      await stopMesh(mesh);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the client's sidecar is killed under a bounded stream of new connections", async () => {
    const client = mesh?.state.instances.find((i) => i.id === 'client-0');
    assert.ok(client?.sidecarPid !== undefined, 'client-0 has a sidecar');
    const port = client.upstreams.find((u) => u.service === 'web')?.port;
    assert.ok(port !== undefined, 'client-0 has a listener for web');
    await eventually(async () => assert.equal((await once(port))[2], 200), { timeoutMs: 20_000, intervalMs: 200 });

    // A new connection every 25 ms, each answered or failed within 30 s, until 20 opened
    // after the restarted sidecar is ready have been answered 200 (bounded: 10 s, 400).
    const pending: Promise<[number, number, number | string]>[] = [];
    const served: [number, number, number | string][] = [];
    let readyAt = Number.POSITIVE_INFINITY;
    const end = Date.now() + 10_000;
    const load = (async () => {
      while (Date.now() < end && pending.length < 400 && served.filter((r) => r[0] > readyAt && r[2] === 200).length < 20) {
        const one = once(port);
        void one.then((r) => served.push(r));
        pending.push(one);
        await sleep(25);
      }
    })();
    await eventually(async () => {
      const settled = await Promise.all(pending.slice(0, 20).map((p) => Promise.race([p, Promise.resolve(undefined)])));
      return pending.length >= 20 && settled.every((r) => r !== undefined);
    });
    const killedAt = Date.now();
    process.kill(client.sidecarPid, 'SIGKILL');
    await eventually(
      async () => {
        const res = await fetch(`http://${client.admin.host}:${client.admin.port}/ready`);
        await res.arrayBuffer();
        assert.equal(res.status, 200);
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    readyAt = Date.now();
    await load;
    const results = await Promise.all(pending);
    const failed = results.filter((r) => r[2] !== 200);
    const refused = results.filter((r) => r[2] === 'ECONNREFUSED');
    const whileDown = results.filter((r) => r[0] > killedAt + 50 && r[0] < readyAt);
    const line = `${results.length} connections, ${failed.length} failed (${refused.length} refused), ${whileDown.length} opened while the sidecar was down; ready again ${readyAt - killedAt} ms after the kill`;
    console.log(`# loopback sidecar restart: ${line}`);
    assert.deepEqual(refused, [], line);
    for (const f of failed)
      assert.ok(f[0] <= killedAt + 50 && f[1] >= killedAt, `request failed (${f[2]}) though not in flight at the kill: ${JSON.stringify(f)} (${line})`);
    assert.ok(whileDown.length > 0, line);
    assert.ok(
      results.some((r) => r[0] > readyAt && r[2] === 200),
      `requests after the restart are served (${line})`,
    );
  });
});
