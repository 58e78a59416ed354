// Running a community in the page: editing in place, a moderator's lock,
// an admin's ban, and a thread's link. Roles are given with `stoa role` on
// the server's database while it runs, as an operator would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  STOA_BIN,
  newContext,
  openPage,
  signUp,
  postThread,
  threadCard,
  unique,
  snapOnFailure,
  serverAndBrowser,
  artifactPath,
  eventually,
  waitLive,
} from './helpers.mjs';

const env = serverAndBrowser();

/** `stoa role USERNAME ROLE` on the running server's database; its output. */
function setRole(username, role) {
  return execFileSync(STOA_BIN, ['--db', env.db.file, 'role', username, role], { encoding: 'utf8' });
}

/** Accepts the page's confirm (and answers a prompt with `answer`). */
function acceptDialogs(page, answer = '') {
  page.on('dialog', (dialog) => dialog.accept(dialog.type() === 'prompt' ? answer : undefined));
}

test('an author edits a thread and a comment in place; another reader sees both live, marked edited', async (t) => {
  const ctxA = await newContext(env.browser);
  const ctxB = await newContext(env.browser);
  t.after(() => Promise.all([ctxA.close(), ctxB.close()]));
  const a = await openPage(ctxA, env.server.url);
  const b = await openPage(ctxB, env.server.url);
  try {
    await signUp(a, unique('ed'));
    await waitLive(a);
    const title = `Tpyo ${unique('t')}`;
    await postThread(a, title, 'Helo everyone');
    const cardA = threadCard(a, title);
    await cardA.getByTestId('thread-title').click();
    await cardA.getByTestId('comment-input').fill('frist');
    await cardA.getByTestId('comment-submit').click();
    await cardA.getByTestId('comment').filter({ hasText: 'frist' }).waitFor();

    const cardB = threadCard(b, title);
    await cardB.getByTestId('thread-title').click();
    await cardB.getByTestId('comment').filter({ hasText: 'frist' }).waitFor();
    assert.equal(await cardB.getByTestId('edit-thread').isVisible(), false, 'a reader has no Edit');

    // The same rules as creating: an empty title is refused with its message.
    await cardA.getByTestId('edit-thread').click();
    const form = cardA.getByTestId('edit-thread-form');
    await form.getByTestId('edit-title').fill('   ');
    await form.getByTestId('edit-save').click();
    await form.getByTestId('error-title').filter({ hasText: 'Give your thread a title.' }).waitFor();
    const fixed = title.replace('Tpyo', 'Typo');
    await form.getByTestId('edit-title').fill(fixed);
    await form.getByTestId('edit-content').fill('Hello everyone');
    await form.getByTestId('edit-save').click();
    await form.waitFor({ state: 'hidden' });

    const editedB = threadCard(b, fixed);
    await editedB.getByText('Hello everyone', { exact: true }).waitFor();
    const mark = editedB.getByTestId('edited').first();
    await mark.waitFor();
    assert.match(await mark.getAttribute('title'), /^Edited /, 'the time of the edit shows on hover');

    await threadCard(a, fixed).getByTestId('comment').getByTestId('edit-comment').click();
    const commentForm = threadCard(a, fixed).getByTestId('edit-comment-form');
    await commentForm.getByTestId('edit-content').fill('first!');
    await commentForm.getByTestId('edit-save').click();
    const commentB = editedB.getByTestId('comment').filter({ hasText: 'first!' });
    await commentB.waitFor();
    await commentB.getByTestId('edited').waitFor();
    await b.screenshot({ path: artifactPath('moderation-edited-live.png'), fullPage: true });
  } catch (err) {
    await snapOnFailure(a, 'edit-a');
    await snapOnFailure(b, 'edit-b');
    throw err;
  }
});

test('a moderator locks a thread: the comment box goes away for others, live', async (t) => {
  const ctxM = await newContext(env.browser);
  const ctxR = await newContext(env.browser);
  t.after(() => Promise.all([ctxM.close(), ctxR.close()]));
  const m = await openPage(ctxM, env.server.url);
  const r = await openPage(ctxR, env.server.url);
  acceptDialogs(m);
  try {
    const modName = unique('mod');
    await signUp(m, modName);
    await signUp(r, unique('rd'));
    const title = `Heated ${unique('t')}`;
    await postThread(r, title, 'Tabs or spaces?');
    assert.match(setRole(modName, 'moderator'), /: member -> moderator/);
    // The page learns the role on its next load.
    await m.reload();
    await waitLive(m);
    const cardM = threadCard(m, title);
    const cardR = threadCard(r, title);
    await cardR.getByTestId('thread-title').click();
    await cardR.getByTestId('comment-input').waitFor();
    await cardM.getByTestId('lock-thread').filter({ hasText: 'Lock' }).click();

    await cardR.getByTestId('locked-badge').waitFor();
    await cardR.getByTestId('locked-note').waitFor();
    await cardR.getByTestId('comment-input').waitFor({ state: 'hidden' });
    await cardM.getByTestId('lock-thread').filter({ hasText: 'Unlock' }).waitFor();

    // Pinned: it leads the list, above a newer thread, for everyone.
    const newer = `Newer ${unique('t')}`;
    await postThread(r, newer, 'Posted after.');
    await threadCard(m, newer).waitFor();
    assert.equal(await r.getByTestId('thread').first().getAttribute('data-thread-id'), await threadCard(r, newer).getAttribute('data-thread-id'));
    await cardM.getByTestId('pin-thread').filter({ hasText: 'Pin' }).click();
    await cardR.getByTestId('pinned-badge').waitFor();
    await eventually(async () => (await r.getByTestId('thread').first().getAttribute('data-thread-id')) === (await cardR.getAttribute('data-thread-id')), { message: 'the pinned thread first' });
    await r.screenshot({ path: artifactPath('moderation-locked.png'), fullPage: true });
  } catch (err) {
    await snapOnFailure(m, 'lock-m');
    await snapOnFailure(r, 'lock-r');
    throw err;
  }
});

test('an admin bans a user: their open page stream closes at once and their next write shows the ban', async (t) => {
  const ctxA = await newContext(env.browser);
  const ctxU = await newContext(env.browser);
  t.after(() => Promise.all([ctxA.close(), ctxU.close()]));
  const admin = await openPage(ctxA, env.server.url);
  const user = await openPage(ctxU, env.server.url);
  acceptDialogs(admin, 'spamming the forum');
  try {
    const adminName = unique('adm');
    await signUp(admin, adminName);
    await signUp(user, unique('spam'));
    await waitLive(user);
    const title = `Cheap watches ${unique('t')}`;
    await postThread(user, title, 'Buy now');
    setRole(adminName, 'admin');
    await admin.reload();
    await waitLive(admin);
    // The stream the banned user's page holds, seen from the server.
    const before = await (await fetch(`${env.server.url}/api/community/stats`)).json();

    await threadCard(admin, title).getByTestId('ban-user').click();
    await user.getByTestId('banned-banner').filter({ hasText: 'You have been banned: spamming the forum.' }).waitFor();
    // The server closed the stream; the page reconnects as signed out.
    await eventually(async () => /stream of a banned user/.test(env.server.logs()), { message: 'the server closing the stream' });
    assert.ok(before.connections >= 2);

    await user.getByTestId('new-thread-title').fill('Again');
    await user.getByTestId('new-thread-content').fill('Buy more');
    await user.getByTestId('new-thread-submit').click();
    await user.locator('#thread-form').getByTestId('error-form').filter({ hasText: 'you are banned: spamming the forum' }).waitFor();
    await user.screenshot({ path: artifactPath('moderation-banned.png'), fullPage: true });
  } catch (err) {
    await snapOnFailure(admin, 'ban-admin');
    await snapOnFailure(user, 'ban-user');
    throw err;
  }
});

test('a thread link opens the thread in a new browser, with its title; Back returns to the list', async (t) => {
  const ctxA = await newContext(env.browser);
  const ctxB = await newContext(env.browser);
  t.after(() => Promise.all([ctxA.close(), ctxB.close()]));
  const a = await openPage(ctxA, env.server.url);
  try {
    await signUp(a, unique('ln'));
    const title = `Linked <thread> & "quotes" ${unique('t')}`;
    await postThread(a, title, 'Open me from a link.');
    await threadCard(a, title).getByTestId('thread-title').click();
    await eventually(() => /^\/t\/[^/]+\/linked-thread-quotes-/.test(new URL(a.url()).pathname), { message: 'the address to change' });
    assert.equal(await a.title(), `${title} — stoa`);
    const link = a.url();

    // The HTML the server sends has the title and OpenGraph tags, escaped.
    const html = await (await fetch(link)).text();
    const escaped = title.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
    assert.ok(html.includes(`<title>${escaped} — stoa</title>`), 'the title in <title>');
    assert.ok(html.includes(`<meta property="og:title" content="${escaped}">`), 'og:title');
    assert.ok(html.includes('<meta property="og:description" content="Open me from a link.">'), 'og:description');

    // A new browser context opens the link: the thread, opened.
    const b = await ctxB.newPage();
    await b.goto(env.server.url);
    await waitLive(b);
    await b.goto(link);
    const card = threadCard(b, title);
    await card.getByText('No comments yet.').waitFor();
    assert.ok((await card.getAttribute('class')).includes('open'), 'the thread is open');
    await b.screenshot({ path: artifactPath('moderation-link-opened.png'), fullPage: true });

    // Back: the list again (the thread closed, the address /); Forward: the thread.
    await b.goBack();
    await eventually(async () => new URL(b.url()).pathname === '/' && !(await card.getAttribute('class')).includes('open'), { message: 'the list after Back' });
    assert.equal(await b.title(), 'stoa — community');
    await b.goForward();
    await eventually(async () => (await card.getAttribute('class')).includes('open'), { message: 'the thread after Forward' });

    // A reload stays on the thread.
    await b.reload();
    await eventually(async () => (await threadCard(b, title).getAttribute('class')).includes('open'), { message: 'the thread after a reload' });

    // A deleted thread's link: a message in the page, with a 404.
    const id = link.split('/t/')[1].split('/')[0];
    const res = await fetch(`${env.server.url}/t/not-a-thread-${id}`);
    assert.equal(res.status, 404);
    const gone = await b.goto(`${env.server.url}/t/not-a-thread-${id}`);
    assert.equal(gone.status(), 404);
    await b.getByTestId('route-message').filter({ hasText: 'This thread was deleted, or never existed.' }).waitFor();
    await b.screenshot({ path: artifactPath('moderation-link-missing.png'), fullPage: true });
  } catch (err) {
    await snapOnFailure(a, 'link-a');
    throw err;
  }
});
