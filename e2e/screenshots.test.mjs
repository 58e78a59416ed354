// Screenshots of the page with the demo data, desktop and phone, light and
// dark, saved to e2e/artifacts/ for a person to look at (and one for the README).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  newContext,
  openPage,
  threadCard,
  artifactPath,
  serverAndBrowser,
} from './helpers.mjs';

const env = serverAndBrowser({ demo: true });

const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 375, height: 740 },
};

for (const [device, viewport] of Object.entries(VIEWPORTS)) {
  for (const colorScheme of ['light', 'dark']) {
    test(`screenshots: ${device} ${colorScheme}`, async (t) => {
      const ctx = await newContext(env.browser, {
        viewport,
        colorScheme,
        deviceScaleFactor: device === 'phone' ? 2 : 1,
        isMobile: device === 'phone',
        hasTouch: device === 'phone',
      });
      t.after(() => ctx.close());

      // Signed out: what a first visitor sees.
      const page = await openPage(ctx, env.server.url);
      await threadCard(page, 'Welcome to stoa').waitFor();
      assert.ok((await page.getByTestId('thread').count()) >= 3, 'demo threads are shown');
      await settle(page);
      await page.screenshot({ path: artifactPath(`${device}-${colorScheme}-signed-out.png`) });

      // Signed in as a demo user, with a thread open.
      const login = await ctx.request.post(`${env.server.url}/api/auth/login`, {
        data: { username: 'ada', password: 'demo-password' },
      });
      assert.equal(login.status(), 200);
      await page.reload();
      await page.getByTestId('conn-status').filter({ hasText: /^Live$/ }).waitFor();
      await page.getByTestId('signout').waitFor();
      const welcome = threadCard(page, 'Welcome to stoa');
      await welcome.getByTestId('thread-title').click();
      await welcome.getByTestId('comment').first().waitFor();
      await settle(page);
      await page.screenshot({ path: artifactPath(`${device}-${colorScheme}-signed-in.png`) });
      await page.screenshot({ path: artifactPath(`${device}-${colorScheme}-signed-in-full.png`), fullPage: true });

      // A phone-width page must not scroll sideways.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `no horizontal scrolling (overflow ${overflow}px)`);
      assert.deepEqual(ctx.errors, []);
    });
  }
}

/** Lets fonts, the online count and entry animations settle before a screenshot. */
async function settle(page) {
  await page.mouse.move(0, 0); // no hover state left over from a click
  await page.evaluate(() => document.fonts.ready);
  await page.getByTestId('online-count').filter({ hasText: /^\d+$/ }).waitFor();
  await page.evaluate(() => {
    window.scrollTo(0, 0);
    document.activeElement?.blur();
    for (const t of document.querySelectorAll('[data-testid="toast"]')) t.remove();
    for (const a of document.getAnimations()) if (a.effect?.getTiming().iterations !== Infinity) a.finish();
  });
}
