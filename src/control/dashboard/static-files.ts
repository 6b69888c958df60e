// The dashboard's page and the few libraries it uses, served as plain ES modules: no
// bundler, no build step. The page's own files are the ones in dashboard/ (at the
// repository's root); the libraries are served straight from node_modules, by an
// allow-list of exact files, so no request can name any other file.
//
// Every answer carries a Content-Security-Policy that lets scripts come from this origin
// only (plus the one inline import map, by its hash): whatever text from config or
// requests the page shows, it can only ever be text.
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/src/control/dashboard/). */
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** Library files, by the path the page asks for. */
const VENDOR: Readonly<Record<string, string>> = {
  'vendor/preact.mjs': 'node_modules/preact/dist/preact.module.js',
  'vendor/preact-hooks.mjs': 'node_modules/preact/hooks/dist/hooks.module.js',
  'vendor/htm.mjs': 'node_modules/htm/dist/htm.module.js',
  'vendor/uplot.mjs': 'node_modules/uplot/dist/uPlot.esm.js',
  'vendor/uplot.css': 'node_modules/uplot/dist/uPlot.min.css',
  'vendor/dagre.mjs': 'node_modules/@dagrejs/dagre/dist/dagre.esm.js',
};

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

const IMPORT_MAP = /<script type="importmap">([\s\S]*?)<\/script>/;

export interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
}

export class StaticFiles {
  /** Relative path under /dashboard/ → file on disk. */
  readonly #files = new Map<string, string>();
  readonly #cache = new Map<string, StaticFile>();
  #csp: string | undefined;

  constructor(dir = path.join(ROOT, 'dashboard'), root = ROOT) {
    // A copy of the control plane without the page (the folder left out) serves no page, and still runs.
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      names = [];
    }
    for (const name of names) {
      if (/^[a-z0-9-]+\.(js|css|html)$/.test(name)) this.#files.set(name, path.join(dir, name));
    }
    for (const [rel, file] of Object.entries(VENDOR)) this.#files.set(rel, path.join(root, file));
  }

  /** The file at `rel` (the path after /dashboard/; '' is index.html), or undefined. */
  async get(rel: string): Promise<StaticFile | undefined> {
    const name = rel === '' ? 'index.html' : rel;
    const cached = this.#cache.get(name);
    if (cached) return cached;
    const file = this.#files.get(name);
    if (file === undefined) return undefined;
    const body = await readFile(file);
    const f = { body, type: TYPES[path.extname(name)] ?? 'application/octet-stream' };
    this.#cache.set(name, f);
    return f;
  }

  /** The Content-Security-Policy of every dashboard answer. */
  async csp(): Promise<string> {
    if (this.#csp === undefined) {
      const index = (await this.get(''))?.body.toString('utf8') ?? '';
      const map = IMPORT_MAP.exec(index)?.[1];
      const hash = map === undefined ? '' : ` 'sha256-${createHash('sha256').update(map).digest('base64')}'`;
      this.#csp = [
        "default-src 'none'",
        `script-src 'self'${hash}`,
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join('; ');
    }
    return this.#csp;
  }
}
