// The Gateway API's mesh conformance tests (cases.ts) through real sidecars: each mesh
// of meshes.ts is started once with `trellis up`, then each of its cases puts its routes
// in force and sends its requests from the client pod's sidecar. A case marked todo runs
// too; its failure is reported with the reason it fails on main, and not counted.
import { after, describe, test } from 'node:test';
import { CASES } from './cases.js';
import { ConformanceMesh } from './harness.js';
import { MESHES } from './meshes.js';

for (const def of MESHES) {
  const cases = CASES.filter((c) => c.mesh === def.id);
  if (cases.length === 0) continue;
  describe(`Gateway API mesh conformance on mesh "${def.id}"`, () => {
    const mesh = new ConformanceMesh(def);
    after(() => mesh.stop());
    for (const c of cases) {
      const options = c.outcome.status === 'todo' ? { todo: c.outcome.reason } : {};
      test(`${c.name} (${c.kind})`, options, async () => {
        await mesh.applyRoutes(c.routes);
        // Every check runs, so a failing case lists all that it gets wrong.
        const failures: string[] = [];
        for (const check of c.checks) {
          try {
            await mesh.check(check);
          } catch (err) {
            failures.push(`${check.name}: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
        if (failures.length > 0) throw new Error(`${failures.length} of ${c.checks.length} checks failed:\n- ${failures.join('\n- ')}`);
      });
    }
  });
}
