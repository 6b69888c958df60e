// The big-mesh scenario's harness (bench/bigmesh.ts) against a real `trellis control` and
// a real sidecar: meshes of two sizes, the sidecar's memory sampled, its snapshot holding
// exactly the five services it calls, and a route edit elsewhere applied (it reached the
// edited service's callers) without reaching the sidecar. The numbers are the bench's
// business; this checks they are real.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { formatBigMesh, runBigMesh } from '../../bench/bigmesh.js';
import { Processes } from '../../bench/targets.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'trellis-bigmesh-test-'));
const procs = new Processes();
after(async () => {
  await procs.stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('big-mesh harness', () => {
  it('samples a real sidecar in two mesh sizes and tells what of the mesh reached it', async () => {
    const r = await runBigMesh({ procs, repoRoot, dir, sizes: [6, 12], calls: 5, rounds: 1, settleS: 0.2, log: () => {} });
    assert.deepEqual(
      r.rounds.map((x) => x.services),
      [6, 12],
    );
    for (const x of r.rounds) {
      assert.equal(x.instances, x.services);
      assert.ok(x.idle.rssMb > 10 && x.afterChange.rssMb > 10);
      assert.ok(x.idle.heapUsedMb !== undefined && x.idle.heapUsedMb > 0);
      assert.deepEqual(x.afterChange.upstreams, ['svc-0', 'svc-1', 'svc-2', 'svc-3', 'svc-4']);
      assert.deepEqual(x.foreign, []);
      assert.equal(x.editReachedCallers, true);
      assert.equal(x.receivedForeignChange, false);
    }
    assert.match(formatBigMesh(r), /^12\s+12\s+\d+\.\d/m);
  });
});
