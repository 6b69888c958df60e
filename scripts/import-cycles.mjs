#!/usr/bin/env node
// Fails when a TypeScript tree has an import cycle, type-only imports included: a
// cycle of `import type` tangles the data model as much as a value cycle does (the
// src/proxy knot of issue 11 is made of them).
//
// Why a script of our own, not dpdm or madge: both find cycles, but dpdm adds 42
// packages (34 MB: a spinner, a CLI parser, chalk, glob, fs-extra) and prints one knot as
// a list of overlapping paths (17 for our 14-file knot); madge adds 141 packages (51 MB,
// detectives for languages we don't write). This file reads each module with the
// TypeScript compiler we already pin and resolves each specifier with
// ts.resolveModuleName and our tsconfig's options, so `.js` specifiers, index files and
// NodeNext rules resolve exactly as tsc resolves them, with no new dependency.
//
// usage: node scripts/import-cycles.mjs [DIR=src] [--project tsconfig.json]
// Prints each cycle (a strongly connected component of the import graph: the files
// that all reach each other), each file with the imports that keep it in the cycle
// (marked when type-only), then a summary line.
// Exit 0: no cycle; 1: at least one cycle; 2: usage or config error.
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

// A crash must not read as "cycles found" (exit 1).
process.on('uncaughtException', (err) => {
  console.error(`import-cycles: ${err.stack ?? err}`);
  process.exit(2);
});

const argv = process.argv.slice(2);
const projectAt = argv.indexOf('--project');
const projectArg = projectAt >= 0 ? argv[projectAt + 1] : undefined;
if (projectAt >= 0 && projectArg === undefined) usage('--project needs a tsconfig path');
const positional = argv.filter((a, i) => !a.startsWith('--') && (projectAt < 0 || i !== projectAt + 1));
if (positional.length > 1) usage(`one directory, got ${positional.length}`);
const root = resolve(positional[0] ?? 'src');
if (!existsSync(root) || !statSync(root).isDirectory()) usage(`${root} is not a directory`);

const options = compilerOptions(projectArg ? resolve(projectArg) : ts.findConfigFile(root, ts.sys.fileExists));
const resolutionCache = ts.createModuleResolutionCache(root, (f) => f, options);
const files = walk(root);
const inTree = new Set(files);
const edges = new Map(files.map((f) => [f, importsOf(f)]));
const graph = new Map([...edges].map(([f, deps]) => [f, [...deps.keys()]]));
const cycles = stronglyConnected(graph);

const show = (f) => relative(process.cwd(), f) || f;
for (const [i, comp] of cycles.entries()) {
  console.log(`cycle ${i + 1} of ${cycles.length}: ${comp.length} file${comp.length === 1 ? '' : 's'}`);
  const members = new Set(comp);
  for (const f of [...comp].sort()) {
    const inside = [...edges.get(f)].filter(([dep]) => members.has(dep));
    console.log(`  ${show(f)}`);
    console.log(`      imports ${inside.map(([dep, typeOnly]) => `${show(dep)}${typeOnly ? ' (type-only)' : ''}`).join(', ')}`);
  }
}
const inCycles = cycles.reduce((n, c) => n + c.length, 0);
console.log(`import cycles: ${cycles.length} (${inCycles} of ${files.length} files in ${show(root)}; type-only imports included)`);
process.exitCode = cycles.length > 0 ? 1 : 0;

function usage(why) {
  console.error(`import-cycles: ${why}\nusage: node scripts/import-cycles.mjs [DIR=src] [--project tsconfig.json]`);
  process.exit(2);
}

/** The tsconfig's options (found above DIR unless --project names one), or NodeNext defaults without one. */
function compilerOptions(configPath) {
  if (!configPath) return { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, allowJs: true };
  const read = ts.readConfigFile(configPath, ts.sys.readFile);
  if (read.error) usage(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'));
  return ts.parseJsonConfigFileContent(read.config, ts.sys, dirname(configPath)).options;
}

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (name === 'node_modules') continue;
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.(c|m)?tsx?$/.test(name)) out.push(p);
  }
  return out;
}

/**
 * Every file in the tree that `file` names in a module specifier, type positions and
 * dynamic imports included, mapped to whether every such import of it is type-only.
 */
function importsOf(file) {
  const host = ts.sys;
  const source = ts.createSourceFile(
    file,
    readFileSync(file, 'utf8'),
    {
      languageVersion: ts.ScriptTarget.Latest,
      impliedNodeFormat: ts.getImpliedNodeFormatForFile(file, resolutionCache.getPackageJsonInfoCache(), host, options),
    },
    true,
  ); // parent links: the resolution mode of a specifier depends on the statement around it
  const deps = new Map();
  const add = (lit, typeOnly) => {
    if (!lit || !ts.isStringLiteralLike(lit)) return;
    const mode = ts.getModeForUsageLocation(source, lit, options);
    const hit = ts.resolveModuleName(lit.text, file, options, host, resolutionCache, undefined, mode).resolvedModule;
    // Only edges inside the tree count; packages and node: builtins cannot close a loop here.
    if (!hit || !inTree.has(resolve(hit.resolvedFileName))) return;
    const dep = resolve(hit.resolvedFileName);
    deps.set(dep, (deps.get(dep) ?? true) && typeOnly);
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node))
      add(node.moduleSpecifier, isTypeOnlyImport(node)); // incl. `import type`, side-effect imports
    else if (ts.isExportDeclaration(node))
      add(node.moduleSpecifier, isTypeOnlyExport(node)); // `export ... from`, `export * from`
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression, node.isTypeOnly);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument))
      add(node.argument.literal, true); // `typeof import('./x.js')`
    else if (ts.isCallExpression(node) && isImportOrRequire(node.expression)) add(node.arguments[0], false); // `import('./x.js')`, `require('./x')`
    ts.forEachChild(node, visit);
  };
  visit(source);
  return new Map([...deps].sort(([a], [b]) => (a < b ? -1 : 1)));
}

function isTypeOnlyImport(node) {
  const clause = node.importClause;
  if (!clause) return false; // `import './x.js'` runs the module
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return !clause.name && named !== undefined && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
}

function isTypeOnlyExport(node) {
  if (node.isTypeOnly) return true;
  const named = node.exportClause;
  return named !== undefined && ts.isNamedExports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
}

function isImportOrRequire(callee) {
  return callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require');
}

/** Tarjan's algorithm, iterative so a long import chain cannot overflow the stack. Components of one file are not cycles unless the file imports itself. */
function stronglyConnected(g) {
  let next = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  for (const start of g.keys()) {
    if (index.has(start)) continue;
    const work = [[start, 0]];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const [v, i] = frame;
      const edges = g.get(v) ?? [];
      if (i < edges.length) {
        frame[1] = i + 1;
        const w = edges[i];
        if (!index.has(w)) {
          index.set(w, next);
          low.set(w, next++);
          stack.push(w);
          onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent), low.get(v)));
      }
      if (low.get(v) !== index.get(v)) continue;
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (g.get(v) ?? []).includes(v)) out.push(comp);
    }
  }
  return out;
}
