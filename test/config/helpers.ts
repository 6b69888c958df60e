// Shared helpers of the config tests: temp folders with YAML files in them, and a
// lookup for the problem at one field path. (Not a test file itself.)
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, Problem } from '../../src/config/load.js';

/** The project root (tests run from dist/test/config/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The committed example config. */
export const FIXTURES = join(ROOT, 'test/fixtures/config');

/** A temp folder for one test file; `write` adds files, `cleanup` removes it all. */
export async function tempDir(): Promise<{ dir: string; write(name: string, text: string): Promise<string>; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-config-'));
  return {
    dir,
    async write(name, text) {
      const file = join(dir, name);
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, text);
      return file;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A Mesh document with the given services block (already indented under `services:`). */
export function mesh(services: string, extra = ''): string {
  return `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: test
spec:
${extra}  services:
${services}`;
}

/** An HTTPRoute document with the given spec body (indented under `spec:`). */
export function route(name: string, spec: string): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ${name}
spec:
${spec}`;
}

/** The one problem at `path`, asserting it exists and is in `file`. */
export function problemAt(result: LoadResult, path: string, file?: string): Problem {
  const found = result.problems.filter((p) => p.path === path);
  assert.equal(found.length, 1, `expected one problem at ${path}, got:\n${result.problems.map((p) => JSON.stringify(p)).join('\n')}`);
  const problem = found[0]!;
  if (file !== undefined) assert.equal(problem.file, file);
  return problem;
}
