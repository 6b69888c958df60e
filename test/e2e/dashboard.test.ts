// The dashboard on a real `trellis up` (control plane, sidecars, ingress, apps as
// processes), in real headless Chromium: the login link `trellis up` prints logs in and
// nothing without it; the topology shows the mesh with the proxies' live numbers, which
// move when more traffic flows; a weight shift made in the page reaches the proxies (they
// acknowledge it) and moves the traffic; a canary starts, pauses and rolls back from the
// page; markup in a config file shows as text. Screenshots: test-artifacts/dashboard/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { ProxyView } from '../../src/api/admin.js';
import { getJson, meshUp, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { countVersions, writeShopMesh } from '../helpers/traffic.js';
import { dashboardLink, launchChromium, noChromium, screenshot, type RunningBrowser } from '../helpers/browser.js';

// Route names must be DNS names, so markup reaches the page from the config only in the
// problems of a config that does not load, which quote what the file said.
const MARKUP = '<img src=x onerror=window.__xss=1>';

function routes(v1: number, v2: number): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop-split
spec:
  parentRefs: [{ name: shop }]
  rules:
    - backendRefs:
        - { name: shop-v1, weight: ${v1} }
        - { name: shop-v2, weight: ${v2} }
`;
}

/** The client → shop edge's "total counted" (from its title), or -1 when the edge has no numbers yet. */
async function edgeTotal(page: Page): Promise<number> {
  const title = await page.locator('[data-edge="client->shop"] title').textContent();
  const m = /: (\d+) requests counted/.exec(title ?? '');
  return m ? Number(m[1]) : -1;
}

const skip = noChromium();

describe('the dashboard of a running mesh', { skip }, () => {
  let dir: string;
  let mesh: RunningMesh;
  let browser: RunningBrowser;
  let link: string;
  let port: number; // the client sidecar's listener for shop

  before(async () => {
    const written = await writeShopMesh({ routes: routes(100, 0) });
    dir = written.dir;
    // Chromium starts while the mesh comes up; each is kept as soon as it runs, so after() stops it even when the other failed.
    const launching = launchChromium().then((b) => (browser = b));
    try {
      mesh = await meshUp(written.meshFile, join(dir, '.trellis'));
    } finally {
      await launching.catch(() => {});
    }
    await launching;
    link = dashboardLink(mesh.output());
    port = mesh.state.instances.find((i) => i.service === 'client')!.upstreams.find((u) => u.service === 'shop')!.port;
  });

  after(async () => {
    await browser?.close();
    await stopMesh(mesh, dir);
  });

  test('without the login link the page shows nothing of the mesh, and the API answers 401', async () => {
    assert.equal(mesh.state.dashboard, link.slice(0, link.indexOf('#')), 'state.json has the address, not the login code');
    assert.doesNotMatch(JSON.stringify(mesh.state), /login=/);
    const page = await browser.newPage();
    try {
      await page.goto(mesh.state.dashboard);
      await page.getByTestId('login-required').waitFor();
      assert.equal(await page.getByTestId('topology').count(), 0);
      const body = await page.content();
      assert.doesNotMatch(body, /shop-v1|client-0/, 'no data of the mesh in the page');
      await screenshot(page, 'login-required');
      // A wrong code is refused too.
      await page.goto(`${mesh.state.dashboard}#login=wrong`);
      await page.getByTestId('login-required').waitFor();
      const res = await fetch(`${mesh.state.control}/dashboard/api/mesh`);
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { code: string }).code, 'TRELLIS_E_DASHBOARD_LOGIN_REQUIRED');
    } finally {
      await page.close();
    }
  });

  test('the login link shows the topology with live numbers that move with more traffic', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(link);
      await page.getByTestId('topology').waitFor();
      assert.equal(new URL(page.url()).hash, '', 'the login code is taken out of the address bar');
      const cookies = await browser.context.cookies();
      const session = cookies.find((c) => c.name === 'trellis_dashboard');
      assert.ok(session, 'a session cookie is set');
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Strict');
      for (const name of ['client', 'shop']) await page.locator(`[data-node="${name}"]`).waitFor();

      const first = await countVersions(port, 60);
      assert.deepEqual(first.failures, []);
      const label = await eventually(
        async () => {
          const text = (await page.locator('[data-edge="client->shop"] [data-testid="edge-rate"]').textContent()) ?? '';
          assert.match(text, /^[0-9.]+ rps · 100%$/);
          assert.notEqual(text, '0.00 rps · 100%');
          return text;
        },
        { timeoutMs: 20_000 },
      );
      const before = await eventually(
        async () => {
          const n = await edgeTotal(page);
          assert.ok(n >= 60, `the edge counted the 60 requests (${n})`);
          return n;
        },
        { timeoutMs: 20_000 },
      );
      assert.match((await page.locator('[data-edge="client->shop"] [data-testid="edge-p99"]').textContent()) ?? '', /^p99 [0-9.]+ ms$/);
      // The ingress (a gateway proxy) calls shop too once the public URL is used; shop's own card has its inbound numbers.
      await eventually(async () => assert.match((await page.locator('[data-service="shop"] [data-testid="rps"]').textContent()) ?? '', /^[0-9.]+$/), {
        timeoutMs: 20_000,
      });
      await screenshot(page, 'topology-live');

      assert.deepEqual((await countVersions(port, 40)).failures, []);
      await eventually(
        async () => {
          const n = await edgeTotal(page);
          assert.ok(n >= before + 40, `the count moved from ${before} with 40 more requests (now ${n})`);
        },
        { timeoutMs: 20_000 },
      );
      assert.ok(label.length > 0);
      await screenshot(page, 'topology-after-more-traffic');
    } finally {
      await page.close();
    }
  });

  test('markup in a config file is shown as text; route names come from the snapshot', async () => {
    const page = await browser.newPage();
    const file = join(dir, 'routes.yaml');
    const good = await readFile(file, 'utf8');
    try {
      await page.goto(link);
      await page.getByTestId('routes').waitFor();
      await countVersions(port, 20);
      await eventually(
        async () => assert.ok((await page.locator('[data-testid="routes"] td.route-name').allTextContents()).includes('default/shop-split/rule/0')),
        { timeoutMs: 20_000 },
      );
      await writeFile(file, good.replace('name: shop-split', `name: "${MARKUP}"`));
      const banner = page.getByTestId('reload-failed');
      await banner.waitFor({ timeout: 20_000 });
      assert.match((await banner.textContent()) ?? '', /<img src=x onerror=window.__xss=1>/);
      assert.equal(await page.locator('main img').count(), 0, 'no element was made of the markup');
      assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
      await screenshot(page, 'markup-in-config-problem');
    } finally {
      await writeFile(file, good);
      await eventually(async () => assert.equal(await page.getByTestId('reload-failed').count(), 0), { timeoutMs: 20_000 });
      await page.close();
    }
  });

  test('a weight shift made in the page reaches the proxies and moves the traffic', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(link);
      const editor = page.locator('[data-testid="weights"][data-service="shop"]');
      await editor.waitFor();
      assert.equal(await editor.getByTestId('weights-now').textContent(), 'v1 100 · v2 0');
      await editor.locator('input[name="v1"]').fill('0');
      await editor.locator('input[name="v2"]').fill('100');
      await editor.getByRole('button', { name: 'Apply weights' }).click();
      const ack = editor.getByTestId('weights-ack');
      await eventually(async () => assert.match((await ack.textContent()) ?? '', /acknowledged by (\d+)\/\1 callers/), { timeoutMs: 20_000 });
      assert.equal(await editor.getByTestId('weights-now').textContent(), 'v1 0 · v2 100');
      await screenshot(page, 'weights-acknowledged');
      // What the page says is what the proxies say.
      const { proxies } = await getJson<{ proxies: ProxyView[] }>(`${mesh.state.control}/v1/proxies`);
      const client = proxies.find((p) => p.service === 'client')!;
      assert.ok(client.ackedVersion !== null && client.ackedVersion === client.sentVersion);
      const after = await countVersions(port, 40);
      assert.deepEqual(after.failures, []);
      assert.deepEqual(after.versions, { v2: 40 });
    } finally {
      await page.close();
    }
  });

  test('a canary starts, pauses and rolls back from the page', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(link);
      const editor = page.locator('[data-testid="weights"][data-service="shop"]');
      await editor.waitFor();
      // The previous test left v2 at 100%: make v1 the canary of v2.
      const canary = editor.getByTestId('canary');
      await canary.locator('select').selectOption('v1');
      await canary.locator('input').nth(0).fill('20,100');
      await canary.locator('input').nth(1).fill('60');
      await canary.getByRole('button', { name: 'Start canary' }).click();
      await eventually(async () => assert.equal(await canary.getByTestId('canary-state').textContent(), 'running'), { timeoutMs: 20_000 });
      await eventually(async () => assert.equal(await editor.getByTestId('weights-now').textContent(), 'v1 20 · v2 80'), { timeoutMs: 20_000 });
      await canary.getByRole('button', { name: 'Pause' }).click();
      await eventually(async () => assert.equal(await canary.getByTestId('canary-state').textContent(), 'paused'));
      await screenshot(page, 'canary-paused');
      await canary.getByRole('button', { name: 'Roll back' }).click();
      await eventually(async () => assert.equal(await canary.getByTestId('canary-state').textContent(), 'rolled-back'), { timeoutMs: 20_000 });
      await eventually(async () => assert.equal(await editor.getByTestId('weights-now').textContent(), 'v1 0 · v2 100'));
      const after = await countVersions(port, 20);
      assert.deepEqual(after.versions, { v2: 20 });
    } finally {
      await page.close();
    }
  });

  test('changes need the page: no CSRF header, or another Origin, is refused', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(link);
      await page.getByTestId('topology').waitFor();
      // The session cookie is in this browser; a request from the page without the header, and one with a foreign Origin, are refused.
      const statuses = await page.evaluate(async () => {
        const put = (headers: Record<string, string>) =>
          fetch('/dashboard/api/services/shop/weights', {
            method: 'PUT',
            headers: { 'content-type': 'application/json', ...headers },
            body: JSON.stringify({ weights: { v1: 50, v2: 50 } }),
          }).then((r) => r.status);
        return [await put({}), await put({ 'x-trellis-dashboard': '1' })];
      });
      assert.equal(statuses[0], 403, 'no x-trellis-dashboard header');
      assert.equal(statuses[1], 200, 'the page itself');
      const cookie = (await browser.context.cookies()).find((c) => c.name === 'trellis_dashboard')!;
      const foreign = await fetch(`${mesh.state.control}/dashboard/api/services/shop/weights`, {
        method: 'PUT',
        headers: { cookie: `trellis_dashboard=${cookie.value}`, 'x-trellis-dashboard': '1', origin: 'http://evil.example', 'content-type': 'application/json' },
        body: JSON.stringify({ weights: { v1: 1, v2: 1 } }),
      });
      assert.equal(foreign.status, 403);
      assert.equal(((await foreign.json()) as { code: string }).code, 'TRELLIS_E_DASHBOARD_CSRF');
    } finally {
      await page.close();
    }
  });
});
