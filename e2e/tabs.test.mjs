// Ten tabs of one browser over HTTP/1.1 (six connections per server at most):
// one tab holds the stream and passes events to the others; when it closes,
// another takes over without losing or doubling anything.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  T,
  newContext,
  threadCard,
  unique,
  apiRegister,
  apiPostThread,
  stats,
  eventually,
  waitLive,
  snapOnFailure,
  serverAndBrowser,
} from './helpers.mjs';

const TABS = 10;
const env = serverAndBrowser();

/** Waits until every page shows the thread, exactly once, and nothing twice. */
async function allShowOnce(pages, title) {
  await Promise.all(pages.map((p) => threadCard(p, title).waitFor()));
  for (const [i, p] of pages.entries()) {
    assert.equal(await threadCard(p, title).count(), 1, `tab ${i}: "${title}" once`);
    const ids = await p.getByTestId('thread').evaluateAll((els) => els.map((e) => e.dataset.threadId));
    assert.equal(new Set(ids).size, ids.length, `tab ${i}: no thread shown twice`);
  }
}

test('ten tabs share one stream, all live; closing the tab that holds it leaves nine live, nothing missed or doubled', async (t) => {
  const ctx = await newContext(env.browser);
  t.after(() => ctx.close());
  // Which tab opened an event stream: the env.browser's own record of requests.
  const streamsOpened = new Map(); // page -> [urls]
  const pages = [];
  for (let i = 0; i < TABS; i++) {
    const page = await ctx.newPage();
    streamsOpened.set(page, []);
    page.on('request', (req) => {
      if (new URL(req.url()).pathname === '/api/community/events') streamsOpened.get(page).push(req.url());
    });
    pages.push(page);
  }
  try {
    // All ten at once.
    await Promise.all(pages.map((p) => p.goto(env.server.url)));
    await Promise.all(pages.map((p) => waitLive(p, 30000)));
    const protocol = await pages[0].evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'http/1.1');

    const s1 = await eventually(async () => {
      const s = await stats(env.server.url);
      return s.connections === 1 && s;
    }, { message: 'stats.connections === 1' });
    assert.equal(s1.connections, 1, 'one stream for ten tabs');
    const holders = pages.filter((p) => streamsOpened.get(p).length > 0);
    assert.equal(holders.length, 1, 'exactly one tab opened a stream');
    const leader = holders[0];

    const { token } = await apiRegister(env.server.url, unique('poster'));
    const first = `For all ten tabs ${unique('a')}`;
    await apiPostThread(env.server.url, token, first);
    await allShowOnce(pages, first);
    await Promise.all(pages.map((p) => p.getByTestId('toast').filter({ hasText: first }).waitFor()));

    // Close the tab holding the stream, and post at once: during the hand-over.
    await leader.close();
    const rest = pages.filter((p) => p !== leader);
    const during = `Posted during the hand-over ${unique('b')}`;
    await apiPostThread(env.server.url, token, during);

    const next = await eventually(() => rest.find((p) => streamsOpened.get(p).length > 0), {
      message: 'another tab to open the stream',
    });
    const resumeFrom = new URL(streamsOpened.get(next)[0]).searchParams.get('lastEventId');
    assert.ok(resumeFrom, 'the new holder resumes from a position');
    await Promise.all(rest.map((p) => waitLive(p)));
    await eventually(async () => (await stats(env.server.url)).connections === 1, { message: 'one stream again' });
    assert.equal(rest.filter((p) => streamsOpened.get(p).length > 0).length, 1, 'exactly one tab took over');

    const after = `After the hand-over ${unique('c')}`;
    await apiPostThread(env.server.url, token, after);
    for (const title of [first, during, after]) await allShowOnce(rest, title);
    const counts = await Promise.all(rest.map((p) => p.getByTestId('thread').count()));
    assert.deepEqual(counts, rest.map(() => 3), 'every tab shows the same three threads');
    assert.equal((await stats(env.server.url)).connections, 1);
    assert.deepEqual(ctx.errors, []);
  } catch (err) {
    for (const [i, p] of pages.entries()) if (!p.isClosed()) await snapOnFailure(p, `tabs-${i}`);
    throw err;
  }
});
