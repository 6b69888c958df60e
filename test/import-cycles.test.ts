// The import-cycle check CI runs (scripts/import-cycles.mjs) finds a cycle made only of
// type imports, closes loops through every way a module can name another, and passes a
// tree without one: run as CI runs it, on small trees written for each case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../scripts/import-cycles.mjs', import.meta.url));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Writes `files` (path → text) into a fresh folder set up as this repo is (ESM, NodeNext), runs the check on it, removes the folder. */
async function check(files: Record<string, string>): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), 'import-cycles-'));
  try {
    const all: Record<string, string> = {
      'package.json': JSON.stringify({ type: 'module' }),
      'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
      ...files,
    };
    for (const [path, text] of Object.entries(all)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), text);
    }
    return await new Promise<Run>((done) => {
      execFile(process.execPath, [script, 'src', '--project', 'tsconfig.json'], { cwd: dir }, (err, stdout, stderr) => {
        done({ code: err ? Number(err.code) : 0, stdout, stderr });
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a cycle made only of type imports fails the check and is printed with its files', async () => {
  const run = await check({
    'src/model/route.ts': "import type { Backend } from './backend.js';\nexport interface Route { readonly backends: Backend[] }\n",
    'src/model/backend.ts': "import type { Route } from './route.js';\nexport interface Backend { readonly route: Route }\n",
    'src/main.ts': "import type { Route } from './model/route.js';\nexport const name = (r: Route): number => r.backends.length;\n",
  });
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /cycle 1 of 1: 2 files/);
  assert.match(run.stdout, /src\/model\/backend\.ts\n\s+imports src\/model\/route\.ts \(type-only\)/);
  assert.match(run.stdout, /src\/model\/route\.ts\n\s+imports src\/model\/backend\.ts \(type-only\)/);
  assert.doesNotMatch(run.stdout, /src\/main\.ts/, 'a file that only imports into the cycle is not part of it');
  assert.match(run.stdout, /^import cycles: 1 \(2 of 3 files in src;/m);
});

test('a loop closed by export-from, a dynamic import, a typeof import() type and an index file is one cycle', async () => {
  const run = await check({
    // a -> b by re-export, b -> c by dynamic import, c -> lib/index.ts by a type query, lib/index.ts -> a by a type-only named import
    'src/a.ts': "export { b } from './b.js';\nexport const a = 1;\n",
    'src/b.ts': "export const b = async (): Promise<number> => (await import('./c.js')).c;\n",
    'src/c.ts': "export const c = 3;\nexport type Lib = typeof import('./lib/index.js');\n",
    'src/lib/index.ts': "import { type a } from '../a.js';\nexport type A = typeof a;\n",
  });
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /cycle 1 of 1: 4 files/);
  for (const f of ['src/a.ts', 'src/b.ts', 'src/c.ts', 'src/lib/index.ts']) assert.match(run.stdout, new RegExp(`^  ${f.replaceAll('.', '\\.')}$`, 'm'));
});

test('a tree without a cycle passes, shared imports and re-exports included', async () => {
  const run = await check({
    'src/types.ts': 'export interface Route { readonly name: string }\n',
    'src/router.ts': "import type { Route } from './types.js';\nexport const pick = (r: Route[]): Route | undefined => r[0];\n",
    'src/index.ts': "export * from './types.js';\nexport { pick } from './router.js';\nexport const later = () => import('./router.js');\n",
    'src/main.ts':
      "import { pick } from './index.js';\nimport type { Route } from './types.js';\nimport 'node:fs';\nexport const first = (r: Route[]) => pick(r);\n",
  });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.doesNotMatch(run.stdout, /^cycle/m);
  assert.match(run.stdout, /^import cycles: 0 \(0 of 4 files in src;/m);
});

test('a file that imports itself is a cycle', async () => {
  const run = await check({ 'src/self.ts': "import type { T } from './self.js';\nexport type T = { next?: T };\nexport type U = T;\n" });
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /cycle 1 of 1: 1 file\n/);
});

test('a folder that does not exist is a usage error, not a pass and not a cycle', async () => {
  const run = await check({ 'lib/x.ts': 'export const x = 1;\n' });
  assert.equal(run.code, 2, run.stdout + run.stderr);
  assert.match(run.stderr, /is not a directory/);
});
