// The dashboard's door and its page, on an in-process control plane: the login code
// trades for an HttpOnly SameSite=Strict cookie that expires; the admin token works as a
// bearer; every data call needs one or the other; changes need the page's header and a
// matching Origin; only allow-listed files are served, each with a strict CSP. Then, in
// headless Chromium, the traces waterfall of a store answering the documented shape, whose
// span names and attributes (request-derived) carry markup, shown as text.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { DashboardAuth, SESSION_TTL_MS } from '../../src/control/dashboard/dashboard-auth.js';
import { httpTraceSource, normalizeTrace } from '../../src/control/dashboard/trace-client.js';
import { dashboardLoginCode, dashboardLoginUrl } from '../../src/security/dashboard-login.js';
import { MESH_YAML, routesYaml, tempDir, TEST_BOOTSTRAP_SECRET } from './helpers.js';
import { launchChromium, noChromium, screenshot } from '../helpers/browser.js';
import { eventually } from '../helpers/eventually.js';

const TOKEN = 'test-admin-token';
const MARKUP = '<img src=x onerror="window.__xss=1">';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

function req(headers: Record<string, string>): http.IncomingMessage {
  return { headers } as unknown as http.IncomingMessage;
}

describe('DashboardAuth', () => {
  test('a session cookie is HttpOnly, SameSite=Strict, scoped to /dashboard, and expires', () => {
    let now = 1_000_000;
    const auth = new DashboardAuth({ token: TOKEN, now: () => now });
    const set = auth.newSessionCookie();
    assert.match(set, /; Path=\/dashboard; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    const value = set.slice(0, set.indexOf(';'));
    assert.equal(auth.authenticate(req({ cookie: `other=1; ${value}` })), 'ok');
    assert.equal(auth.authenticate(req({})), 'missing');
    // Tampered: another expiry with the old signature.
    const [name, v] = value.split('=') as [string, string];
    const forged = `${name}=${Number(v.split('.')[0]) + 1000}.${v.split('.')[1]}`;
    assert.equal(auth.authenticate(req({ cookie: forged })), 'wrong');
    // Another control plane's token signs other sessions.
    assert.equal(new DashboardAuth({ token: 'other', now: () => now }).authenticate(req({ cookie: value })), 'wrong');
    now += SESSION_TTL_MS + 1;
    assert.equal(auth.authenticate(req({ cookie: value })), 'wrong', 'expired');
  });

  test('the admin token works as a bearer; the login code is the HMAC of the token, not the token', () => {
    const auth = new DashboardAuth({ token: TOKEN });
    assert.equal(auth.authenticate(req({ authorization: `Bearer ${TOKEN}` })), 'ok');
    assert.equal(auth.authenticate(req({ authorization: 'Bearer nope' })), 'wrong');
    assert.equal(auth.loginCodeValid(dashboardLoginCode(TOKEN)), true);
    assert.equal(auth.loginCodeValid(TOKEN), false);
    assert.equal(auth.loginCodeValid(undefined), false);
    assert.doesNotMatch(dashboardLoginUrl('http://127.0.0.1:1', TOKEN), new RegExp(TOKEN));
  });

  test('a change needs the header, and an Origin (when sent) that names the Host', () => {
    assert.equal(DashboardAuth.sameOrigin(req({})), false);
    assert.equal(DashboardAuth.sameOrigin(req({ 'x-trellis-dashboard': '1' })), true);
    assert.equal(DashboardAuth.sameOrigin(req({ 'x-trellis-dashboard': '1', host: '127.0.0.1:9', origin: 'http://127.0.0.1:9' })), true);
    assert.equal(DashboardAuth.sameOrigin(req({ 'x-trellis-dashboard': '1', host: '127.0.0.1:9', origin: 'http://evil.example' })), false);
    assert.equal(DashboardAuth.sameOrigin(req({ 'x-trellis-dashboard': '1', origin: 'null' })), false);
  });
});

describe('the dashboard on a control plane', () => {
  let plane: ControlPlane;
  let files: Awaited<ReturnType<typeof tempDir>>;
  let store: http.Server;
  let base: string;

  before(async () => {
    // A trace store answering the documented shape; its span names come from requests.
    store = http.createServer((rq, rs) => {
      const body =
        rq.url === `/v1/traces/${TRACE_ID}`
          ? {
              traceId: TRACE_ID,
              spans: [
                {
                  spanId: 'a1',
                  parentSpanId: null,
                  service: 'frontend',
                  name: `GET /${MARKUP}`,
                  kind: 'server',
                  startMs: 1000,
                  durationMs: 30,
                  error: false,
                  attributes: { 'http.target': MARKUP },
                },
                {
                  spanId: 'b2',
                  parentSpanId: 'a1',
                  service: 'backend',
                  name: 'GET /api/products',
                  kind: 'server',
                  startMs: 1005,
                  durationMs: 20,
                  error: true,
                  attributes: {},
                },
              ],
            }
          : rq.url?.startsWith('/v1/traces')
            ? {
                traces: [
                  { traceId: TRACE_ID, rootService: 'frontend', rootName: `GET /${MARKUP}`, startMs: 1000, durationMs: 30, spanCount: 2, error: true },
                  { traceId: 'not-hex' },
                ],
              }
            : null;
      const text = JSON.stringify(body);
      rs.writeHead(body === null ? 404 : 200, { 'content-type': 'application/json' });
      rs.end(text);
    });
    await new Promise<void>((r) => store.listen(0, '127.0.0.1', r));
    files = await tempDir();
    const mesh = await files.write('mesh.yaml', MESH_YAML);
    await files.write('routes.yaml', routesYaml('backend'));
    plane = await startControlPlane({
      bootstrapSecret: TEST_BOOTSTRAP_SECRET,
      configPaths: [mesh],
      admin: { host: '127.0.0.1', port: 0 },
      adminToken: TOKEN,
      log: () => {},
      dashboard: { traces: httpTraceSource(`http://127.0.0.1:${(store.address() as AddressInfo).port}`, undefined) },
    });
    base = plane.url;
  });

  after(async () => {
    await plane?.close();
    await new Promise((r) => store?.close(r));
    await files?.remove();
  });

  test('every data call needs a session or the admin token', async () => {
    for (const p of ['mesh', 'stats', 'traces', 'bench', `traces/${TRACE_ID}`]) {
      const res = await fetch(`${base}/dashboard/api/${p}`);
      assert.equal(res.status, 401, p);
      const wrong = await fetch(`${base}/dashboard/api/${p}`, { headers: { authorization: 'Bearer wrong' } });
      assert.equal(wrong.status, 401, p);
      const ok = await fetch(`${base}/dashboard/api/${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, 200, p);
    }
    const login = await fetch(`${base}/dashboard/api/session`, {
      method: 'POST',
      headers: { 'x-trellis-dashboard': '1', 'content-type': 'application/json' },
      body: JSON.stringify({ code: dashboardLoginCode(TOKEN) }),
    });
    assert.equal(login.status, 200);
    const cookie = login.headers.get('set-cookie')!;
    assert.match(cookie, /HttpOnly; SameSite=Strict/);
    const mesh = await fetch(`${base}/dashboard/api/mesh`, { headers: { cookie: cookie.slice(0, cookie.indexOf(';')) } });
    assert.equal(mesh.status, 200);
    assert.deepEqual(((await mesh.json()) as { services: { name: string }[] }).services.map((s) => s.name).sort(), ['backend', 'frontend']);
    // A login without the page's header (a cross-site form post) is refused.
    const forged = await fetch(`${base}/dashboard/api/session`, { method: 'POST', body: JSON.stringify({ code: dashboardLoginCode(TOKEN) }) });
    assert.equal(forged.status, 403);
    const bad = await fetch(`${base}/dashboard/api/session`, { method: 'POST', headers: { 'x-trellis-dashboard': '1' }, body: JSON.stringify({ code: 'x' }) });
    assert.equal(bad.status, 401);
  });

  test('only allow-listed files are served, each with a strict CSP', async () => {
    const index = await fetch(`${base}/dashboard/`);
    assert.equal(index.status, 200);
    const csp = index.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'; script-src 'self' 'sha256-[A-Za-z0-9+/=]+'; style-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    for (const f of ['app.js', 'vendor/preact.mjs', 'vendor/preact-hooks.mjs', 'vendor/htm.mjs', 'vendor/uplot.mjs', 'vendor/uplot.css', 'vendor/dagre.mjs']) {
      const res = await fetch(`${base}/dashboard/${f}`);
      assert.equal(res.status, 200, f);
      await res.body?.cancel();
    }
    for (const f of [
      '../package.json',
      'vendor/../../package.json',
      '%2e%2e/package.json',
      'vendor/preact.mjs.map',
      'node_modules/preact/package.json',
      '.gitignore',
    ]) {
      const res = await fetch(`${base}/dashboard/${f}`);
      assert.notEqual(res.status, 200, f);
      await res.body?.cancel();
    }
  });

  test('the trace client keeps only the documented shape', () => {
    assert.equal(normalizeTrace({ traceId: 'zz', spans: [] }), undefined);
    const t = normalizeTrace({ traceId: TRACE_ID, spans: [{ spanId: 'a', name: 'x'.repeat(1000), attributes: { a: { nested: 1 }, b: 2 } }, 'junk'] });
    assert.equal(t?.spans.length, 1);
    assert.equal(t?.spans[0]?.name.length, 256);
    assert.deepEqual(t?.spans[0]?.attributes, { b: 2 });
  });

  test('the traces waterfall shows request-derived markup as text', { skip: noChromium() }, async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(dashboardLoginUrl(base, TOKEN));
      const row = page.getByTestId('trace');
      await row.waitFor();
      assert.match((await row.textContent()) ?? '', /frontend GET \/<img src=x onerror="window.__xss=1">/);
      await row.click();
      const spans = page.getByTestId('span');
      await eventually(async () => assert.equal(await spans.count(), 2));
      assert.match((await spans.nth(0).textContent()) ?? '', /frontend GET \/<img/);
      assert.match((await spans.nth(1).textContent()) ?? '', /backend GET \/api\/products/);
      assert.equal(await page.locator('main img').count(), 0);
      assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
      await screenshot(page, 'traces-waterfall');
      assert.deepEqual(errors, [], 'no script error on the page');
    } finally {
      await browser.close();
    }
  });
});
