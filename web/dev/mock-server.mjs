// A tiny in-memory stand-in for the stoa server, for working on the page
// without the Rust build: `node web/dev/mock-server.mjs [port]`, then open
// http://127.0.0.1:8081/. Follows docs/api.md loosely (no persistence).
// With DEMO_EVENTS=1 it posts a thread and a comment from "alice" shortly
// after each stream connects, to see live updates.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const webDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const port = Number(process.argv[2] || 8081);
const users = new Map(); // username -> {id, username, password}
const sessions = new Map(); // token -> user
const threads = [];
const comments = [];
const likes = new Set();
const outbox = [];
const streams = new Set();
let demoDone = false;
const now = () => new Date().toISOString();

function emit(type, data, stored = true) {
  const ev = { id: stored ? outbox.length + 1 : null, type, data, timestamp: now() };
  if (stored) outbox.push(ev);
  for (const s of streams) send(s, ev);
}
function send(res, ev) {
  res.write(`${ev.id ? `id: ${ev.id}\n` : ''}data: ${JSON.stringify({ type: ev.type, data: ev.data, timestamp: ev.timestamp })}\n\n`);
}
const lastId = () => outbox.length;
const userOf = (req) => {
  const m = /(?:^|;\s*)stoa_session=([^;]+)/.exec(req.headers.cookie || '');
  return (m && sessions.get(m[1])) || null;
};
const pub = (u) => ({ id: u.id, username: u.username });
const threadView = (t, me) => ({
  ...t,
  likeCount: [...likes].filter((k) => k.endsWith(`:${t.id}`)).length,
  commentCount: comments.filter((c) => c.threadId === t.id).length,
  likedByMe: !!me && likes.has(`${me.id}:${t.id}`),
});
const commentView = (c, me) => ({
  ...c,
  likeCount: [...likes].filter((k) => k.endsWith(`:${c.id}`)).length,
  likedByMe: !!me && likes.has(`${me.id}:${c.id}`),
});

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}
const err = (res, status, code, message, field) =>
  json(res, status, { error: { code, message, ...(field ? { field } : {}) } });
async function body(req) {
  let s = '';
  for await (const c of req) s += c;
  try {
    return JSON.parse(s || '{}');
  } catch {
    return {};
  }
}
function login(res, user, status) {
  const token = randomUUID();
  sessions.set(token, user);
  json(res, status, { user: pub(user), token }, { 'Set-Cookie': `stoa_session=${token}; HttpOnly; SameSite=Lax; Path=/` });
}

function createThread(user, title, content) {
  const at = now();
  const t = { id: randomUUID(), title, content, author: pub(user), createdAt: at, lastActivityAt: at };
  threads.unshift(t);
  emit('new_thread', threadView(t, null));
  return t;
}
function createComment(user, threadId, content) {
  const c = { id: randomUUID(), threadId, content, author: pub(user), createdAt: now() };
  comments.push(c);
  // The list is ordered by latest activity: the thread moves to the front.
  const i = threads.findIndex((t) => t.id === threadId);
  if (i >= 0) {
    const [t] = threads.splice(i, 1);
    t.lastActivityAt = c.createdAt;
    threads.unshift(t);
  }
  const count = comments.filter((x) => x.threadId === threadId).length;
  emit('new_comment', { threadId, comment: commentView(c, null), commentCount: count });
  return c;
}

const alice = { id: randomUUID(), username: 'alice', password: 'password1' };
users.set('alice', alice);
createThread(alice, 'Welcome to stoa 👋', 'Say hello, share what you are building.\nLine two keeps its break.');
createThread(alice, '<img src=x onerror=alert(1)>', 'User text shows as text: <b>not bold</b>');
createComment(alice, threads[0].id, 'First!');

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const me = userOf(req);
  try {
    if (req.method === 'GET' && (p === '/' || p.startsWith('/assets/'))) {
      const file = p === '/' ? 'index.html' : p.slice('/assets/'.length);
      if (!/^[a-z-]+\.(js|css|html)$/.test(file)) return err(res, 404, 'not_found', 'no such asset');
      const type = { js: 'text/javascript', css: 'text/css', html: 'text/html' }[file.split('.').pop()];
      res.writeHead(200, { 'Content-Type': `${type}; charset=utf-8` });
      return res.end(await readFile(path.join(webDir, file)));
    }
    if (p === '/api/community/events') {
      const from = Number(req.headers['last-event-id'] ?? url.searchParams.get('lastEventId') ?? lastId());
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.write('retry: 1500\n\n');
      send(res, { id: null, type: 'connected', data: { connectionId: randomUUID(), lastEventId: lastId() }, timestamp: now() });
      if (from > lastId()) send(res, { id: null, type: 'resync', data: { lastEventId: lastId() }, timestamp: now() });
      else for (const ev of outbox.slice(from)) send(res, ev);
      streams.add(res);
      emit('presence', { online: streams.size }, false);
      const ping = setInterval(() => send(res, { id: null, type: 'ping', data: {}, timestamp: now() }), 30000);
      req.on('close', () => {
        clearInterval(ping);
        streams.delete(res);
        emit('presence', { online: streams.size }, false);
      });
      if (process.env.DEMO_EVENTS && !demoDone) {
        demoDone = true;
        setTimeout(() => createThread(alice, 'Live thread from alice', 'This arrived over the stream.'), 400);
        setTimeout(() => createComment(alice, threads[threads.length - 1].id, 'A live comment'), 700);
      }
      return;
    }
    if (p === '/api/auth/register' && req.method === 'POST') {
      const { username = '', password = '' } = await body(req);
      if (!/^[A-Za-z0-9_-]{3,32}$/.test(username))
        return err(res, 422, 'invalid', 'username must be 3–32 letters, digits, _ or -', 'username');
      if (password.length < 8 || password.length > 256)
        return err(res, 422, 'invalid', 'password must be 8–256 characters', 'password');
      if (users.has(username)) return err(res, 409, 'conflict', 'That username is taken');
      const u = { id: randomUUID(), username, password };
      users.set(username, u);
      return login(res, u, 201);
    }
    if (p === '/api/auth/login' && req.method === 'POST') {
      const { username, password } = await body(req);
      const u = users.get(username);
      if (!u || u.password !== password) return err(res, 401, 'unauthorized', 'Wrong username or password');
      return login(res, u, 200);
    }
    if (p === '/api/auth/logout' && req.method === 'POST') {
      res.writeHead(204, { 'Set-Cookie': 'stoa_session=; Max-Age=0; Path=/' });
      return res.end();
    }
    if (p === '/api/auth/me') return me ? json(res, 200, { user: pub(me) }) : err(res, 401, 'unauthorized', 'not signed in');
    if (p === '/api/community/stats') return json(res, 200, { connections: streams.size, online: streams.size, lastEventId: lastId(), outbox: { earliestId: 1, latestId: lastId() } });
    if (p === '/api/community/threads' && req.method === 'GET') {
      const limit = Number(url.searchParams.get('limit') || 20);
      const before = url.searchParams.get('before');
      const start = before ? threads.findIndex((t) => t.id === before) + 1 : 0;
      const page = threads.slice(start, start + limit);
      const more = start + limit < threads.length;
      return json(res, 200, { threads: page.map((t) => threadView(t, me)), nextCursor: more ? page.at(-1).id : null, lastEventId: lastId() });
    }
    let m = /^\/api\/community\/threads\/([^/]+)$/.exec(p);
    if (m && req.method === 'GET') {
      const t = threads.find((x) => x.id === m[1]);
      if (!t) return err(res, 404, 'not_found', 'no such thread');
      return json(res, 200, { thread: threadView(t, me), comments: comments.filter((c) => c.threadId === t.id).map((c) => commentView(c, me)), lastEventId: lastId() });
    }
    if (!me) return err(res, 401, 'unauthorized', 'Sign in first');
    if (p === '/api/community/threads' && req.method === 'POST') {
      const { title = '', content = '' } = await body(req);
      if (!title.trim() || title.length > 200) return err(res, 422, 'invalid', 'title must be 1–200 characters', 'title');
      if (!content.trim() || content.length > 20000) return err(res, 422, 'invalid', 'content must be 1–20000 characters', 'content');
      return json(res, 201, { thread: threadView(createThread(me, title, content), me) });
    }
    if (p === '/api/community/comment' && req.method === 'POST') {
      const { threadId, content = '' } = await body(req);
      if (!content.trim()) return err(res, 422, 'invalid', 'content must be 1–20000 characters', 'content');
      const c = createComment(me, threadId, content);
      const t = threads.find((x) => x.id === threadId);
      if (t && t.author.id !== me.id) emit('notification', { kind: 'reply', threadId, commentId: c.id, from: pub(me) });
      return json(res, 201, { comment: commentView(c, me) });
    }
    if (p === '/api/community/like') {
      const { threadId, commentId } = await body(req);
      const target = threadId || commentId;
      const key = `${me.id}:${target}`;
      const liked = req.method === 'POST';
      if (liked) likes.add(key);
      else likes.delete(key);
      const likeCount = [...likes].filter((k) => k.endsWith(`:${target}`)).length;
      if (threadId) emit(liked ? 'thread_liked' : 'thread_unliked', { threadId, userId: me.id, likeCount });
      else {
        const c = comments.find((x) => x.id === commentId);
        emit(liked ? 'comment_liked' : 'comment_unliked', { threadId: c?.threadId, commentId, userId: me.id, likeCount });
      }
      return json(res, 200, { liked, likeCount });
    }
    m = /^\/api\/community\/(threads|comments)\/([^/]+)$/.exec(p);
    if (m && req.method === 'DELETE') {
      if (m[1] === 'threads') {
        const i = threads.findIndex((x) => x.id === m[2]);
        if (i < 0) return err(res, 404, 'not_found', 'no such thread');
        if (threads[i].author.id !== me.id) return err(res, 403, 'forbidden', 'not yours');
        threads.splice(i, 1);
        emit('thread_deleted', { threadId: m[2] });
      } else {
        const i = comments.findIndex((x) => x.id === m[2]);
        if (i < 0) return err(res, 404, 'not_found', 'no such comment');
        if (comments[i].author.id !== me.id) return err(res, 403, 'forbidden', 'not yours');
        const [c] = comments.splice(i, 1);
        emit('comment_deleted', { threadId: c.threadId, commentId: c.id, commentCount: comments.filter((x) => x.threadId === c.threadId).length });
      }
      res.writeHead(204);
      return res.end();
    }
    return err(res, 404, 'not_found', 'no route');
  } catch (e) {
    console.error(e);
    return err(res, 500, 'internal', 'internal error');
  }
});
server.listen(port, '127.0.0.1', () => console.log(`mock stoa on http://127.0.0.1:${port}/`));
