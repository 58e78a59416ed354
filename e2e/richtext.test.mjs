// Markdown in the page: a comment previewed before posting and shown
// rendered; the header's search box finds an old comment and opens its
// thread at it. Screenshots of both, phone and desktop, light and dark.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  newContext,
  openPage,
  signUp,
  threadCard,
  unique,
  snapOnFailure,
  serverAndBrowser,
  apiRegister,
  apiPostThread,
  artifactPath,
} from './helpers.mjs';

const env = serverAndBrowser();

const VIEWPORTS = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } };

async function apiComment(baseUrl, token, threadId, content) {
  const res = await fetch(`${baseUrl}/api/community/comment`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ threadId, content }),
  });
  if (res.status !== 201) throw new Error(`comment: ${res.status} ${await res.text()}`);
  return (await res.json()).comment;
}

test('a comment is previewed as Markdown before posting, then shown rendered', async (t) => {
  const ctx = await newContext(env.browser, { viewport: VIEWPORTS.phone });
  t.after(() => ctx.close());
  const page = await openPage(ctx, env.server.url);
  try {
    await signUp(page, unique('writer'));
    const { token } = await apiRegister(env.server.url, unique('poster'));
    const title = unique('Markdown thread');
    await apiPostThread(env.server.url, token, title, 'Say it with *Markdown*.');
    const card = threadCard(page, title);
    await card.waitFor();
    assert.equal(await card.getByTestId('thread-content').locator('em').textContent(), 'Markdown');
    await card.getByTestId('thread-title').click();
    const long = `https://example.org/${'x'.repeat(150)}`;
    const draft = `**Bold** and \`code\`:\n\n\`\`\`\nfn main() { println!("a line far too long to fit on a phone screen, which scrolls inside its own box"); }\n\`\`\`\n\n${long}`;
    await card.getByTestId('comment-input').fill(draft);
    await card.getByTestId('comment-preview-toggle').click();
    const preview = card.getByTestId('comment-preview');
    await preview.locator('strong').waitFor();
    assert.equal(await preview.locator('strong').textContent(), 'Bold');
    assert.equal(await preview.locator('pre code').count(), 1);
    assert.equal(await preview.locator(`a[href="${long}"]`).getAttribute('rel'), 'nofollow ugc noopener');
    await page.screenshot({ path: artifactPath('richtext-preview-phone.png') });
    // Typing again hides the stale preview.
    await card.getByTestId('comment-input').press('End');
    await card.getByTestId('comment-input').type(' ');
    assert.equal(await preview.isHidden(), true);

    await card.getByTestId('comment-submit').click();
    const comment = card.getByTestId('comment').filter({ hasText: 'Bold' });
    await comment.waitFor();
    assert.equal(await comment.locator('strong').textContent(), 'Bold');
    assert.equal(await comment.locator('pre code').count(), 1);
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      // Code stays readable: its colour differs clearly from its background.
      const [fg, bg] = await comment.locator('pre').evaluate((el) => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]);
      assert.notEqual(fg, bg, `${scheme}: code has contrast`);
      await comment.scrollIntoViewIfNeeded();
      await page.screenshot({ path: artifactPath(`richtext-comment-phone-${scheme}.png`) });
    }
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `a long URL and a long code line do not widen the phone page (overflow ${overflow}px)`);
    assert.deepEqual(ctx.errors, []);
  } catch (err) {
    await snapOnFailure(page, 'richtext-preview');
    throw err;
  }
});

for (const [device, viewport] of Object.entries(VIEWPORTS)) {
  test(`search from the header (${device}) opens the thread at the matching comment`, async (t) => {
    const ctx = await newContext(env.browser, { viewport });
    t.after(() => ctx.close());
    const { token } = await apiRegister(env.server.url, unique('searcher'));
    const word = `quokka${Date.now().toString(36)}`;
    const old = await apiPostThread(env.server.url, token, unique('An old thread'), 'Nothing to see.');
    for (let n = 0; n < 8; n++) await apiComment(env.server.url, token, old.id, `filler comment ${n}`);
    const match = await apiComment(env.server.url, token, old.id, `Spotted a ${word} <b>near</b> the river.`);
    // Push the old thread off the first page of the list.
    for (let n = 0; n < 21; n++) await apiPostThread(env.server.url, token, unique('Newer'), 'x');
    const page = await openPage(ctx, env.server.url);
    try {
      assert.equal(await threadCard(page, old.title).count(), 0, 'the old thread is not on the first page');
      await page.getByTestId('search-input').pressSequentially(word.slice(0, -2), { delay: 20 });
      const hit = page.getByTestId('search-hit').first();
      await hit.waitFor();
      assert.equal(await page.getByTestId('search-hit').count(), 1);
      assert.equal(await hit.locator('mark').textContent(), word, 'the prefix match is marked whole');
      assert.match(await hit.textContent(), /<b>near<\/b>/, 'the rest of the snippet is text');
      assert.equal(await hit.locator('b').count(), 0);
      await page.screenshot({ path: artifactPath(`search-results-${device}.png`) });
      await hit.click();
      const target = page.locator(`[data-comment-id="${match.id}"]`);
      await target.waitFor();
      await page.waitForFunction((id) => {
        const el = document.querySelector(`[data-comment-id="${id}"]`);
        const r = el.getBoundingClientRect();
        return r.top >= 0 && r.bottom <= window.innerHeight;
      }, match.id);
      assert.equal(await page.getByTestId('search-results').isHidden(), true);
      await page.screenshot({ path: artifactPath(`search-opened-${device}.png`) });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `no sideways scrolling (overflow ${overflow}px)`);
      assert.deepEqual(ctx.errors, []);
    } catch (err) {
      await snapOnFailure(page, `search-${device}`);
      throw err;
    }
  });
}
