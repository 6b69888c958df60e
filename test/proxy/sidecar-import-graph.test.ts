// What a sidecar loads when it starts (issue 13: ≤ 60 MB of resident memory a sidecar):
// the module `trellis proxy` runs must not load, at import, the packages a proxy needs
// rarely or never and that cost megabytes each: jose (JWT rules only, loaded then),
// @peculiar/x509 with tsyringe and reflect-metadata (the CA's; a proxy makes its CSR
// with node:crypto), yaml (config files, read by the control plane), hdr-histogram-js
// (the load generator's), the OpenTelemetry API, and prom-client's index (its
// default collectors; the proxy takes Registry, Counter and Gauge part by part).
// Nor may it import a CommonJS package as an ES module: Node 20 then starts its CommonJS
// export lexer, a WebAssembly module, 2-5 MB of resident memory (dns-packet did).
// Each entry is imported in a fresh process that records every module resolved, ES
// modules (a resolve hook) and CommonJS ones (require.cache) alike; no timings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runModuleScript } from '../helpers/module-child.js';

/** Records the URL of every ES module resolved, synchronously, in the file it is given. */
const HOOKS = `
import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(log, r.url + '\\n');
  return r;
}`;

// argv: the module to import. Prints the files under node_modules it loaded, as paths relative to node_modules.
const CHILD = `
import { register, createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runModuleScript } from '../helpers/module-child.js';
const dir = mkdtempSync(join(tmpdir(), 'import-graph-'));
const log = join(dir, 'resolved');
try {
  register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}), import.meta.url, { data: { log } });
  await import(process.argv[1]);
  const esm = readFileSync(log, 'utf8').split('\\n').filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u));
  const cjs = Object.keys(createRequire(import.meta.url).cache);
  const rel = (f) => { const i = f.lastIndexOf('/node_modules/'); return i === -1 ? [] : [f.slice(i + 14)]; };
  const files = [...new Set([...esm, ...cjs])].flatMap(rel);
  console.log(JSON.stringify({ files, esm: esm.flatMap(rel) }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}`;

/**
 * Files under node_modules that importing `module` (relative to dist/src) loads, e.g.
 * `prom-client/lib/counter.js`; `esm`: those of them imported as ES modules.
 */
function loadedWith(module: string): Promise<{ files: string[]; esm: string[] }> {
  const url = new URL(`../../src/${module}`, import.meta.url).href;
  return runModuleScript<{ files: string[]; esm: string[] }>(CHILD, [url], fileURLToPath(new URL('.', import.meta.url)));
}

async function loadedBy(module: string): Promise<string[]> {
  return (await loadedWith(module)).files;
}

/** The package a node_modules path belongs to (`@scope/name` or `name`). */
function packageOf(file: string): string {
  const parts = file.split('/');
  return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

const NOT_AT_START = ['jose', '@peculiar/x509', 'tsyringe', 'reflect-metadata', 'yaml', 'hdr-histogram-js', '@opentelemetry/api', 'tdigest'];

for (const entry of ['cli/proxy.js', 'proxy/sidecar.js']) {
  test(`importing ${entry} loads none of ${NOT_AT_START.join(', ')}, nor prom-client's index, nor a package as an ES module`, async () => {
    const { files, esm } = await loadedWith(entry);
    assert.deepEqual(esm, [], `${entry} imports packages as ES modules (take CommonJS ones with createRequire)`);
    const packages = new Set(files.map(packageOf));
    for (const p of NOT_AT_START) assert.ok(!packages.has(p), `${entry} loads ${p} at import`);
    assert.ok(
      !files.includes('prom-client/index.js'),
      `${entry} loads prom-client's index (its default collectors); take its parts from src/telemetry/prom-client-parts.ts`,
    );
    // The parts it does use are seen, so the check sees CommonJS packages.
    assert.ok(files.includes('prom-client/lib/registry.js'), `prom-client's registry not seen among ${files.join(', ')}`);
  });
}

test('the check sees what a module loads, ES modules and CommonJS alike', async () => {
  // The CA's X.509 module (CommonJS packages) and the config loader (yaml, an ES module).
  const x509 = new Set((await loadedBy('security/x509.js')).map(packageOf));
  for (const p of ['@peculiar/x509', 'tsyringe', 'reflect-metadata']) assert.ok(x509.has(p), `${p} not seen`);
  assert.ok(new Set((await loadedBy('config/yaml-source.js')).map(packageOf)).has('yaml'), 'yaml not seen');
});
