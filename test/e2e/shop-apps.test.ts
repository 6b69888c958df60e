// The demo shop's apps (examples/shop) on their own, without the mesh: each started as
// the runner would start it (node + environment), wired straight to each other through
// the TRELLIS_UPSTREAM_* variables the sidecars would otherwise provide.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/eventually.js';

// dist/test/e2e/ → the repository root
const SHOP = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../examples/shop');

const hasRedis = ((): boolean => {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
})();

interface App {
  readonly name: string;
  readonly child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Resolves when its output matches `pattern`; rejects on exit or after `ms`. */
  waitFor(pattern: RegExp, ms: number): Promise<void>;
}

const apps: App[] = [];

/** Starts `command` in examples/shop with only the environment a runner would give it. */
function start(name: string, command: string, args: string[], env: Record<string, string>): App {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('TRELLIS_') && !key.startsWith('SHOP_') && !key.startsWith('PG') && key !== 'DATABASE_URL'),
  );
  const child = spawn(command, args, { cwd: SHOP, env: { ...base, HOST: '127.0.0.1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    text += chunk.toString('utf8');
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const app: App = {
    name,
    child,
    output: () => text,
    waitFor: (pattern, ms) =>
      new Promise<void>((resolve, reject) => {
        const finish = (error?: Error): void => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
          if (error) reject(error);
          else resolve();
        };
        const check = (): void => {
          if (pattern.test(text)) finish();
        };
        const onExit = (code: number | null): void => finish(new Error(`${name} exited (${code}) before printing ${pattern}:\n${text}`));
        const timer = setTimeout(() => finish(new Error(`${name} did not print ${pattern} within ${ms}ms:\n${text}`)), ms);
        listeners.add(check);
        child.once('exit', onExit);
        check();
      }),
  };
  apps.push(app);
  return app;
}

const node = (name: string, script: string, env: Record<string, string>): App => start(name, process.execPath, [script], env);

/** Sends `signal` and waits for the exit; SIGKILL after `ms`. Resolves to the exit code (null when killed). */
async function stop(app: App, signal: NodeJS.Signals = 'SIGTERM', ms = 20_000): Promise<number | null> {
  const { child } = app;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const [code] = await exited;
  clearTimeout(timer);
  return code;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: the JSON the app under test sent; the assertions check its shape
  readonly body: any;
  readonly text: string;
}

async function get(url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the caller looks at `text`
  }
  return { status: response.status, headers: response.headers, body, text };
}

/** Polls `url` until `ok(answer)` holds, for at most `ms`. */
async function waitUntil(url: string, ok: (answer: Answer) => boolean, ms: number): Promise<Answer> {
  return eventually(
    async () => {
      const answer = await get(url);
      assert.ok(ok(answer), `${url} is not ready yet: ${answer.status} ${answer.text.slice(0, 200)}`);
      return answer;
    },
    { timeoutMs: ms, intervalMs: 100 },
  );
}

/** Pids of live processes whose command line mentions `text` (how we look for a leftover postgres). */
async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.replaceAll('\0', ' ').includes(text)) pids.push(Number(entry));
  }
  return pids;
}

describe('shop apps (examples/shop) without the mesh', { timeout: 240_000 }, () => {
  let tmp: string;
  let pgdata: string;
  let postgres: App;
  let postgresPort: number;
  let postgresAddress: string;

  /** Starts backend.js on a free port and waits until it answers /healthz. */
  async function startBackend(version: 'v1' | 'v2', extra: Record<string, string> = {}): Promise<string> {
    const port = await freePort();
    node(`backend-${version}`, 'backend.js', {
      PORT: String(port),
      TRELLIS_SERVICE: 'backend',
      TRELLIS_VERSION: version,
      TRELLIS_INSTANCE: `backend-${version}-test`,
      TRELLIS_UPSTREAM_POSTGRES: postgresAddress,
      ...extra,
    });
    const base = `http://127.0.0.1:${port}`;
    await waitUntil(`${base}/healthz`, (answer) => answer.status === 200, 15_000);
    return base;
  }

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'trellis-shop-'));
    // Run as root, postgres.js runs Postgres as the `postgres` user, which must be able
    // to walk down to its data folder (mkdtemp makes this one 0700).
    await fs.chmod(tmp, 0o755);
    pgdata = path.join(tmp, 'postgres', 'pgdata');
    postgresPort = await freePort();
    postgresAddress = `127.0.0.1:${postgresPort}`;
    postgres = node('postgres', 'postgres.js', {
      PORT: String(postgresPort),
      TRELLIS_SERVICE: 'postgres',
      TRELLIS_DATA_DIR: path.join(tmp, 'postgres'),
    });
    // The first start runs initdb: a few seconds.
    await postgres.waitFor(/postgres ready on 127\.0\.0\.1:\d+/, 90_000);
  });

  after(async () => {
    await Promise.all(apps.map((app) => stop(app, 'SIGTERM', 10_000)));
    // Belt and braces: no Postgres of ours may outlive the test.
    if (pgdata) for (const pid of await processesMentioning(pgdata)) process.kill(pid, 'SIGKILL');
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  it('postgres.js creates and seeds the products table once', () => {
    assert.match(postgres.output(), /seeded 8 products/);
    assert.match(postgres.output(), new RegExp(`postgres ready on 127\\.0\\.0\\.1:${postgresPort}`));
  });

  it('backend v1 serves the seeded products from Postgres, with CORS', async () => {
    const base = await startBackend('v1');
    const answer = await get(`${base}/api/products`);
    assert.equal(answer.status, 200, answer.text);
    assert.equal(answer.headers.get('access-control-allow-origin'), '*');
    assert.equal(answer.headers.get('x-shop-version'), 'v1');
    const { version, instance, source, cache, products } = answer.body;
    assert.deepEqual({ version, instance, source, cache }, { version: 'v1', instance: 'backend-v1-test', source: 'postgres', cache: 'off' });
    assert.equal(products.length, 8);
    assert.deepEqual(Object.keys(products[0]).sort(), ['description', 'id', 'name', 'price_cents']);
    assert.deepEqual(products[0], {
      id: 1,
      name: 'Cedar trellis panel',
      description: 'A 180 × 60 cm panel of untreated cedar for climbers to hold on to.',
      price_cents: 4900,
    });

    const health = await get(`${base}/healthz`);
    assert.equal(health.status, 200);
    const preflight = await get(`${base}/api/products`, {
      method: 'OPTIONS',
      headers: { origin: 'http://127.0.0.1:8080', 'access-control-request-method': 'GET' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
    assert.equal((await get(`${base}/nope`)).status, 404);
  });

  it('backend v2 differs visibly: a "new" badge and 10% off', async () => {
    const base = await startBackend('v2');
    const { status, body } = await get(`${base}/api/products`);
    assert.equal(status, 200);
    assert.equal(body.version, 'v2');
    assert.equal(body.products.length, 8);
    for (const product of body.products) {
      assert.equal(product.badge, 'new');
      assert.equal(product.discount_percent, 10);
      assert.equal(product.price_cents, Math.round(product.original_price_cents * 0.9));
    }
    assert.equal(body.products[0].original_price_cents, 4900);
    assert.equal(body.products[0].price_cents, 4410);
  });

  it('backend answers 503 with a JSON error, quickly, when Postgres is unreachable', async () => {
    const port = await freePort(); // nothing listens there
    const base = await startBackend('v1', { TRELLIS_UPSTREAM_POSTGRES: `127.0.0.1:${port}` });
    const answer = await get(`${base}/api/products`);
    assert.equal(answer.status, 503, answer.text);
    assert.equal(answer.body.error, 'postgres unreachable');
    // Quickly: on the refusal itself, not after waiting out the 2 s connect timeout.
    assert.match(answer.body.detail, /ECONNREFUSED/, 'answered on the refusal, not after the connect timeout');
    assert.equal((await get(`${base}/healthz`)).status, 200, 'still healthy: it can serve once Postgres is back');
  });

  it('backend caches in Redis for a few seconds, and serves on when Redis goes away', { skip: !hasRedis && 'redis-server is not on PATH' }, async () => {
    const redisPort = await freePort();
    const redis = start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {});
    await redis.waitFor(/Ready to accept connections/i, 15_000);
    const base = await startBackend('v1', { TRELLIS_UPSTREAM_REDIS: `127.0.0.1:${redisPort}`, SHOP_CACHE_TTL: '5' });
    await waitUntil(`${base}/healthz`, (answer) => answer.body?.cache === 'ready', 10_000);

    const first = await get(`${base}/api/products`);
    const second = await get(`${base}/api/products`);
    assert.equal(first.body.source, 'postgres');
    assert.equal(second.body.source, 'cache');
    assert.deepEqual(second.body.products, first.body.products);

    assert.equal(await stop(redis), 0);
    // Once the backend has seen Redis go, a request costs Redis nothing: it sends no
    // command at all (the cache is used only while its connection is ready).
    await waitUntil(`${base}/healthz`, (answer) => answer.body?.cache === 'unavailable', 10_000);
    for (let i = 0; i < 3; i++) {
      const answer = await get(`${base}/api/products`);
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.body.source, 'postgres');
      assert.equal(answer.body.cache, 'unavailable', 'served without Redis');
    }
  });

  it('frontend serves the page and config, and forwards /api in forward mode', async () => {
    const backend = await startBackend('v1');
    const backendAddress = new URL(backend).host;

    const forwardPort = await freePort();
    node('frontend-forward', 'frontend.js', { PORT: String(forwardPort), SHOP_API_MODE: 'forward', TRELLIS_UPSTREAM_BACKEND: backendAddress });
    const forward = `http://127.0.0.1:${forwardPort}`;
    await waitUntil(`${forward}/healthz`, (answer) => answer.status === 200, 15_000);
    const page = await get(`${forward}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(page.text, /<script src="\/config\.js"><\/script>/);
    assert.equal((await get(`${forward}/app.js`)).status, 200);
    assert.equal((await get(`${forward}/style.css`)).status, 200);
    assert.match((await get(`${forward}/config.js`)).text, /"mode":"forward","apiBase":""/);
    const api = await get(`${forward}/api/products`);
    assert.equal(api.status, 200, api.text);
    assert.equal(api.body.version, 'v1');
    assert.equal(api.body.products.length, 8);
    assert.equal((await get(`${forward}/../package.json`)).status, 404);

    const directPort = await freePort();
    node('frontend-direct', 'frontend.js', { PORT: String(directPort), SHOP_API_MODE: 'direct', TRELLIS_PUBLIC_BACKEND: backend });
    const direct = `http://127.0.0.1:${directPort}`;
    await waitUntil(`${direct}/healthz`, (answer) => answer.status === 200, 15_000);
    assert.match((await get(`${direct}/config.js`)).text, new RegExp(`"mode":"direct","apiBase":"${backend}"`));
    assert.equal((await get(`${direct}/api/products`)).status, 404, 'direct mode forwards nothing');
  });

  it('backup.js writes the products table to its data folder', async () => {
    const port = await freePort();
    const dataDir = path.join(tmp, 'backup');
    node('backup', 'backup.js', {
      PORT: String(port),
      TRELLIS_DATA_DIR: dataDir,
      TRELLIS_UPSTREAM_POSTGRES: postgresAddress,
      BACKUP_INTERVAL: '1h',
      BACKUP_KEEP: '2',
    });
    const base = `http://127.0.0.1:${port}`;
    // The first backup runs at start.
    await waitUntil(`${base}/healthz`, (answer) => answer.status === 200 && answer.body.lastBackup !== null, 15_000);
    for (let i = 0; i < 2; i++) {
      // Kept: backups are named by their millisecond; the gap gives each its own name.
      await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal((await get(`${base}/backups`, { method: 'POST' })).status, 201);
    }
    const files = (await fs.readdir(path.join(dataDir, 'backups'))).sort();
    assert.equal(files.length, 2, `kept the newest 2: ${files.join(', ')}`);
    for (const file of files) assert.match(file, /^products-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z\.json$/);
    const backup = JSON.parse(await fs.readFile(path.join(dataDir, 'backups', files[1]!), 'utf8'));
    assert.equal(backup.count, 8);
    assert.equal(backup.rows[0].name, 'Cedar trellis panel');
    const listed = await get(`${base}/backups`);
    assert.deepEqual(
      listed.body.backups.map((b: { file: string }) => b.file),
      [...files].reverse(),
    );
  });

  it('postgres.js stops Postgres on SIGTERM, exits 0, and keeps the data for the next start', async () => {
    assert.ok((await processesMentioning(pgdata)).length > 0, 'Postgres runs before');
    assert.equal(await stop(postgres, 'SIGTERM'), 0, postgres.output());
    assert.match(postgres.output(), /postgres stopped/);
    assert.deepEqual(await processesMentioning(pgdata), [], 'no Postgres process left behind');
    await assert.rejects(fs.access(path.join(pgdata, 'postmaster.pid')), 'Postgres removed its pid file');

    // Same data folder again: no new cluster, no second seeding, same products.
    const again = node('postgres-again', 'postgres.js', { PORT: String(postgresPort), TRELLIS_DATA_DIR: path.join(tmp, 'postgres') });
    await again.waitFor(/postgres ready on/, 30_000);
    assert.doesNotMatch(again.output(), /creating a new database cluster|seeded/);
    const base = await startBackend('v1');
    const answer = await get(`${base}/api/products`);
    assert.equal(answer.status, 200, answer.text);
    assert.equal(answer.body.products.length, 8);

    assert.equal(await stop(again, 'SIGINT'), 0, again.output());
    assert.deepEqual(await processesMentioning(pgdata), []);
  });
});
