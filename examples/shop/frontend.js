// The shop's web frontend: serves the page in public/ and tells it where the API is.
//
//   GET /config.js  → `window.SHOP_CONFIG = { mode, apiBase }` for the page
//   GET /api/...    → (forward mode only) relayed to the backend through the sidecar
//   GET /healthz    → 200
//   GET /*          → static files from public/
//
// SHOP_API_MODE picks how the browser reaches the backend:
//   direct   (topology 1) the browser calls the backend's public URL, which the mesh
//            gives us in TRELLIS_PUBLIC_BACKEND; this process never calls the backend.
//   forward  (topology 2) the browser calls /api/... here, and we forward to the
//            backend through our sidecar's listener TRELLIS_UPSTREAM_BACKEND.
// Unset: forward when TRELLIS_UPSTREAM_BACKEND is set, direct otherwise.
//
//   PORT=8080 SHOP_API_MODE=forward TRELLIS_UPSTREAM_BACKEND=127.0.0.1:8081 node examples/shop/frontend.js
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clientSpan, serverSpans, startTracing, stopTracing } from './tracing.js';

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8080);
const PUBLIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public');
const BACKEND = process.env.TRELLIS_UPSTREAM_BACKEND; // host:port of our sidecar's listener
const MODE = process.env.SHOP_API_MODE || (BACKEND ? 'forward' : 'direct');

const tracer = startTracing('frontend');
const log = (line) => process.stdout.write(`[frontend] ${line}\n`);

if (MODE !== 'direct' && MODE !== 'forward') {
  process.stderr.write(`frontend: SHOP_API_MODE must be direct or forward, not ${MODE}\n`);
  process.exit(2);
}
if (MODE === 'forward' && !BACKEND) {
  process.stderr.write('frontend: SHOP_API_MODE=forward needs TRELLIS_UPSTREAM_BACKEND (give the frontend the upstream `backend` in the mesh file)\n');
  process.exit(2);
}
if (MODE === 'direct' && !process.env.TRELLIS_PUBLIC_BACKEND) {
  log('warning: SHOP_API_MODE=direct but TRELLIS_PUBLIC_BACKEND is not set (is the backend public?); the page will call /api on this origin');
}

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

// ------------------------------------------------------------------- forwarding

// One pool of kept-alive connections to the sidecar, rather than a handshake per call.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64, timeout: 30_000 });

// Headers about this hop only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

function withoutHopByHop(headers) {
  const out = {};
  for (const [name, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

function forward(req, res) {
  const at = BACKEND.lastIndexOf(':');
  const headers = { ...withoutHopByHop(req.headers), 'x-forwarded-host': req.headers.host ?? '', 'x-forwarded-proto': 'http' };
  // The call to the backend as a client span; its context goes to our sidecar in traceparent.
  const span = clientSpan(tracer, `${req.method} backend`, headers, { 'http.request.method': req.method, 'server.address': 'backend' });
  const upstream = http.request({
    agent,
    host: at < 0 ? '127.0.0.1' : BACKEND.slice(0, at),
    port: Number(BACKEND.slice(at + 1)),
    method: req.method,
    path: req.url,
    headers,
    timeout: 10_000,
  });
  upstream.on('response', (answer) => {
    answer.once('end', () => span.end(answer.statusCode));
    res.writeHead(answer.statusCode ?? 502, withoutHopByHop(answer.headers));
    answer.pipe(res);
    answer.on('error', () => res.destroy());
  });
  upstream.on('timeout', () => upstream.destroy(new Error('backend did not answer within 10s')));
  upstream.on('error', (error) => {
    span.end(undefined);
    if (res.headersSent) return res.destroy();
    sendJson(res, 502, { error: 'backend unreachable', detail: error.message });
  });
  req.pipe(upstream);
}

// ----------------------------------------------------------------------- serving

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function configScript() {
  const config = {
    mode: MODE,
    // direct: the backend's public URL; forward: same origin as the page.
    apiBase: MODE === 'direct' ? (process.env.TRELLIS_PUBLIC_BACKEND ?? '').replace(/\/+$/, '') : '',
    frontend: { instance: process.env.TRELLIS_INSTANCE ?? null, version: process.env.TRELLIS_VERSION ?? null },
  };
  return `window.SHOP_CONFIG = ${JSON.stringify(config)};\n`;
}

async function serveStatic(req, res, pathname) {
  let relative;
  try {
    relative = pathname === '/' ? 'index.html' : decodeURIComponent(pathname).replace(/^\/+/, '');
  } catch {
    return sendJson(res, 400, { error: 'malformed path' });
  }
  const file = path.join(PUBLIC_DIR, relative);
  if (!file.startsWith(PUBLIC_DIR + path.sep)) return sendJson(res, 404, { error: 'not found' });
  const stat = await fs.stat(file).catch(() => null);
  if (!stat?.isFile()) return sendJson(res, 404, { error: `not found: ${pathname}` });
  res.writeHead(200, {
    'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': stat.size,
    'cache-control': 'no-cache',
  });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res);
}

async function handle(req, res) {
  const { pathname } = new URL(req.url, 'http://frontend');
  if (pathname === '/api' || pathname.startsWith('/api/')) {
    if (MODE === 'forward') return forward(req, res);
    return sendJson(res, 404, { error: 'this frontend runs in direct mode: the page calls the backend at TRELLIS_PUBLIC_BACKEND' });
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'method not allowed' });
  if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok', mode: MODE });
  if (pathname === '/config.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(configScript());
  }
  return serveStatic(req, res, pathname);
}

const server = http.createServer(
  serverSpans(tracer, (req, res) => {
    handle(req, res).catch((error) => {
      log(`unexpected error: ${error.stack}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  }),
);
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(PORT, HOST, () => {
  const api =
    MODE === 'forward' ? `forwarding /api to the backend via ${BACKEND}` : `page calls the backend at ${process.env.TRELLIS_PUBLIC_BACKEND ?? '(unset)'}`;
  log(`listening on http://${HOST}:${PORT}; ${MODE} mode, ${api}`);
});

function shutdown(signal) {
  log(`${signal}: shutting down`);
  setTimeout(() => process.exit(0), 3000).unref();
  server.close(() => stopTracing().then(() => process.exit(0)));
  server.closeIdleConnections();
  agent.destroy();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
