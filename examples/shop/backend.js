// The shop's JSON API, in two versions from one file.
//
//   GET /api/products  → { version, instance, source: 'postgres' | 'cache', cache, products }
//   GET /healthz       → 200 while the process can serve
//
// It reads products from Postgres and keeps them in Redis for a few seconds. It knows
// neither where Postgres nor Redis run: it talks to the local sidecar listeners the mesh
// gives it in TRELLIS_UPSTREAM_POSTGRES and TRELLIS_UPSTREAM_REDIS (host:port), and the
// sidecar finds a healthy instance. Without TRELLIS_UPSTREAM_REDIS, or while Redis is
// down, it serves straight from Postgres; when Postgres is down, /api/products answers
// 503 with a JSON error. Short timeouts everywhere: it never hangs and never crashes.
//
// v2 (TRELLIS_VERSION=v2, or SHOP_VERSION=v2) marks every product `badge: 'new'` and
// takes 10% off the price, so a user sees at a glance which version answered.
//
//   PORT=8081 TRELLIS_UPSTREAM_POSTGRES=127.0.0.1:5432 node examples/shop/backend.js
import http from 'node:http';
import os from 'node:os';
import pg from 'pg';
import { createClient } from 'redis';
import { serverSpans, startTracing, stopTracing, withSpan } from './tracing.js';

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8081);
const VERSION = pickVersion();
const INSTANCE = process.env.TRELLIS_INSTANCE || `${os.hostname()}:${process.pid}`;
const CACHE_KEY = 'shop:products';
const CACHE_TTL_SECONDS = Number(process.env.SHOP_CACHE_TTL || 5);
const V2_DISCOUNT_PERCENT = 10;

const tracer = startTracing('backend');
const log = (line) => process.stdout.write(`[backend ${VERSION} ${INSTANCE}] ${line}\n`);

function pickVersion() {
  const wanted = process.env.SHOP_VERSION || process.env.TRELLIS_VERSION;
  return wanted === 'v2' ? 'v2' : 'v1';
}

/** `127.0.0.1:7001` (or just `7001`) → { host, port }; undefined when the variable is unset. */
function upstream(name) {
  const value = process.env[`TRELLIS_UPSTREAM_${name}`];
  if (!value) return undefined;
  const at = value.lastIndexOf(':');
  return at < 0 ? { host: '127.0.0.1', port: Number(value) } : { host: value.slice(0, at), port: Number(value.slice(at + 1)) };
}

// ---------------------------------------------------------------------- Postgres

const postgres = upstream('POSTGRES');
if (!postgres) {
  process.stderr.write(
    'backend: TRELLIS_UPSTREAM_POSTGRES is not set. The mesh sets it; by hand, point it at postgres.js, e.g. TRELLIS_UPSTREAM_POSTGRES=127.0.0.1:5432\n',
  );
  process.exit(2);
}

const pool = new pg.Pool({
  ...postgres,
  // postgres.js creates this user and database; PG* variables override them for an external server.
  user: process.env.PGUSER || 'shop',
  password: process.env.PGPASSWORD || 'shop',
  database: process.env.PGDATABASE || 'shop',
  max: 5,
  connectionTimeoutMillis: 2000,
  idleTimeoutMillis: 10_000,
  query_timeout: 3000,
  statement_timeout: 3000,
});
// An idle connection that breaks (Postgres restarted, sidecar gone) is dropped by the
// pool; without this listener the error would crash the process.
pool.on('error', (error) => log(`postgres connection dropped: ${error.message}`));

const PRODUCTS_QUERY = 'SELECT id, name, price_cents, description FROM products ORDER BY id';

async function readProducts() {
  // The Postgres hop as a client span (OpenTelemetry's database conventions), a child of the request's.
  const { rows } = await withSpan(
    tracer,
    'SELECT products',
    {
      'db.system.name': 'postgresql',
      'db.namespace': process.env.PGDATABASE || 'shop',
      'db.query.text': PRODUCTS_QUERY,
      'server.address': postgres.host,
      'server.port': postgres.port,
    },
    () => pool.query(PRODUCTS_QUERY),
  );
  return rows;
}

// ------------------------------------------------------------------------- Redis

/**
 * A best-effort cache: used only while its connection is ready, so a missing or slow
 * Redis costs a request nothing. A connection that cannot be (re)made in a few tries
 * is dropped, and a new one is tried some seconds later.
 */
class ProductCache {
  #address;
  #client = null;
  #nextAttemptAt = 0;
  #skipUntil = 0; // after a failed command, leave Redis alone for a moment

  constructor(address) {
    this.#address = address;
  }

  /** 'off' (no Redis in this topology), 'ready', or 'unavailable'. */
  get state() {
    if (!this.#address) return 'off';
    return this.#client?.isReady ? 'ready' : 'unavailable';
  }

  /** Starts connecting now rather than on the first request. */
  start() {
    this.#connected();
  }

  async get() {
    if (!this.#connected()) return null;
    try {
      const text = await withTimeout(this.#client.get(CACHE_KEY), 300);
      return text ? JSON.parse(text) : null;
    } catch (error) {
      this.#failed('get', error);
      return null;
    }
  }

  async set(products) {
    if (!this.#connected()) return;
    try {
      await withTimeout(this.#client.set(CACHE_KEY, JSON.stringify(products), { EX: CACHE_TTL_SECONDS }), 300);
    } catch (error) {
      this.#failed('set', error);
    }
  }

  async close() {
    const client = this.#client;
    this.#client = null;
    this.#address = undefined;
    if (client?.isOpen) await client.close().catch(() => {});
  }

  /** A slow or failing Redis costs at most one slow request every two seconds. */
  #failed(command, error) {
    log(`redis ${command} failed: ${error.message}; skipping the cache for 2s`);
    this.#skipUntil = Date.now() + 2000;
  }

  /** True when commands can go out now; otherwise starts a connection attempt if it is time. */
  #connected() {
    if (!this.#address || Date.now() < this.#skipUntil) return false;
    if (this.#client?.isReady) return true;
    if (this.#client && !this.#client.isOpen) this.#drop(this.#client, 'gave up reconnecting');
    if (!this.#client && Date.now() >= this.#nextAttemptAt) this.#connect();
    return false;
  }

  #connect() {
    const client = createClient({
      socket: {
        ...this.#address,
        connectTimeout: 1000,
        // A few quick retries, then the client closes; #connected() starts afresh later.
        reconnectStrategy: (retries) => (retries >= 3 ? false : 100 * 2 ** retries),
      },
      disableOfflineQueue: true, // fail at once rather than queue while disconnected
    });
    client.on('error', (error) => {
      if (!client.isOpen) this.#drop(client, error.message); // the last retry failed
    });
    client.on('ready', () => log(`redis cache ready at ${this.#address.host}:${this.#address.port}`));
    this.#client = client;
    client.connect().catch((error) => this.#drop(client, error.message));
  }

  #drop(client, why) {
    if (this.#client !== client) return;
    log(`redis unavailable (${why}); serving without the cache, next try in 5s`);
    this.#client = null;
    this.#nextAttemptAt = Date.now() + 5000;
    if (client.isOpen) client.destroy();
  }
}

/**
 * Rejects when `promise` takes longer than `ms`. (node-redis 6.3's own command timeout
 * does not fire once a command is on the wire, so a stalled Redis would stall us.)
 */
function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms}ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const cache = new ProductCache(upstream('REDIS'));

// -------------------------------------------------------------------------- HTTP

/** What each version shows of a product row. */
function present(row) {
  const product = { id: row.id, name: row.name, description: row.description, price_cents: row.price_cents };
  if (VERSION !== 'v2') return product;
  return {
    ...product,
    price_cents: Math.round((row.price_cents * (100 - V2_DISCOUNT_PERCENT)) / 100),
    original_price_cents: row.price_cents,
    discount_percent: V2_DISCOUNT_PERCENT,
    badge: 'new',
  };
}

async function listProducts() {
  const cached = await cache.get();
  if (cached) return { source: 'cache', rows: cached };
  const rows = await readProducts();
  await cache.set(rows);
  return { source: 'postgres', rows };
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-shop-version': VERSION,
    'x-shop-instance': INSTANCE,
  });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

async function handle(req, res) {
  // In topology 1 the page comes from the frontend's origin and calls us directly.
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-expose-headers', 'x-shop-version, x-shop-instance');
  const { pathname } = new URL(req.url, 'http://backend');

  if (req.method === 'OPTIONS') {
    res.writeHead(204, {
      'access-control-allow-methods': 'GET, HEAD, OPTIONS',
      'access-control-allow-headers': req.headers['access-control-request-headers'] || '*',
      'access-control-max-age': '600',
    });
    return res.end();
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD, OPTIONS');
    return send(res, 405, { error: 'method not allowed' });
  }

  if (pathname === '/healthz') {
    return send(res, 200, { status: 'ok', version: VERSION, instance: INSTANCE, cache: cache.state });
  }
  if (pathname === '/api/products') {
    try {
      const { source, rows } = await listProducts();
      return send(res, 200, { version: VERSION, instance: INSTANCE, source, cache: cache.state, products: rows.map(present) });
    } catch (error) {
      log(`postgres unreachable: ${error.message}`);
      return send(res, 503, { error: 'postgres unreachable', detail: error.message, version: VERSION, instance: INSTANCE });
    }
  }
  return send(res, 404, { error: `no such path: ${pathname}`, paths: ['/api/products', '/healthz'] });
}

const server = http.createServer(
  serverSpans(tracer, (req, res) => {
    handle(req, res).catch((error) => {
      log(`unexpected error: ${error.stack}`);
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  }),
);
// Keep idle connections longer than a proxy's pool usually does, so the sidecar
// rarely reuses a connection we are about to close.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(PORT, HOST, () => {
  const redis = upstream('REDIS');
  log(
    `listening on http://${HOST}:${PORT}; postgres via ${postgres.host}:${postgres.port}; ` +
      (redis ? `redis via ${redis.host}:${redis.port}` : 'no redis (cache off)'),
  );
  cache.start();
});

function shutdown(signal) {
  log(`${signal}: shutting down`);
  setTimeout(() => process.exit(0), 3000).unref(); // don't wait forever for slow clients
  server.close();
  server.closeIdleConnections();
  Promise.allSettled([pool.end(), cache.close(), stopTracing()]).then(() => process.exit(0));
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
