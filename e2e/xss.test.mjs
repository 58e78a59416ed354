// User text is shown as text, and a post's Markdown as the server's sanitised
// HTML: markup in a title or post runs nothing and builds nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  newContext,
  openPage,
  signUp,
  postThread,
  threadCard,
  unique,
  snapOnFailure,
  serverAndBrowser,
  apiRegister,
  apiPostThread,
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

// The script-injection corpus (fixtures/xss/script-injection.txt) as thread
// titles, thread bodies and comments: the page builds no element but the
// ones Markdown makes, no handler attribute, no link but http(s), mailto
// and this site's, and nothing runs or opens a dialog.
const PAYLOADS = readFileSync(new URL('../fixtures/xss/script-injection.txt', import.meta.url), 'utf8')
  .split('\n')
  .filter((line) => line !== '' && !line.startsWith('#'));
const MARKDOWN_ELEMENTS = new Set(
  'p br hr h1 h2 h3 h4 h5 h6 strong em del code pre blockquote ul ol li a table thead tbody tr th td'.split(' '),
);

async function apiComment(baseUrl, token, threadId, content) {
  const res = await fetch(`${baseUrl}/api/community/comment`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ threadId, content }),
  });
  if (res.status !== 201) throw new Error(`comment: ${res.status} ${await res.text()}`);
}

/** What the page built from posts that Markdown does not make. */
function foreignMarkup(page) {
  return page.evaluate((allowed) => {
    const found = [];
    for (const body of document.querySelectorAll('.rich')) {
      for (const el of body.querySelectorAll('*')) {
        const tag = el.tagName.toLowerCase();
        if (!allowed.includes(tag)) found.push(`<${tag}>`);
        for (const attr of el.attributes) {
          const name = attr.name.toLowerCase();
          if (name.startsWith('on') || name === 'style' || name === 'src' || name === 'srcdoc') found.push(`${tag}[${name}]`);
        }
        if (tag === 'a' && el.hasAttribute('href')) {
          const raw = el.getAttribute('href');
          const url = new URL(raw, location.href);
          // An absolute link keeps to http(s) and mailto; a relative one stays on this site.
          const ok = /^[a-z][a-z0-9+.-]*:/i.test(raw)
            ? ['http:', 'https:', 'mailto:'].includes(url.protocol)
            : url.origin === location.origin;
          if (!ok) found.push(`a[href=${raw}]`);
        }
      }
    }
    for (const title of document.querySelectorAll('[data-testid="thread-title"]')) {
      if (title.children.length) found.push(`markup in the title ${title.textContent}`);
    }
    return found;
  }, [...MARKDOWN_ELEMENTS]);
}

test(`the ${PAYLOADS.length} payloads of the script-injection corpus run nothing as titles, threads and comments`, async (t) => {
  assert.ok(PAYLOADS.length > 200, `the corpus is there (${PAYLOADS.length})`);
  const ctx = await newContext(env.browser);
  const live = await newContext(env.browser);
  t.after(() => Promise.all([ctx.close(), live.close()]));
  const dialogs = [];
  const { token } = await apiRegister(env.server.url, unique('mallory'));
  // One page is open while the payloads arrive, live.
  const watcher = await openPage(live, env.server.url);
  watcher.on('dialog', async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  // The first page (20 threads): 19 with payloads as title and body, and
  // the newest, whose comments are every payload.
  const titled = PAYLOADS.slice(-19);
  for (const payload of titled) await apiPostThread(env.server.url, token, [...payload].slice(0, 200).join(''), payload);
  const holder = await apiPostThread(env.server.url, token, 'Every payload, as comments', 'Open me.');
  for (const payload of PAYLOADS) await apiComment(env.server.url, token, holder.id, payload);

  const page = await openPage(ctx, env.server.url);
  page.on('dialog', async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  try {
    await threadCard(page, 'Every payload, as comments').waitFor();
    for (const p of [page, watcher]) {
      const card = threadCard(p, 'Every payload, as comments');
      await card.getByTestId('thread-title').click();
      await card.getByTestId('comment').nth(PAYLOADS.length - 1).waitFor();
    }
    // Titles are text: each reads back exactly as sent.
    const titles = await page.getByTestId('thread-title').allTextContents();
    for (const payload of titled) assert.ok(titles.includes([...payload].slice(0, 200).join('')), `title shown literally: ${payload}`);
    // Open every payload thread too, so each body is shown in full.
    const closed = page.locator('[data-testid="thread"]:not(.open)');
    while ((await closed.count()) > 0) await closed.first().getByTestId('thread-title').click();
    assert.equal(await page.locator('[data-testid="thread"]:not(.open)').count(), 0, 'every thread open');
    await Promise.all([page, watcher].map((p) => p.evaluate(() => new Promise((r) => setTimeout(r, 300)))));
    assert.deepEqual(await foreignMarkup(page), [], 'snapshot page: only Markdown markup');
    assert.deepEqual(await foreignMarkup(watcher), [], 'live page: only Markdown markup');
    assert.deepEqual(dialogs, [], 'no dialog fired');
    assert.deepEqual([...ctx.errors, ...live.errors], []);
  } catch (err) {
    await snapOnFailure(page, 'xss-corpus');
    await snapOnFailure(watcher, 'xss-corpus-live');
    throw err;
  }
});
