// Test helper: Debian's headless Chromium driven by playwright-core (which downloads no
// browser of its own; scripts/install-test-deps.sh installs /usr/bin/chromium). Each
// launch gets a fresh profile folder, removed on close, and flags that keep Chromium off
// the network: on a closed network its background fetches would otherwise stall it.
// Screenshots go to test-artifacts/dashboard/ in the repository (ignored by git), kept
// after the run for a person to look at.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { REPO } from './mesh-run.js';

export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = join(REPO, 'test-artifacts', 'dashboard');

/** Why a browser test can't run here, or undefined when it can. */
export function noChromium(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (run scripts/install-test-deps.sh)`;
}

export interface RunningBrowser {
  /** One profile: pages share its cookies (`context.clearCookies()` logs every page out). */
  readonly context: BrowserContext;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<RunningBrowser> {
  const profile = await mkdtemp(join(tmpdir(), 'trellis-chromium-'));
  // Playwright takes the profile folder itself (it refuses --user-data-dir in args).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    newPage: () => context.newPage(),
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a full-page screenshot as test-artifacts/dashboard/<name>.png and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** The dashboard login link `trellis up` printed. */
export function dashboardLink(output: string): string {
  const m = /Dashboard: (http:\/\/\S+#login=[A-Za-z0-9_-]+)/.exec(output);
  if (!m) throw new Error(`trellis up printed no dashboard link:\n${output}`);
  return m[1]!;
}
