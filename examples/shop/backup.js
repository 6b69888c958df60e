// The shop's backup job (topology 3): copies the products table to disk on a schedule.
//
// Every BACKUP_INTERVAL (default 30s; `<n>ms|s|m|h`, a bare number is seconds) it
// connects to Postgres through the sidecar listener in TRELLIS_UPSTREAM_POSTGRES, reads
// the products table and writes it as JSON to
// $TRELLIS_DATA_DIR/backups/products-<ISO time>.json, keeping the newest BACKUP_KEEP
// (default 10). (The time's colons become dashes, so the names work on every disk.)
// It also serves HTTP on PORT, so the mesh can health-check it and you can look:
//
//   GET  /healthz          → 200 with the last backup and the last error
//   GET  /backups          → the backups on disk, newest first
//   GET  /backups/<file>   → one backup
//   POST /backups          → take a backup now
//
//   PORT=8090 TRELLIS_UPSTREAM_POSTGRES=127.0.0.1:5432 BACKUP_INTERVAL=5s node examples/shop/backup.js
import { once } from 'node:events';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8090);
const INTERVAL_MS = parseDuration(process.env.BACKUP_INTERVAL || '30s');
const KEEP = Math.max(1, Number(process.env.BACKUP_KEEP || 10));
const DATA_DIR = path.resolve(process.env.TRELLIS_DATA_DIR || path.join(os.tmpdir(), 'shop-backup'));
const BACKUP_DIR = path.join(DATA_DIR, 'backups');
const FILE_PATTERN = /^products-[0-9TZ.-]+\.json$/;

const log = (line) => process.stdout.write(`[backup] ${line}\n`);

function parseDuration(text) {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text).trim());
  if (!match) {
    process.stderr.write(`backup: BACKUP_INTERVAL must look like 500ms, 30s, 5m or 1h, not ${text}\n`);
    process.exit(2);
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's'];
  return Math.max(100, Number(match[1]) * unit);
}

const postgresAddress = process.env.TRELLIS_UPSTREAM_POSTGRES;
if (!postgresAddress) {
  process.stderr.write(
    'backup: TRELLIS_UPSTREAM_POSTGRES is not set. The mesh sets it; by hand, point it at postgres.js, e.g. TRELLIS_UPSTREAM_POSTGRES=127.0.0.1:5432\n',
  );
  process.exit(2);
}
const colon = postgresAddress.lastIndexOf(':');
const postgres = {
  host: colon < 0 ? '127.0.0.1' : postgresAddress.slice(0, colon),
  port: Number(postgresAddress.slice(colon + 1)),
  // As postgres.js creates them; PG* variables override them for an external server.
  user: process.env.PGUSER || 'shop',
  password: process.env.PGPASSWORD || 'shop',
  database: process.env.PGDATABASE || 'shop',
};

// ----------------------------------------------------------------------- backups

const status = { lastBackup: null, lastError: null, backups: 0, failures: 0 };
let inFlight = null; // one backup at a time: a manual one and the timer share it

function backupNow() {
  inFlight ??= takeBackup().finally(() => {
    inFlight = null;
  });
  return inFlight;
}

async function takeBackup() {
  // A fresh connection each time: a backup every 30 s needs no pool, and a connection
  // that Postgres or the mesh dropped in between can't trouble the next run.
  const client = new pg.Client({ ...postgres, connectionTimeoutMillis: 3000, query_timeout: 10_000, statement_timeout: 10_000 });
  client.on('error', () => {}); // a dropped connection also rejects the pending query
  let rows;
  try {
    await client.connect();
    ({ rows } = await client.query('SELECT * FROM products ORDER BY id'));
  } catch (error) {
    status.failures++;
    status.lastError = { at: new Date().toISOString(), message: error.message };
    const hint = status.backups === 0 ? ' (Postgres may still be starting)' : '';
    log(`backup failed: cannot read products via ${postgres.host}:${postgres.port}: ${error.message}${hint}`);
    throw error;
  } finally {
    await client.end().catch(() => {});
  }

  const takenAt = new Date().toISOString();
  const file = `products-${takenAt.replace(/:/g, '-')}.json`;
  const text = `${JSON.stringify({ table: 'products', taken_at: takenAt, count: rows.length, rows }, null, 2)}\n`;
  await fs.mkdir(BACKUP_DIR, { recursive: true });
  // Write then rename, so a crash never leaves half a backup under a backup's name.
  const partial = path.join(BACKUP_DIR, `.${file}.partial`);
  await fs.writeFile(partial, text);
  await fs.rename(partial, path.join(BACKUP_DIR, file));
  const removed = await prune();

  status.backups++;
  status.lastBackup = { at: takenAt, file, rows: rows.length, bytes: Buffer.byteLength(text) };
  log(`backup ${file}: ${rows.length} rows, ${Buffer.byteLength(text)} bytes${removed ? `, removed ${removed} old` : ''}`);
  return status.lastBackup;
}

/** Deletes all but the newest KEEP backups; returns how many it deleted. */
async function prune() {
  const files = await listFiles();
  const old = files.slice(KEEP);
  await Promise.all(old.map((file) => fs.rm(path.join(BACKUP_DIR, file), { force: true })));
  return old.length;
}

/** Backup file names, newest first (ISO times sort as text). */
async function listFiles() {
  const names = await fs.readdir(BACKUP_DIR).catch(() => []);
  return names
    .filter((name) => FILE_PATTERN.test(name))
    .sort()
    .reverse();
}

// A timer chain rather than setInterval: runs never overlap, and after a failure (say
// Postgres is still starting) the next try comes sooner.
let timer = null;
function schedule(delay) {
  timer = setTimeout(async () => {
    let ok = true;
    await backupNow().catch(() => {
      ok = false;
    });
    if (timer) schedule(ok ? INTERVAL_MS : Math.min(INTERVAL_MS, 5000));
  }, delay);
}

// -------------------------------------------------------------------------- HTTP

function sendJson(res, code, body) {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function handle(req, res) {
  const { pathname } = new URL(req.url, 'http://backup');
  if (pathname === '/healthz' && req.method === 'GET') {
    return sendJson(res, 200, { status: 'ok', interval_ms: INTERVAL_MS, keep: KEEP, dir: BACKUP_DIR, ...status });
  }
  if (pathname === '/backups' && req.method === 'GET') {
    const files = await listFiles();
    const backups = await Promise.all(
      files.map(async (file) => {
        const stat = await fs.stat(path.join(BACKUP_DIR, file)).catch(() => null);
        return { file, bytes: stat?.size ?? 0, modified: stat?.mtime.toISOString() ?? null };
      }),
    );
    return sendJson(res, 200, { dir: BACKUP_DIR, backups });
  }
  if (pathname === '/backups' && req.method === 'POST') {
    try {
      return sendJson(res, 201, await backupNow());
    } catch (error) {
      return sendJson(res, 503, { error: 'backup failed', detail: error.message });
    }
  }
  const file = pathname.startsWith('/backups/') ? pathname.slice('/backups/'.length) : null;
  if (file && req.method === 'GET') {
    if (!FILE_PATTERN.test(file)) return sendJson(res, 404, { error: `no such backup: ${file}` });
    const text = await fs.readFile(path.join(BACKUP_DIR, file)).catch(() => null);
    if (!text) return sendJson(res, 404, { error: `no such backup: ${file}` });
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': text.length });
    return res.end(text);
  }
  return sendJson(res, 404, {
    error: `no such path: ${req.method} ${pathname}`,
    paths: ['GET /healthz', 'GET /backups', 'GET /backups/<file>', 'POST /backups'],
  });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    log(`unexpected error: ${error.stack}`);
    if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
    else res.destroy();
  });
});
server.listen(PORT, HOST);
await once(server, 'listening');
log(
  `listening on http://${HOST}:${PORT}; backing up products via ${postgres.host}:${postgres.port} every ${INTERVAL_MS / 1000}s into ${BACKUP_DIR} (keeping ${KEEP})`,
);
schedule(0);

async function shutdown(signal) {
  log(`${signal}: shutting down`);
  setTimeout(() => process.exit(0), 5000).unref(); // a backup stuck on the network must not hold us
  clearTimeout(timer);
  timer = null;
  server.close();
  server.closeIdleConnections();
  await inFlight?.catch(() => {});
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
