// Every write to a watched config file ends up applied, whenever it lands: while a
// reload is reading or compiling, right after another write, by an editor's
// write-to-temp-then-rename, or by a Kubernetes ConfigMap's symlink swap that fires no
// event at all. (An edit landing about 100 ms after the previous one, during the
// reload, used to stay unapplied until the next edit.)
import assert from 'node:assert/strict';
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { loadConfig } from '../../src/config/load.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import type { ConfigLoader } from '../../src/control/sources/config-watcher.js';
import { MESH_YAML, routesYaml, tempDir, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { eventually } from '../helpers/eventually.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

const backendOf = (p: ControlPlane): string | undefined => p.model.config.routes[0]?.resource.spec.rules[0]?.backendRefs?.[0]?.name;

/** Blocks the thread, as compiling snapshots for many proxies does after the files are read. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* the reload's synchronous part */
  }
}

async function plane(dir: string, load: ConfigLoader, opts: { pollMs?: number; debounceMs?: number } = {}): Promise<ControlPlane> {
  const p = await startControlPlane({
    bootstrapSecret: TEST_BOOTSTRAP_SECRET,
    configPaths: [path.join(dir, 'mesh.yaml')],
    admin: { host: '127.0.0.1', port: 0 },
    log: () => {},
    load,
    // No poll unless asked: these tests show that events and the after-reload check alone lose nothing.
    watchPollMs: opts.pollMs ?? 0,
    watchDebounceMs: opts.debounceMs ?? 100,
    pushDebounceMs: 5,
    health: { schedule: false },
  });
  cleanup.push(() => p.close());
  return p;
}

test('a write landing after a reload read the files, before it finished, is applied', async () => {
  const files = await tempDir();
  cleanup.push(() => files.remove());
  await files.write('mesh.yaml', MESH_YAML);
  const routesFile = await files.write('routes.yaml', routesYaml('backend-v1'));
  let loads = 0;
  let armed = false;
  const p = await plane(
    files.dir,
    async (paths) => {
      const result = await loadConfig(paths);
      loads++;
      // The first reload after the start: the next edit lands now, after this load read the file.
      if (armed) {
        armed = false;
        writeFileSync(routesFile, routesYaml('backend'));
      }
      return result;
    },
    { debounceMs: 20 },
  );
  armed = true;
  const before = loads;
  await writeFile(routesFile, routesYaml('backend-v2'));
  await eventually(() => loads > before, { what: 'the reload of the first edit' });
  await eventually(() => backendOf(p) === 'backend', { what: 'the edit that landed during the reload, applied' });
});

/** Writes A, waits `gapMs` (blocking, in another thread, so it may land mid-reload), writes B. */
function writeTwice(file: string, a: string, b: string, gapMs: number, byRename: boolean): Promise<void> {
  const code = `
    const { workerData: w, parentPort } = require('node:worker_threads');
    const fs = require('node:fs');
    const put = (text, n) => {
      if (!w.byRename) return fs.writeFileSync(w.file, text);
      // As editors and atomic-write libraries save: a temp file beside it, renamed over it.
      const tmp = w.file.replace(/[^/]+$/, (name) => '.' + name + '.tmp-' + n);
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, w.file);
    };
    put(w.a, 1);
    if (w.gapMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, w.gapMs);
    put(w.b, 2);
    parentPort.postMessage('done');
  `;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData: { file, a, b, gapMs, byRename } });
    worker.once('message', () => resolve());
    worker.once('error', reject);
    worker.once('exit', (c) => (c === 0 ? resolve() : reject(new Error(`writer exited with ${c}`))));
  });
}

// The gaps straddle the debounce (100 ms) and the reload it starts, whose synchronous
// part is stretched to 60 ms so that some second writes land inside it. Real timers:
// the gaps are the thing under test. Each pair is asserted with eventually(), not a sleep.
test('a second write at any gap from 0 to 500 ms after the first is applied, in place or by rename', async () => {
  const files = await tempDir();
  cleanup.push(() => files.remove());
  await files.write('mesh.yaml', MESH_YAML);
  const routesFile = await files.write('routes.yaml', routesYaml('backend'));
  const p = await plane(files.dir, async (paths) => {
    const result = await loadConfig(paths);
    busy(60);
    return result;
  });
  // An in-place write truncates first: a load reading between the truncation and the
  // write would see an empty route file, which is valid (no routes). Never applied.
  const torn: string[] = [];
  p.model.on('change', (reason) => {
    if (reason === 'config' && p.model.config.routes.length === 0) torn.push('a config with no routes was put in force');
  });
  const names = ['backend-v1', 'backend-v2', 'backend'];
  let n = 0;
  const lost: string[] = [];
  for (const byRename of [false, true]) {
    for (const gapMs of [0, 10, 25, 50, 100, 150, 200, 300, 500]) {
      const a = names[n++ % 3]!;
      const b = names[n++ % 3]!;
      await writeTwice(routesFile, routesYaml(a), routesYaml(b), gapMs, byRename);
      try {
        await eventually(() => backendOf(p) === b, { what: `${b} applied` });
      } catch {
        lost.push(`${byRename ? 'rename' : 'in place'}, gap ${gapMs} ms: ${b} never applied (in force: ${backendOf(p)})`);
        // Start the next pair from what is on disk.
        await writeFile(routesFile, routesYaml(b));
        await eventually(() => backendOf(p) === b, { what: 'recovery' });
      }
    }
  }
  assert.deepEqual(lost, []);
  assert.deepEqual(torn, []);
});

// A ConfigMap volume: routes.yaml → ..data/routes.yaml, and an update swaps the `..data`
// symlink to a new folder. Nothing the watchers watch changes, so no event fires; the
// periodic fingerprint check sees the link resolve to a new file.
test('a change no event reports (a ConfigMap symlink swap) is applied by the periodic check', async () => {
  const files = await tempDir();
  cleanup.push(() => files.remove());
  await files.write('mesh.yaml', MESH_YAML);
  await mkdir(path.join(files.dir, 'data-1'));
  await writeFile(path.join(files.dir, 'data-1', 'routes.yaml'), routesYaml('backend-v1'));
  await symlink('data-1', path.join(files.dir, '..data'));
  await symlink(path.join('..data', 'routes.yaml'), path.join(files.dir, 'routes.yaml'));
  const p = await plane(files.dir, loadConfig, { pollMs: 50, debounceMs: 20 });
  assert.equal(backendOf(p), 'backend-v1');

  await mkdir(path.join(files.dir, 'data-2'));
  await writeFile(path.join(files.dir, 'data-2', 'routes.yaml'), routesYaml('backend-v2'));
  await symlink('data-2', path.join(files.dir, '..data_tmp'));
  await rename(path.join(files.dir, '..data_tmp'), path.join(files.dir, '..data'));
  await eventually(() => backendOf(p) === 'backend-v2', { what: 'the swapped file applied' });
});
