// The scale scenario's harness (bench/scale.ts) against a real `trellis control`: a few
// simulated proxies register, settle, and a route edit reaches exactly the callers of
// the edited service. The numbers are the bench's business; this checks they are real.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { formatScale, runScale } from '../../bench/scale.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'trellis-scale-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('scale harness', () => {
  it('registers simulated proxies on the real protocol and times a route change at its callers', async () => {
    const r = await runScale({ repoRoot, dir, proxies: 6, services: 3, calls: 1, quietMs: 1500, phaseTimeoutMs: 30_000, log: () => {} });
    assert.equal(r.error, undefined);
    assert.equal(r.connected, 6);
    assert.ok(r.registrationMs !== undefined && r.registrationMs > 0, 'settled');
    assert.ok(r.snapshotsPerProxy.mean >= 1);
    assert.ok(r.registrationMb > 0);
    // Only svc-2 calls svc-0 (each service calls the next one): its two instances.
    assert.equal(r.fanOut.callers, 2);
    assert.equal(r.fanOut.reached, 2);
    assert.ok(r.fanOut.allMs !== undefined);
    assert.ok(r.controlRssMb !== undefined && r.controlRssMb > 10);
    assert.match(formatScale([r]), /^6\s+\d+\.\d s/m);
  });
});
