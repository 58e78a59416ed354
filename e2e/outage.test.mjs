// The server goes away and comes back: the page shows it, and catches up on
// exactly what it missed, once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  T,
  startServer,
  startServerOnPort,
  tempDb,
  launchBrowser,
  newContext,
  openPage,
  signUp,
  threadCard,
  unique,
  apiRegister,
  apiPostThread,
  snapOnFailure,
} from './helpers.mjs';

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** The colour of the connection dot, as a name. */
async function dotColour(page) {
  const rgb = await page.locator('.conn-dot').evaluate((el) => getComputedStyle(el).backgroundColor);
  const [r, g, b] = rgb.match(/\d+(\.\d+)?/g).map(Number);
  if (g > r && g > b) return 'green';
  if (r > 150 && g > 120 && b < 100) return 'yellow';
  if (r > g && r > b) return 'red';
  return rgb;
}

/**
 * Waits until the dot shows `colour`. The status text and the dot change
 * together, but signing up restarts the stream (a private stream for the
 * new user), so a "Live" seen just before that restart can turn yellow a
 * moment later: wait for the colour to hold rather than read it once.
 */
async function waitForDot(page, colour, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let seen;
  while (Date.now() < deadline) {
    seen = await dotColour(page);
    if (seen === colour) return;
    await page.waitForTimeout(100);
  }
  assert.equal(seen, colour, `the dot should turn ${colour}`);
}

/** While the main server is down: a third client writes through another stoa on the same database file. */
async function writeWhileDown(dbFile, title) {
  const other = await startServer({ db: dbFile });
  try {
    const { token } = await apiRegister(other.url, unique('carol'));
    return await apiPostThread(other.url, token, title, 'Written while the first server was down.');
  } finally {
    const { code } = await other.stop();
    assert.equal(code, 0, 'the second server exits cleanly on SIGTERM');
  }
}

async function setup(t) {
  const db = tempDb();
  let server = await startServer({ db: db.file });
  const ctx = await newContext(browser);
  const state = {
    db,
    get server() {
      return server;
    },
    set server(s) {
      server = s;
    },
  };
  t.after(async () => {
    await ctx.close();
    await server.stop();
    db.cleanup();
  });
  const b = await openPage(ctx, server.url);
  await signUp(b, unique('bob'));
  await b.getByTestId('conn-status').filter({ hasText: /^Live$/ }).waitFor();
  await waitForDot(b, 'green');
  await b.getByTestId('conn-status').filter({ hasText: /^Live$/ }).waitFor();
  return { state, ctx, b };
}

test('short outage: the dot turns yellow, then green again on its own, and the missed thread shows once', async (t) => {
  const { state, ctx, b } = await setup(t);
  try {
    const port = state.server.port;
    const { code } = await state.server.stop();
    assert.equal(code, 0, 'stoa exits 0 on SIGTERM with a stream open');

    // The client retries with backoff: yellow "Connecting..." (red "Offline" once it gives up).
    const status = b.getByTestId('conn-status');
    await status.filter({ hasText: /^(Connecting\.\.\.|Offline)$/ }).waitFor();
    assert.ok(['yellow', 'red'].includes(await dotColour(b)), 'the dot is not green while the server is down');

    const title = `Missed while down ${unique('m')}`;
    await writeWhileDown(state.db.file, title);

    // Back on the same database and the same port.
    state.server = await startServerOnPort({ db: state.db.file, port });
    // Backoff of at most 5 attempts (≤ 1+2+4+8+16 s); the outage above lasts a couple of seconds.
    await status.filter({ hasText: /^Live$/ }).waitFor({ timeout: 40000 });
    assert.equal(await dotColour(b), 'green');
    await threadCard(b, title).waitFor();
    assert.equal(await threadCard(b, title).count(), 1, 'the missed thread shows exactly once');
    assert.equal(await b.getByTestId('reconnect').isVisible(), false);
    assert.deepEqual(ctx.errors, []);
  } catch (err) {
    await snapOnFailure(b, 'outage-short');
    throw err;
  }
});

test('long outage: the client gives up (red "Offline", Reconnect button); Reconnect brings it back with the missed thread once', async (t) => {
  const { state, ctx, b } = await setup(t);
  try {
    const port = state.server.port;
    // Something the page already has, to check it is not doubled either.
    const seen = `Seen before the outage ${unique('s')}`;
    await b.getByTestId('new-thread-title').fill(seen);
    await b.getByTestId('new-thread-content').fill('Before.');
    await b.getByTestId('new-thread-submit').click();
    await threadCard(b, seen).waitFor();

    await state.server.stop();
    const status = b.getByTestId('conn-status');
    await status.filter({ hasText: /^(Connecting\.\.\.|Offline)$/ }).waitFor();

    const title = `Missed during a long outage ${unique('m')}`;
    await writeWhileDown(state.db.file, title);

    // Five attempts with exponential backoff (1, 2, 4, 8, 16 s, each jittered to 50–100 %): ≤ 31 s.
    await status.filter({ hasText: /^Offline$/ }).waitFor({ timeout: 45000 });
    assert.equal(await dotColour(b), 'red');
    const button = b.getByTestId('reconnect');
    await button.waitFor({ state: 'visible' });

    state.server = await startServerOnPort({ db: state.db.file, port });
    // It stays offline until asked: it gave up.
    assert.equal(await status.textContent(), 'Offline');
    await button.click();
    await status.filter({ hasText: /^Live$/ }).waitFor();
    assert.equal(await dotColour(b), 'green');
    await button.waitFor({ state: 'hidden' });
    await threadCard(b, title).waitFor();
    assert.equal(await threadCard(b, title).count(), 1, 'the missed thread shows exactly once');
    assert.equal(await threadCard(b, seen).count(), 1, 'the earlier thread is not doubled');
    assert.deepEqual(ctx.errors, []);
  } catch (err) {
    await snapOnFailure(b, 'outage-long');
    throw err;
  }
});
