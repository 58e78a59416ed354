// Two people, two browsers: what one does shows up live for the other.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  T,
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

test('A posts a thread; B sees it live with a toast, comments and likes; A sees the counts change', async (t) => {
  const ctxA = await newContext(env.browser);
  const ctxB = await newContext(env.browser);
  t.after(() => Promise.all([ctxA.close(), ctxB.close()]));
  const a = await openPage(ctxA, env.server.url);
  const b = await openPage(ctxB, env.server.url);
  try {
    await signUp(a, unique('alice'));
    await signUp(b, unique('bob'));
    // Signing in restarts the stream (private events depend on the user).
    await a.getByTestId('conn-status').filter({ hasText: /^Live$/ }).waitFor();
    await b.getByTestId('conn-status').filter({ hasText: /^Live$/ }).waitFor();
    const bNav = b.url();

    const title = `Hello from A ${unique('t')}`;
    await postThread(a, title, 'Anyone around?');

    // B: the thread appears at the top, with a toast, without a reload.
    const cardB = threadCard(b, title);
    await cardB.waitFor();
    await b.getByTestId('toast').filter({ hasText: 'New Thread!' }).filter({ hasText: title }).waitFor();
    assert.equal(await b.getByTestId('thread').first().getAttribute('data-thread-id'), await cardB.getAttribute('data-thread-id'));
    assert.equal(b.url(), bNav, 'B did not navigate');
    assert.equal(await b.evaluate(() => performance.getEntriesByType('navigation').length), 1, 'B did not reload');

    // A: no toast for its own thread.
    const cardA = threadCard(a, title);
    assert.equal(await a.getByTestId('toast').filter({ hasText: 'New Thread!' }).count(), 0, 'A got a toast for its own thread');

    // B comments and likes.
    assert.equal(await cardA.getByTestId('thread-comment-count').textContent(), '0');
    assert.equal(await cardA.getByTestId('thread-like-count').textContent(), '0');
    await cardB.getByTestId('thread-title').click();
    await cardB.getByTestId('comment-input').fill('Here! Nice to meet you.');
    await cardB.getByTestId('comment-submit').click();
    await cardB.getByTestId('comment').filter({ hasText: 'Here! Nice to meet you.' }).waitFor();
    await cardB.getByTestId('like-thread').click();
    await cardB.getByTestId('thread-like-count').filter({ hasText: /^1$/ }).waitFor();
    assert.equal(await cardB.getByTestId('like-thread').getAttribute('aria-pressed'), 'true');

    // A sees both counts change in place, and a toast for the comment.
    await cardA.getByTestId('thread-comment-count').filter({ hasText: /^1$/ }).waitFor();
    await cardA.getByTestId('thread-like-count').filter({ hasText: /^1$/ }).waitFor();
    // One toast for the reply (its notification), not a second for the comment.
    await a.getByTestId('toast').filter({ hasText: 'replied to your thread' }).waitFor();
    await a.waitForTimeout(500);
    assert.equal(await a.getByTestId('toast').filter({ hasText: /replied to your thread|New comment/ }).count(), 1, 'one toast per reply');
    assert.equal(await cardA.getByTestId('like-thread').getAttribute('aria-pressed'), 'false', "B's like is not A's");

    // A opens the thread and sees B's comment.
    await cardA.getByTestId('thread-title').click();
    await cardA.getByTestId('comment').filter({ hasText: 'Here! Nice to meet you.' }).waitFor();
    assert.equal(await cardA.getByTestId('comment').count(), 1);

    // B does not get toasts for its own comment.
    assert.equal(await b.getByTestId('toast').filter({ hasText: /New comment/ }).count(), 0);
    assert.deepEqual([...ctxA.errors, ...ctxB.errors], []);
  } catch (err) {
    await snapOnFailure(a, 'live-a');
    await snapOnFailure(b, 'live-b');
    throw err;
  }
});

test('sign-up errors show next to the field; taken username is a 409 on the username field', async (t) => {
  const ctx = await newContext(env.browser);
  t.after(() => ctx.close());
  const page = await openPage(ctx, env.server.url);
  try {
    // 422 from the server: a username with characters it does not allow.
    await page.getByTestId('auth-username').fill('no spaces!');
    await page.getByTestId('auth-password').fill('correct-horse-battery');
    await page.getByTestId('signup').click();
    const userErr = page.getByTestId('error-username');
    await userErr.waitFor({ state: 'visible' });
    assert.match(await userErr.textContent(), /username/i);
    assert.equal(await page.getByTestId('auth-username').getAttribute('aria-invalid'), 'true');

    // 422 on the password: too short.
    await page.getByTestId('auth-username').fill(unique('pw'));
    await page.getByTestId('auth-password').fill('short');
    await page.getByTestId('signup').click();
    const pwErr = page.getByTestId('error-password');
    await pwErr.waitFor({ state: 'visible' });
    assert.match(await pwErr.textContent(), /password/i);
    assert.equal(await userErr.isVisible(), false, 'the old error is cleared');

    // 409: the username is taken.
    const name = unique('taken');
    const other = await newContext(env.browser);
    const p2 = await openPage(other, env.server.url);
    await signUp(p2, name);
    await other.close();
    await page.getByTestId('auth-username').fill(name);
    await page.getByTestId('auth-password').fill('correct-horse-battery');
    await page.getByTestId('signup').click();
    await userErr.waitFor({ state: 'visible' });
    assert.match(await userErr.textContent(), /taken|exists|already/i);

    // Wrong password on sign-in: a form-level error.
    await page.getByTestId('auth-password').fill('wrong-password-123');
    await page.getByTestId('signin').click();
    const formErr = page.locator('#auth-form').getByTestId('error-form');
    await formErr.waitFor({ state: 'visible' });
    assert.match(await formErr.textContent(), /wrong|invalid|incorrect/i);
  } catch (err) {
    await snapOnFailure(page, 'signup-errors');
    throw err;
  }
});

test('deleting my thread removes it live in the other context; load more pages through older threads', async (t) => {
  const ctxA = await newContext(env.browser);
  const ctxB = await newContext(env.browser);
  t.after(() => Promise.all([ctxA.close(), ctxB.close()]));
  const a = await openPage(ctxA, env.server.url);
  const b = await openPage(ctxB, env.server.url);
  try {
    await signUp(a, unique('del'));
    const title = `Delete me ${unique('d')}`;
    await postThread(a, title);
    const cardB = threadCard(b, title);
    await cardB.waitFor();
    // B is signed out: no delete button for a thread that is not B's.
    assert.equal(await cardB.getByTestId('delete-thread').isVisible(), false);
    a.once('dialog', (d) => d.accept());
    await threadCard(a, title).getByTestId('delete-thread').click();
    await threadCard(a, title).waitFor({ state: 'detached' });
    await cardB.waitFor({ state: 'detached' });

    // Load more: post past one page (20) and page through in a fresh tab.
    const prefix = unique('page');
    for (let i = 0; i < 23; i++) {
      await a.evaluate(
        async ([title]) => {
          const r = await fetch('/api/community/threads', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ title, content: 'paging' }),
          });
          if (r.status !== 201) throw new Error(`post: ${r.status}`);
        },
        [`${prefix} #${i}`],
      );
    }
    const c = await openPage(ctxB, env.server.url);
    const before = await c.getByTestId('thread').count();
    assert.equal(before, 20);
    await c.getByTestId('load-more').click();
    await threadCard(c, `${prefix} #0`).waitFor();
    const ids = await c.getByTestId('thread').evaluateAll((els) => els.map((e) => e.dataset.threadId));
    assert.equal(new Set(ids).size, ids.length, 'no thread shown twice after load more');
    assert.ok(ids.length > 20);
  } catch (err) {
    await snapOnFailure(a, 'delete-a');
    await snapOnFailure(b, 'delete-b');
    throw err;
  }
});
