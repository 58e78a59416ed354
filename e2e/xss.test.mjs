// User text is shown as text: markup in a title runs nothing and builds nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  newContext,
  openPage,
  signUp,
  postThread,
  threadCard,
  unique,
  snapOnFailure,
  serverAndBrowser,
} from './helpers.mjs';

const env = serverAndBrowser();

const TITLE = '<img src=x onerror=alert(1)>';
const CONTENT = '<script>alert(2)</script><b onmouseover=alert(3)>bold?</b>';

test('a title of <img src=x onerror=alert(1)> shows literally, fires no dialog and creates no <img>', async (t) => {
  const ctxA = await newContext(env.browser);
  const ctxB = await newContext(env.browser);
  t.after(() => Promise.all([ctxA.close(), ctxB.close()]));
  const dialogs = [];
  const a = await openPage(ctxA, env.server.url);
  const b = await openPage(ctxB, env.server.url);
  for (const p of [a, b]) {
    p.on('dialog', async (d) => {
      dialogs.push(d.message());
      await d.dismiss();
    });
  }
  try {
    await signUp(a, unique('mallory'));
    await postThread(a, TITLE, CONTENT);
    // B gets it live (card and toast), a third page loads it from the snapshot.
    await threadCard(b, TITLE).waitFor();
    await b.getByTestId('toast').filter({ hasText: TITLE }).waitFor();
    const c = await openPage(ctxB, env.server.url);
    await threadCard(c, TITLE).waitFor();

    for (const [name, page] of [
      ['author (own post)', a],
      ['other user (live)', b],
      ['snapshot', c],
    ]) {
      const card = threadCard(page, TITLE);
      assert.equal(await card.count(), 1, `${name}: one card`);
      assert.equal(await card.getByTestId('thread-title').textContent(), TITLE, `${name}: title shown literally`);
      assert.equal(await card.locator('img, script, b').count(), 0, `${name}: no element built from the text`);
      assert.match(await card.textContent(), /<script>alert\(2\)<\/script>/, `${name}: content shown literally`);
      // Open the thread too: the comment view renders the same text.
      await card.getByTestId('thread-title').click();
      await card.locator('.comment-list').waitFor();
      await card.locator('.comment-list .loading').waitFor({ state: 'detached' });
      assert.equal(await card.locator('img, script, b').count(), 0, `${name}: nothing built when open`);
    }
    assert.equal(await b.locator('#toasts img').count(), 0, 'no <img> in the toast');
    assert.equal(await a.locator('img').count() + (await b.locator('img').count()) + (await c.locator('img').count()), 0);
    // Give an onerror handler every chance to have run: a round trip through the page's event loop.
    await Promise.all([a, b, c].map((p) => p.evaluate(() => new Promise((r) => setTimeout(r, 50)))));
    assert.deepEqual(dialogs, [], 'no dialog fired');
    assert.deepEqual([...ctxA.errors, ...ctxB.errors], []);
  } catch (err) {
    await snapOnFailure(a, 'xss-a');
    await snapOnFailure(b, 'xss-b');
    throw err;
  }
});
