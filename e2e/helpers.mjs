// Shared helpers for the end-to-end tests: start and stop a real stoa server
// (the binary `cargo build` made; this builds nothing), launch Debian's
// headless Chromium through playwright-core, and a few user-level actions.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '..');
export const ARTIFACTS = join(here, 'artifacts');
export const STOA_BIN = process.env.STOA_BIN || join(ROOT, 'target', 'debug', 'stoa');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Generous bound for every wait: the CI machine has 2 cores and is noisy. */
export const T = Number(process.env.E2E_TIMEOUT_MS || 15000);

let uniq = 0;
/** A short unique name (usernames allow 3–32 of [A-Za-z0-9_-]). */
export function unique(prefix = 'u') {
  uniq++;
  return `${prefix}${process.pid.toString(36)}${Date.now().toString(36).slice(-5)}${uniq}`;
}

/** A fresh temporary directory for a database; removed by the returned function. */
export function tempDb() {
  const dir = mkdtempSync(join(tmpdir(), 'stoa-e2e-'));
  return { file: join(dir, 'stoa.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Starts `stoa` and resolves once it logs `stoa listening on http://ADDR`.
 * opts: db (file), port (0 = free port), demo, pollInterval, pingInterval, extraArgs.
 * Returns {url, port, proc, stop(), logs()}.
 */
export async function startServer(opts = {}) {
  if (!existsSync(STOA_BIN)) throw new Error(`stoa binary not found at ${STOA_BIN}: run \`cargo build\` first (or set STOA_BIN)`);
  const args = [
    '--listen',
    `127.0.0.1:${opts.port ?? 0}`,
    '--db',
    opts.db,
    '--poll-interval',
    opts.pollInterval ?? '100ms',
    '--ping-interval',
    opts.pingInterval ?? '30s',
  ];
  if (opts.demo) args.push('--demo');
  if (opts.extraArgs) args.push(...opts.extraArgs);
  const proc = spawn(STOA_BIN, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      STOA_LOG_LEVEL: process.env.STOA_LOG_LEVEL || 'info',
      NO_COLOR: '1',
      // The tests sign up and post faster than people do, all from 127.0.0.1;
      // the limits have their own server tests. (Environment, not flags, so a
      // binary without these settings still starts.)
      STOA_WRITE_RATE: '0',
      STOA_SIGN_IN_RATE: '0',
      ...opts.env,
    },
  });
  let out = '';
  const exited = new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  const addr = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`stoa did not start within ${T} ms:\n${out}`)), T);
    const onData = (chunk) => {
      out += chunk;
      const m = /stoa listening on http:\/\/([0-9.]+:[0-9]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', (c) => (out += c));
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`stoa exited before listening (code ${code}, signal ${signal}):\n${out}`));
    });
  });
  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  let stopped = null;
  return {
    url: `http://${addr}`,
    port,
    proc,
    logs: () => out,
    /** SIGTERM, then wait for the exit (SIGKILL if it takes longer than T). */
    stop() {
      if (stopped) return stopped;
      stopped = (async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return exited;
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), T);
        const r = await exited;
        clearTimeout(timer);
        return r;
      })();
      return stopped;
    },
  };
}

/** Starts a server, retrying briefly if the port (after a restart on the same port) is not free yet. */
export async function startServerOnPort(opts) {
  const deadline = Date.now() + T;
  for (;;) {
    try {
      return await startServer(opts);
    } catch (err) {
      if (Date.now() > deadline || !/in use|AddrInUse|bind/i.test(String(err.message))) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * A stoa on a fresh database and a browser for one test file: started
 * before its tests, stopped after them. Read `env.server`, `env.browser`
 * and `env.db` inside the tests.
 */
export function serverAndBrowser(serverOptions = {}) {
  const env = {};
  before(async () => {
    env.db = tempDb();
    env.server = await startServer({ db: env.db.file, ...serverOptions });
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
    env.db?.cleanup();
  });
  return env;
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/** A new context whose pages fail loudly on uncaught errors; `errors` collects them. */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(T);
  context.setDefaultNavigationTimeout(T);
  context.errors = [];
  context.on('page', (page) => watchPage(page, context.errors));
  return context;
}

export function watchPage(page, errors) {
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
}

/** Opens the page and waits until the stream is live. */
export async function openPage(context, url) {
  const page = await context.newPage();
  await page.goto(url);
  await waitLive(page);
  return page;
}

export async function waitLive(page, timeout = T) {
  await page.getByTestId('conn-status').filter({ hasText: /^Live$/ }).waitFor({ timeout });
}

/** Signs up through the form; resolves when the composer shows. */
export async function signUp(page, username, password = 'correct-horse-battery') {
  await page.getByTestId('auth-username').fill(username);
  await page.getByTestId('auth-password').fill(password);
  await page.getByTestId('signup').click();
  await page.getByTestId('new-thread-title').waitFor({ state: 'visible' });
  await page.getByTestId('signout').waitFor({ state: 'visible' });
}

/** Posts a thread through the composer; resolves when it shows in this page. */
export async function postThread(page, title, content = 'Posted by the end-to-end test.') {
  await page.getByTestId('new-thread-title').fill(title);
  await page.getByTestId('new-thread-content').fill(content);
  await page.getByTestId('new-thread-submit').click();
  await threadCard(page, title).waitFor();
}

/** The card of the thread whose title is exactly `title`. */
export function threadCard(page, title) {
  return page.getByTestId('thread').filter({ has: page.getByTestId('thread-title').getByText(title, { exact: true }) });
}

/** Registers a user through the HTTP API; returns {token, user}. */
export async function apiRegister(baseUrl, username, password = 'correct-horse-battery') {
  const res = await fetch(`${baseUrl}/api/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (res.status !== 201) throw new Error(`register ${username}: ${res.status} ${await res.text()}`);
  const body = await res.json();
  if (body.token) return body;
  const login = await fetch(`${baseUrl}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!login.ok) throw new Error(`login ${username}: ${login.status} ${await login.text()}`);
  return login.json();
}

export async function apiPostThread(baseUrl, token, title, content = 'Posted through the API.') {
  const res = await fetch(`${baseUrl}/api/community/threads`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ title, content }),
  });
  if (res.status !== 201) throw new Error(`post thread: ${res.status} ${await res.text()}`);
  return (await res.json()).thread;
}

export async function stats(baseUrl) {
  const res = await fetch(`${baseUrl}/api/community/stats`);
  if (!res.ok) throw new Error(`stats: ${res.status}`);
  return res.json();
}

/** Polls `fn` until it returns a truthy value (or throws after `timeout`). */
export async function eventually(fn, { timeout = T, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${message}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** Saves a screenshot of a failing page (best effort). */
export async function snapOnFailure(page, name) {
  try {
    await page.screenshot({ path: artifactPath(`failure-${name}.png`), fullPage: true });
  } catch {
    /* page gone */
  }
}
