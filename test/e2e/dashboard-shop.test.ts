// What `npm start` shows a new user: `trellis up` on the shop (topology 1) prints the
// dashboard's link, and the link opens the shop's topology in a browser (headless
// Chromium here) with live numbers once the shop has traffic. The screenshot is kept in
// test-artifacts/dashboard/shop-topology.png.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, REPO, request, stopMesh, type RunningMesh } from '../helpers/mesh-run.js';
import { eventually } from '../helpers/eventually.js';
import { dashboardLink, launchChromium, noChromium, screenshot, type RunningBrowser } from '../helpers/browser.js';

describe('npm start: the shop in the dashboard', { skip: noChromium() }, () => {
  let dir: string;
  let mesh: RunningMesh;
  let browser: RunningBrowser;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-dashboard-shop-'));
    // Postgres runs as the unprivileged `postgres` user and must reach its data folder.
    await chmod(dir, 0o755);
    // Chromium starts while the mesh comes up; each is kept as soon as it runs, so after() stops it even when the other failed.
    const launching = launchChromium().then((b) => (browser = b));
    try {
      mesh = await meshUp(join(REPO, 'examples', 'shop', 'topology-1.yaml'), join(dir, 'state'), ['--free-ports'], 120_000);
    } finally {
      await launching.catch(() => {});
    }
    await launching;
  });

  after(async () => {
    await browser?.close();
    await stopMesh(mesh);
    await rm(dir, { recursive: true, force: true });
  });

  test('trellis up prints the dashboard link, and it shows the shop with live numbers', async () => {
    const link = dashboardLink(mesh.output());
    assert.ok(link.startsWith(`${mesh.state.control}/dashboard/#login=`), link);
    const api = mesh.public('backend');
    const front = mesh.public('frontend');
    // Traffic as a browser of the shop makes it: the page, then the API (Postgres may still be starting).
    assert.equal((await request(front, '/')).status, 200);
    await eventually(async () => assert.equal((await request(api, '/api/products')).status, 200), { timeoutMs: 30_000 });
    const page = await browser.newPage();
    try {
      await page.goto(link);
      await page.getByTestId('topology').waitFor();
      for (const name of ['frontend', 'backend', 'postgres', 'trellis-ingress']) await page.locator(`[data-node="${name}"]`).waitFor();
      const edge = page.locator('[data-edge="trellis-ingress->backend"] [data-testid="edge-rate"]');
      for (let i = 0; i < 40; i++) assert.equal((await request(api, '/api/products')).status, 200);
      await eventually(
        async () => {
          const text = (await edge.textContent()) ?? '';
          assert.match(text, /^[0-9.]+ rps · [0-9.]+%$/);
          assert.notEqual(text.split(' ')[0], '0.00');
        },
        { timeoutMs: 30_000 },
      );
      await eventually(
        async () => assert.match((await page.locator('[data-edge="backend->postgres"] [data-testid="edge-rate"]').textContent()) ?? '', /conn\/s|rps/),
        {
          timeoutMs: 30_000,
        },
      );
      const file = await screenshot(page, 'shop-topology');
      assert.ok(file.endsWith('shop-topology.png'));
    } finally {
      await page.close();
    }
  });
});
