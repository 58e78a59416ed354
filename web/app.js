// The community page: loads a snapshot of the threads, then follows the live
// stream from the snapshot's position (sse-client.js), applying each event in
// place. User text is only ever set with textContent; a post's body is the
// HTML the server rendered from its Markdown and sanitised (contentHtml),
// or, for a row without it, its text.

import { SSEClient, createDeduper } from './sse-client.js';

const PAGE_SIZE = 20;
const TOAST_MS = 5000;

const $ = (id) => document.getElementById(id);

const state = {
  me: null, // {id, username, role}
  threads: new Map(), // id -> thread
  order: [], // thread ids, newest first
  cards: new Map(), // id -> {root, refs...}
  open: new Map(), // id -> {comments: Map, loading, pending: [], version}
  versions: new Map(), // thread id -> id of the last event applied to its counts
  nextCursor: null,
  dedupe: createDeduper(null),
  client: null,
  // The thread the address names (/t/:id), and whether this page pushed it.
  routed: null,
  pushed: false,
};

/** Whether the signed-in user may moderate (delete, lock, pin anything). */
function moderates() {
  return !!state.me && (state.me.role === 'moderator' || state.me.role === 'admin');
}

function isAdmin() {
  return !!state.me && state.me.role === 'admin';
}

function mine(post) {
  return !!state.me && !!post.author && post.author.id === state.me.id;
}

// ---------------------------------------------------------------- helpers

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `Request failed (${status})`);
    this.status = status;
    this.code = e.code || String(status);
    this.field = e.field || null;
  }
}

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, { error: { code: 'network', message: 'Cannot reach the server. Check your connection.' } });
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* no body */
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    if (res.status === 429) {
      const after = res.headers.get('Retry-After');
      if (after && !err.message.includes('again')) err.message += ` Try again in ${after}s.`;
    }
    throw err;
  }
  return data;
}

/** Builds an element. Children that are strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function relTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const hr = Math.round(m / 60);
  if (hr < 24) return `${hr}h ago`;
  const d = Math.round(hr / 24);
  if (d < 7) return `${d}d ago`;
  return new Date(t).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

function timeEl(iso) {
  const d = new Date(iso);
  return h('time', {
    datetime: iso,
    title: Number.isNaN(d.getTime()) ? '' : d.toLocaleString(),
    text: relTime(iso),
  });
}

function avatar(user) {
  const name = (user && user.username) || '?';
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const el = h('span', { class: 'avatar', 'aria-hidden': 'true', text: name.slice(0, 1).toUpperCase() });
  el.style.setProperty('--hue', String(hash % 360));
  return el;
}

const ICONS = {
  heart: 'M12 20.5s-7.5-4.6-9.2-9.3C1.7 8 3.6 4.5 7.1 4.5c2 0 3.5 1.1 4.9 2.9 1.4-1.8 2.9-2.9 4.9-2.9 3.5 0 5.4 3.5 4.3 6.7-1.7 4.7-9.2 9.3-9.2 9.3z',
  comment: 'M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.5 4v-4A1.5 1.5 0 0 1 4 14.5z',
};

/** A small inline SVG icon (fixed paths, no user data). */
function icon(name) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon icon-${name}`);
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// ---------------------------------------------------------------- toasts

function toast(title, body, kind = 'info') {
  const el = h(
    'div',
    { class: `toast toast-${kind}`, 'data-testid': 'toast' },
    h('strong', { class: 'toast-title', text: title }),
    body ? h('span', { class: 'toast-body', text: body }) : null,
  );
  const close = () => {
    el.classList.add('toast-leaving');
    setTimeout(() => el.remove(), 200);
  };
  el.append(h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', onclick: close, text: '×' }));
  const region = $('toasts');
  region.append(el);
  while (region.children.length > 4) region.firstElementChild.remove();
  setTimeout(close, TOAST_MS);
}

// ---------------------------------------------------------------- forms

function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error')) {
    p.hidden = true;
    p.textContent = '';
  }
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

function showError(form, field, message) {
  if (field && !/^[A-Za-z0-9_-]+$/.test(field)) field = null;
  let p = field && form.querySelector(`.field-error[data-field="${field}"]`);
  if (!p) p = form.querySelector('.field-error[data-field="form"]');
  p.textContent = message;
  p.hidden = false;
  const input = field && form.querySelector(`[name="${field}"]`);
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

/** Shows an API error next to the field it concerns; `fieldFor` maps status → field. */
function showApiError(form, err, fieldFor = {}) {
  if (err.status === 401 && !fieldFor[401] && state.me) {
    setMe(null);
    showError(form, null, 'Your session has ended. Please sign in again.');
    return;
  }
  const field = err.field || fieldFor[err.status] || null;
  showError(form, field, err.message);
}

async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- auth

function setMe(user) {
  const changed = (state.me && state.me.id) !== (user && user.id);
  state.me = user;
  $('signed-in').hidden = !user;
  $('auth-card').hidden = !!user;
  $('composer').hidden = !user;
  if (user) {
    $('me-name').textContent = user.username;
    const av = avatar(user);
    $('me-avatar').replaceWith(Object.assign(av, { id: 'me-avatar' }));
  }
  for (const id of state.order) updateCard(id);
  for (const [id] of state.open) renderComments(id);
  return changed;
}

async function onAuthChanged() {
  // likedByMe and private notifications depend on who is signed in.
  await reloadSnapshot();
  state.client?.restart();
}

function setupAuth() {
  const form = $('auth-form');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const mode = (ev.submitter && ev.submitter.value) || 'signin';
    const button = ev.submitter || form.querySelector('[data-testid="signin"]');
    clearErrors(form);
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username) return showError(form, 'username', 'Enter a username.');
    if (!password) return showError(form, 'password', 'Enter a password.');
    await busy(button, async () => {
      try {
        const path = mode === 'signup' ? '/api/auth/register' : '/api/auth/login';
        const res = await api('POST', path, { username, password });
        form.reset();
        setMe(res.user);
        toast(mode === 'signup' ? `Welcome, ${res.user.username}!` : `Signed in as ${res.user.username}`, '', 'success');
        await onAuthChanged();
      } catch (err) {
        showApiError(form, err, { 409: 'username', 401: mode === 'signin' ? 'form' : null });
      }
    });
  });
  $('signout').addEventListener('click', async (ev) => {
    await busy(ev.currentTarget, async () => {
      try {
        await api('POST', '/api/auth/logout');
      } catch (err) {
        if (err.status !== 401) return toast('Could not sign out', err.message, 'error');
      }
      setMe(null);
      await onAuthChanged();
    });
  });
}

// ---------------------------------------------------------------- threads

function renderEmpty() {
  $('threads-empty').hidden = state.order.length > 0;
  $('load-more').hidden = !state.nextCursor;
}

function buildCard(thread) {
  const id = thread.id;
  const likeCount = h('span', { class: 'count', 'data-testid': 'thread-like-count' });
  const likeBtn = h(
    'button',
    { type: 'button', class: 'action like', 'data-testid': 'like-thread', onclick: () => toggleThreadLike(id) },
    icon('heart'),
    likeCount,
  );
  const commentCount = h('span', { class: 'count', 'data-testid': 'thread-comment-count' });
  const commentBtn = h(
    'button',
    { type: 'button', class: 'action', 'aria-expanded': 'false', onclick: () => toggleOpen(id) },
    icon('comment'),
    commentCount,
  );
  const deleteBtn = h('button', {
    type: 'button',
    class: 'action action-danger',
    'data-testid': 'delete-thread',
    onclick: () => deleteThread(id),
    text: 'Delete',
  });
  const editBtn = h('button', { type: 'button', class: 'action', 'data-testid': 'edit-thread', onclick: () => startEditThread(id), text: 'Edit' });
  const lockBtn = h('button', { type: 'button', class: 'action', 'data-testid': 'lock-thread', onclick: () => toggleFlag(id, 'lock') });
  const pinBtn = h('button', { type: 'button', class: 'action', 'data-testid': 'pin-thread', onclick: () => toggleFlag(id, 'pin') });
  const banBtn = h('button', {
    type: 'button',
    class: 'action action-danger ban',
    'data-testid': 'ban-user',
    onclick: () => banUser(thread.author),
    text: 'Ban',
  });
  const pinnedBadge = h('span', { class: 'badge badge-pinned', 'data-testid': 'pinned-badge', text: 'Pinned', hidden: true });
  const lockedBadge = h('span', { class: 'badge badge-locked', 'data-testid': 'locked-badge', text: 'Locked', hidden: true });
  const editedMark = h('span', { class: 'edited muted', 'data-testid': 'edited', text: 'edited', hidden: true });
  const editForm = buildEditForm({
    testid: 'edit-thread-form',
    fields: [
      ['title', 'input', 'Title'],
      ['content', 'textarea', 'Content'],
    ],
    onsubmit: (values) => saveThreadEdit(id, values),
    oncancel: () => stopEditThread(id),
  });
  const titleBtn = h('button', {
    type: 'button',
    class: 'thread-title-btn',
    'data-testid': 'thread-title',
    onclick: () => toggleOpen(id),
  });
  const content = h('div', { class: 'thread-content rich', 'data-testid': 'thread-content' });
  const body = h('div', { class: 'thread-comments', hidden: true });
  const root = h(
    'li',
    { class: 'card thread', 'data-testid': 'thread', 'data-thread-id': id },
    h(
      'div',
      { class: 'thread-meta' },
      avatar(thread.author),
      h('span', { class: 'author', text: (thread.author && thread.author.username) || 'unknown' }),
      banBtn,
      h('span', { class: 'dot-sep', 'aria-hidden': 'true', text: '·' }),
      timeEl(thread.createdAt),
      editedMark,
      pinnedBadge,
      lockedBadge,
    ),
    h('h3', { class: 'thread-title' }, titleBtn),
    content,
    editForm,
    h(
      'div',
      { class: 'thread-actions' },
      likeBtn,
      commentBtn,
      h('span', { class: 'spacer' }),
      editBtn,
      pinBtn,
      lockBtn,
      deleteBtn,
    ),
    body,
  );
  const card = {
    root,
    likeBtn,
    likeCount,
    commentBtn,
    commentCount,
    deleteBtn,
    editBtn,
    lockBtn,
    pinBtn,
    banBtn,
    pinnedBadge,
    lockedBadge,
    editedMark,
    editForm,
    titleBtn,
    content,
    body,
  };
  state.cards.set(id, card);
  return card;
}

/**
 * Fills `el` with a post's body: the sanitised HTML the server rendered
 * (contentHtml), or the text itself when there is none (a row written from
 * outside stoa). Returns `el`.
 */
function showPost(el, post) {
  if (typeof post.contentHtml === 'string') el.innerHTML = post.contentHtml;
  else el.textContent = post.content ?? '';
  el.classList.toggle('plain', typeof post.contentHtml !== 'string');
  return el;
}

function updateCard(id) {
  const t = state.threads.get(id);
  const card = state.cards.get(id);
  if (!t || !card) return;
  card.titleBtn.textContent = t.title;
  showPost(card.content, t);
  card.likeCount.textContent = String(t.likeCount ?? 0);
  card.likeBtn.setAttribute('aria-pressed', t.likedByMe ? 'true' : 'false');
  card.likeBtn.setAttribute('aria-label', `${t.likedByMe ? 'Unlike' : 'Like'} (${plural(t.likeCount ?? 0, 'like', 'likes')})`);
  card.likeBtn.classList.toggle('liked', !!t.likedByMe);
  card.commentCount.textContent = String(t.commentCount ?? 0);
  card.commentBtn.setAttribute('aria-label', `${plural(t.commentCount ?? 0, 'comment', 'comments')}; show`);
  const own = mine(t);
  card.deleteBtn.hidden = !(own || moderates());
  card.editBtn.hidden = !(own || moderates()) || !card.editForm.hidden;
  card.lockBtn.hidden = !moderates();
  card.lockBtn.textContent = t.locked ? 'Unlock' : 'Lock';
  card.pinBtn.hidden = !moderates();
  card.pinBtn.textContent = t.pinned ? 'Unpin' : 'Pin';
  card.banBtn.hidden = !isAdmin() || own || !t.author;
  card.pinnedBadge.hidden = !t.pinned;
  card.lockedBadge.hidden = !t.locked;
  card.root.classList.toggle('pinned', !!t.pinned);
  setEdited(card.editedMark, t.editedAt);
  const editing = !card.editForm.hidden;
  card.titleBtn.parentElement.hidden = editing;
  card.content.hidden = editing;
}

/** The "edited" mark, with the time of the edit on hover. */
function setEdited(el, editedAt) {
  el.hidden = !editedAt;
  if (!editedAt) return;
  const d = new Date(editedAt);
  el.title = Number.isNaN(d.getTime()) ? '' : `Edited ${d.toLocaleString()}`;
  el.setAttribute('aria-label', el.title || 'edited');
}

/**
 * An edit form with the same fields, limits and error places as creating:
 * `fields` are [name, 'input' | 'textarea', label]; `onsubmit` gets their
 * values and throws an ApiError to show.
 */
function buildEditForm({ testid, fields, onsubmit, oncancel }) {
  const form = h('form', { class: 'form edit-form', 'data-testid': testid, novalidate: true, hidden: true });
  for (const [name, kind, label] of fields) {
    const attrs = { name, 'aria-label': label, 'data-testid': `edit-${name}` };
    if (kind === 'input') attrs.maxlength = '200';
    else attrs.rows = '3';
    form.append(
      h('div', { class: 'field' }, h(kind, attrs), h('p', { class: 'field-error', 'data-testid': `error-${name}`, 'data-field': name, hidden: true })),
    );
  }
  form.append(
    h('p', { class: 'field-error form-error', 'data-testid': 'error-form', 'data-field': 'form', hidden: true }),
    h(
      'div',
      { class: 'form-actions' },
      h('button', { type: 'submit', class: 'btn btn-primary btn-small', 'data-testid': 'edit-save', text: 'Save' }),
      h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'edit-cancel', onclick: oncancel, text: 'Cancel' }),
    ),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const values = {};
    for (const [name] of fields) {
      values[name] = form.elements[name].value;
      if (!values[name].trim()) {
        return showError(form, name, name === 'title' ? 'Give your thread a title.' : 'Write something first.');
      }
    }
    await busy(form.querySelector('[type="submit"]'), async () => {
      try {
        await onsubmit(values);
      } catch (err) {
        showApiError(form, err);
      }
    });
  });
  return form;
}

function startEditThread(id) {
  const t = state.threads.get(id);
  const card = state.cards.get(id);
  if (!t || !card) return;
  clearErrors(card.editForm);
  card.editForm.elements.title.value = t.title;
  card.editForm.elements.content.value = t.content;
  card.editForm.hidden = false;
  updateCard(id);
  card.editForm.elements.content.focus();
}

function stopEditThread(id) {
  const card = state.cards.get(id);
  if (!card) return;
  card.editForm.hidden = true;
  updateCard(id);
}

async function saveThreadEdit(id, values) {
  const res = await api('PATCH', `/api/community/threads/${encodeURIComponent(id)}`, values);
  patchThread(id, {
    title: res.thread.title,
    content: res.thread.content,
    contentHtml: res.thread.contentHtml,
    editedAt: res.thread.editedAt,
  });
  stopEditThread(id);
}

/** A moderator's lock or pin, switched after a confirmation. */
async function toggleFlag(id, flag) {
  const t = state.threads.get(id);
  if (!t) return;
  const on = flag === 'lock' ? !t.locked : !t.pinned;
  const verb = { lock: on ? 'Lock' : 'Unlock', pin: on ? 'Pin' : 'Unpin' }[flag];
  const why = flag === 'lock' && on ? ' Only moderators will be able to comment.' : '';
  if (!window.confirm(`${verb} “${t.title}”?${why}`)) return;
  try {
    const res = await api(on ? 'PUT' : 'DELETE', `/api/community/threads/${encodeURIComponent(id)}/${flag}`);
    patchThread(id, { locked: res.thread.locked, pinned: res.thread.pinned });
    if (flag === 'pin') sortThreads();
    if (state.open.has(id)) renderComments(id);
  } catch (err) {
    toast(`Could not ${verb.toLowerCase()} the thread`, err.message, 'error');
  }
}

/** An admin's ban of a post's author, with a reason, after a confirmation. */
async function banUser(user) {
  if (!user || !user.id) return;
  const reason = window.prompt(`Ban ${user.username}? Their sessions end at once. Reason (shown to them):`, '');
  if (reason === null) return;
  try {
    await api('PUT', `/api/admin/users/${encodeURIComponent(user.id)}/ban`, { reason });
    toast(`${user.username} is banned`, reason, 'success');
  } catch (err) {
    toast(`Could not ban ${user.username}`, err.message, 'error');
  }
}

/** When a thread last saw a post: its newest comment, or its creation. */
const lastActivity = (t) => t.lastActivityAt || t.createdAt;

/** Pinned threads first, then by latest activity: the order of the server's list. */
function threadsInOrder(a, b) {
  const x = state.threads.get(a);
  const y = state.threads.get(b);
  if (!!x.pinned !== !!y.pinned) return x.pinned ? -1 : 1;
  if (lastActivity(x) !== lastActivity(y)) return lastActivity(x) < lastActivity(y) ? 1 : -1;
  return x.id < y.id ? 1 : -1;
}

/** Moves cards to the list's order, only those out of place, keeping the
 * focus and caret of a comment being written inside a moved card. */
function sortThreads() {
  state.order.sort(threadsInOrder);
  const list = $('thread-list');
  const focused = document.activeElement;
  const caret = focused && 'selectionStart' in focused
    ? [focused.selectionStart, focused.selectionEnd] : null;
  let next = list.firstElementChild;
  for (const id of state.order) {
    const card = state.cards.get(id).root;
    if (card === next) next = next.nextElementSibling;
    else list.insertBefore(card, next);
  }
  if (focused && focused !== document.activeElement && list.contains(focused)) {
    focused.focus({ preventScroll: true });
    if (caret) focused.setSelectionRange(caret[0], caret[1]);
  }
}

/** A new comment moves its thread up the list, as in every forum. */
function bumpThread(threadId, at) {
  const t = state.threads.get(threadId);
  if (!t || !at || at <= lastActivity(t)) return;
  t.lastActivityAt = at;
  sortThreads();
}

function insertThread(thread, { atTop, version = null }) {
  if (state.threads.has(thread.id)) return false;
  state.threads.set(thread.id, { ...thread });
  if (version !== null) state.versions.set(thread.id, version);
  const card = buildCard(thread);
  const list = $('thread-list');
  if (atTop) {
    state.order.unshift(thread.id);
    list.prepend(card.root);
    card.root.classList.add('thread-new');
    setTimeout(() => card.root.classList.remove('thread-new'), 1500);
    sortThreads();
  } else {
    state.order.push(thread.id);
    list.append(card.root);
  }
  updateCard(thread.id);
  renderEmpty();
  return true;
}

function removeThread(id) {
  const card = state.cards.get(id);
  if (card) card.root.remove();
  state.cards.delete(id);
  state.threads.delete(id);
  state.open.delete(id);
  state.versions.delete(id);
  state.order = state.order.filter((x) => x !== id);
  renderEmpty();
}

function clearThreads() {
  $('thread-list').replaceChildren();
  state.threads.clear();
  state.cards.clear();
  state.open.clear();
  state.versions.clear();
  state.order = [];
}

/** Applies counts from an event (or a fetch at position `version`) unless newer ones are already shown. */
function patchThread(id, patch, version = null) {
  const t = state.threads.get(id);
  if (!t) return;
  const seen = state.versions.get(id);
  if (version !== null && seen !== undefined && version < seen) return;
  Object.assign(t, patch);
  if (version !== null) state.versions.set(id, version);
  updateCard(id);
}

async function loadThreads(before) {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (before) q.set('before', before);
  return api('GET', `/api/community/threads?${q}`);
}

async function reloadSnapshot() {
  const list = $('thread-list');
  list.setAttribute('aria-busy', 'true');
  try {
    const res = await loadThreads();
    const reopen = [...state.open.keys()];
    clearThreads();
    for (const t of res.threads) insertThread(t, { atTop: false, version: res.lastEventId });
    state.nextCursor = res.nextCursor;
    state.dedupe.reset(res.lastEventId);
    $('threads-error').hidden = true;
    renderEmpty();
    for (const id of reopen) if (state.threads.has(id)) toggleOpen(id, { fromHistory: true });
    return res.lastEventId;
  } catch (err) {
    const banner = $('threads-error');
    banner.textContent = `Could not load threads: ${err.message}`;
    banner.hidden = false;
    throw err;
  } finally {
    list.setAttribute('aria-busy', 'false');
  }
}

async function loadMore(ev) {
  if (!state.nextCursor) return;
  await busy(ev.currentTarget, async () => {
    try {
      const res = await loadThreads(state.nextCursor);
      for (const t of res.threads) insertThread(t, { atTop: false, version: res.lastEventId });
      state.nextCursor = res.nextCursor;
      renderEmpty();
    } catch (err) {
      toast('Could not load more threads', err.message, 'error');
    }
  });
}

function requireSignIn() {
  if (state.me) return true;
  toast('Sign in first', 'Sign in or sign up to post, comment and like.', 'info');
  $('auth-card').hidden = false;
  $('auth-username').focus();
  return false;
}

async function toggleThreadLike(id) {
  if (!requireSignIn()) return;
  const t = state.threads.get(id);
  const card = state.cards.get(id);
  if (!t || !card) return;
  await busy(card.likeBtn, async () => {
    try {
      const res = await api(t.likedByMe ? 'DELETE' : 'POST', '/api/community/like', { threadId: id });
      patchThread(id, { likedByMe: res.liked, likeCount: res.likeCount });
    } catch (err) {
      if (err.status === 401) setMe(null);
      toast('Could not update like', err.message, 'error');
    }
  });
}

async function deleteThread(id) {
  const t = state.threads.get(id);
  if (!t || !window.confirm(`Delete “${t.title}”? This cannot be undone.`)) return;
  try {
    await api('DELETE', `/api/community/threads/${encodeURIComponent(id)}`);
    removeThread(id);
  } catch (err) {
    if (err.status === 404) removeThread(id);
    else toast('Could not delete the thread', err.message, 'error');
  }
}

function setupComposer() {
  const form = $('thread-form');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const title = form.title.value;
    const content = form.content.value;
    if (!title.trim()) return showError(form, 'title', 'Give your thread a title.');
    if (!content.trim()) return showError(form, 'content', 'Write something first.');
    await busy(form.querySelector('[type="submit"]'), async () => {
      try {
        const res = await api('POST', '/api/community/threads', { title, content });
        form.reset();
        insertThread(res.thread, { atTop: true });
      } catch (err) {
        showApiError(form, err);
      }
    });
  });
}

// ---------------------------------------------------------------- links

const DEFAULT_TITLE = document.title;

function setDocumentTitle(threadTitle) {
  document.title = threadTitle ? `${threadTitle} — stoa` : DEFAULT_TITLE;
}

/** A thread's address: /t/:id/:slug (the slug is for people; the id counts). */
function threadPath(t) {
  const slug = (t.title || '')
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60);
  return `/t/${encodeURIComponent(t.id)}${slug ? `/${slug}` : ''}`;
}

/** The thread id the address names, or null for the list. */
function routeFromPath() {
  const m = window.location.pathname.match(/^\/t\/([^/]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}

/** Opening a thread by hand: its address goes on the history. */
function routeOpened(id) {
  const t = state.threads.get(id);
  if (!t) return;
  if (state.routed !== id) window.history.pushState({ thread: id, pushed: true }, '', threadPath(t));
  state.routed = id;
  setDocumentTitle(t.title);
}

/** Closing the thread the address names: back to the list's address. */
function routeClosed(id) {
  if (state.routed !== id) return;
  state.routed = null;
  setDocumentTitle(null);
  if (window.history.state && window.history.state.pushed && window.history.state.thread === id) window.history.back();
  else window.history.replaceState(null, '', '/');
}

/** Shows what the address names: the list, or one thread opened (fetched if not listed). */
async function applyRoute() {
  const id = routeFromPath();
  const message = $('route-message');
  message.hidden = true;
  if (state.routed && state.routed !== id && state.open.has(state.routed)) toggleOpen(state.routed, { fromHistory: true });
  state.routed = id;
  if (!id) return setDocumentTitle(null);
  if (!state.threads.has(id)) {
    try {
      const res = await api('GET', `/api/community/threads/${encodeURIComponent(id)}`);
      insertThread(res.thread, { atTop: false, version: res.lastEventId });
      sortThreads();
    } catch (err) {
      setDocumentTitle(null);
      message.replaceChildren(
        err.status === 404 ? 'This thread was deleted, or never existed. ' : `Could not open this thread: ${err.message} `,
        h('a', { href: '/', 'data-testid': 'back-to-list', text: 'See all threads' }),
      );
      message.hidden = false;
      return;
    }
  }
  if (!state.open.has(id)) toggleOpen(id, { fromHistory: true });
  setDocumentTitle(state.threads.get(id)?.title);
  state.cards.get(id)?.root.scrollIntoView({ block: 'start' });
}

// ---------------------------------------------------------------- comments

async function toggleOpen(id, { fromHistory = false } = {}) {
  const card = state.cards.get(id);
  if (!card) return;
  if (state.open.has(id)) {
    if (!fromHistory) routeClosed(id);
    state.open.delete(id);
    card.body.hidden = true;
    card.body.replaceChildren();
    card.commentBtn.setAttribute('aria-expanded', 'false');
    card.root.classList.remove('open');
    return;
  }
  const view = { comments: new Map(), loading: true, pending: [], error: null, editing: null, editForm: null };
  state.open.set(id, view);
  if (!fromHistory) routeOpened(id);
  card.body.hidden = false;
  card.commentBtn.setAttribute('aria-expanded', 'true');
  card.root.classList.add('open');
  renderComments(id);
  try {
    const res = await api('GET', `/api/community/threads/${encodeURIComponent(id)}`);
    if (state.open.get(id) !== view) return; // closed meanwhile
    view.loading = false;
    for (const c of res.comments) view.comments.set(c.id, c);
    patchThread(id, { ...res.thread }, res.lastEventId);
    // Events that arrived while loading and are newer than the fetch.
    const pending = view.pending;
    view.pending = [];
    for (const msg of pending) if (msg.id === null || msg.id > res.lastEventId) applyCommentEvent(msg);
    renderComments(id);
  } catch (err) {
    if (state.open.get(id) !== view) return;
    view.loading = false;
    view.error = err.status === 404 ? 'This thread was deleted.' : err.message;
    renderComments(id);
  }
}

function renderComments(threadId) {
  const view = state.open.get(threadId);
  const card = state.cards.get(threadId);
  if (!view || !card) return;
  const focused = document.activeElement;
  const keepForm = card.body.querySelector('form.comment-form');
  const list = h('ol', { class: 'comment-list' });
  if (view.loading) list.append(h('li', { class: 'muted loading', text: 'Loading comments…' }));
  else if (view.error) list.append(h('li', { class: 'field-error', text: view.error }));
  else if (view.comments.size === 0) list.append(h('li', { class: 'muted', text: 'No comments yet.' }));
  for (const c of view.comments.values()) list.append(buildComment(c, view));
  const form = keepForm || buildCommentForm(threadId);
  const locked = !!state.threads.get(threadId)?.locked;
  // A locked thread takes comments from moderators only: for everyone
  // else the comment box goes.
  form.hidden = !state.me || (locked && !moderates());
  const note = locked
    ? h('p', { class: 'muted small locked-note', 'data-testid': 'locked-note', text: 'This thread is locked: it takes no new comments.' })
    : state.me
      ? null
      : h('p', { class: 'muted small' }, h('button', { type: 'button', class: 'link', onclick: requireSignIn, text: 'Sign in' }), ' to comment.');
  card.body.replaceChildren(list, form, ...(note ? [note] : []));
  if (focused && card.body.contains(focused)) focused.focus();
}

function buildComment(c, view) {
  const own = mine(c);
  const likeBtn = h(
    'button',
    {
      type: 'button',
      class: `action like${c.likedByMe ? ' liked' : ''}`,
      'data-testid': 'like-comment',
      'aria-pressed': c.likedByMe ? 'true' : 'false',
      'aria-label': `${c.likedByMe ? 'Unlike' : 'Like'} comment (${plural(c.likeCount ?? 0, 'like', 'likes')})`,
      onclick: (ev) => toggleCommentLike(c.threadId, c.id, ev.currentTarget),
    },
    icon('heart'),
    h('span', { class: 'count', 'data-testid': 'comment-like-count', text: String(c.likeCount ?? 0) }),
  );
  return h(
    'li',
    { class: 'comment', 'data-testid': 'comment', 'data-comment-id': c.id },
    avatar(c.author),
    h(
      'div',
      { class: 'comment-main' },
      h(
        'div',
        { class: 'thread-meta' },
        h('span', { class: 'author', text: (c.author && c.author.username) || 'unknown' }),
        h('span', { class: 'dot-sep', 'aria-hidden': 'true', text: '·' }),
        timeEl(c.createdAt),
        commentEdited(c),
      ),
      view.editing === c.id
        ? commentEditForm(c, view)
        : showPost(h('div', { class: 'comment-content rich', 'data-testid': 'comment-content' }), c),
      h(
        'div',
        { class: 'thread-actions' },
        likeBtn,
        (own || moderates()) && view.editing !== c.id
          ? h('button', {
              type: 'button',
              class: 'action',
              'data-testid': 'edit-comment',
              onclick: () => {
                view.editing = c.id;
                view.editForm = null;
                renderComments(c.threadId);
                view.editForm?.elements.content.focus();
              },
              text: 'Edit',
            })
          : null,
        own || moderates()
          ? h('button', {
              type: 'button',
              class: 'action action-danger',
              'data-testid': 'delete-comment',
              onclick: () => deleteComment(c.threadId, c.id),
              text: 'Delete',
            })
          : null,
      ),
    ),
  );
}

function commentEdited(c) {
  if (!c.editedAt) return null;
  const el = h('span', { class: 'edited muted', 'data-testid': 'edited', text: 'edited' });
  setEdited(el, c.editedAt);
  return el;
}

/** The in-place edit form of a comment, kept across re-renders while open. */
function commentEditForm(c, view) {
  if (view.editForm) return view.editForm;
  const stop = () => {
    view.editing = null;
    view.editForm = null;
    renderComments(c.threadId);
  };
  const form = buildEditForm({
    testid: 'edit-comment-form',
    fields: [['content', 'textarea', 'Comment']],
    onsubmit: async ({ content }) => {
      const res = await api('PATCH', `/api/community/comments/${encodeURIComponent(c.id)}`, { content });
      const kept = view.comments.get(c.id);
      if (kept) Object.assign(kept, { content: res.comment.content, contentHtml: res.comment.contentHtml, editedAt: res.comment.editedAt });
      stop();
    },
    oncancel: stop,
  });
  form.elements.content.value = c.content;
  form.hidden = false;
  view.editForm = form;
  return form;
}

function buildCommentForm(threadId) {
  const inputId = `comment-${threadId}`;
  const form = h(
    'form',
    { class: 'form comment-form', novalidate: true },
    h('label', { for: inputId, class: 'sr-only', text: 'Write a comment' }),
    h(
      'div',
      { class: 'comment-row' },
      h('textarea', {
        id: inputId,
        name: 'content',
        rows: '1',
        placeholder: 'Write a comment…',
        'data-testid': 'comment-input',
      }),
      h('button', {
        type: 'button',
        class: 'btn',
        'data-testid': 'comment-preview-toggle',
        'aria-pressed': 'false',
        onclick: () => togglePreview(),
        text: 'Preview',
      }),
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'comment-submit', text: 'Reply' }),
    ),
    h('div', {
      class: 'comment-preview comment-content rich',
      'data-testid': 'comment-preview',
      'aria-live': 'polite',
      hidden: true,
    }),
    h('p', { class: 'field-error', 'data-testid': 'error-content', 'data-field': 'content', hidden: true }),
    h('p', { class: 'field-error form-error', 'data-testid': 'error-form', 'data-field': 'form', hidden: true }),
  );
  const preview = form.querySelector('.comment-preview');
  const previewBtn = form.querySelector('[data-testid="comment-preview-toggle"]');
  const hidePreview = () => {
    preview.hidden = true;
    preview.replaceChildren();
    previewBtn.setAttribute('aria-pressed', 'false');
    previewBtn.textContent = 'Preview';
  };
  // The server renders the draft with the same code as a real post, so
  // what the preview shows is what posting will show.
  async function togglePreview() {
    if (!preview.hidden) return hidePreview();
    clearErrors(form);
    const content = form.content.value;
    if (!content.trim()) return showError(form, 'content', 'Write something first.');
    await busy(previewBtn, async () => {
      try {
        const res = await api('POST', '/api/community/preview', { content });
        preview.innerHTML = res.contentHtml;
        preview.hidden = false;
        previewBtn.setAttribute('aria-pressed', 'true');
        previewBtn.textContent = 'Edit';
      } catch (err) {
        showApiError(form, err);
      }
    });
  }
  form.content.addEventListener('input', () => {
    if (!preview.hidden) hidePreview();
  });
  form.content.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const content = form.content.value;
    if (!content.trim()) return showError(form, 'content', 'Write something first.');
    await busy(form.querySelector('[type="submit"]'), async () => {
      try {
        const res = await api('POST', '/api/community/comment', { threadId, content });
        form.reset();
        hidePreview();
        addComment(res.comment, null);
        form.content.focus();
      } catch (err) {
        showApiError(form, err);
      }
    });
  });
  return form;
}

/** Adds a comment to an open thread; `commentCount` from an event, or null to count locally. */
function addComment(comment, commentCount, version = null) {
  const view = state.open.get(comment.threadId);
  const known = view && view.comments.has(comment.id);
  if (view && !known) view.comments.set(comment.id, comment);
  const t = state.threads.get(comment.threadId);
  if (t) {
    if (commentCount !== null && commentCount !== undefined) patchThread(t.id, { commentCount }, version);
    else if (!known) patchThread(t.id, { commentCount: (t.commentCount || 0) + 1 });
  }
  if (view && !known) renderComments(comment.threadId);
  bumpThread(comment.threadId, comment.createdAt);
  return !known;
}

async function toggleCommentLike(threadId, commentId, button) {
  if (!requireSignIn()) return;
  const c = state.open.get(threadId)?.comments.get(commentId);
  if (!c) return;
  await busy(button, async () => {
    try {
      const res = await api(c.likedByMe ? 'DELETE' : 'POST', '/api/community/like', { commentId });
      c.likedByMe = res.liked;
      c.likeCount = res.likeCount;
      renderComments(threadId);
    } catch (err) {
      toast('Could not update like', err.message, 'error');
    }
  });
}

async function deleteComment(threadId, commentId) {
  if (!window.confirm('Delete this comment?')) return;
  try {
    await api('DELETE', `/api/community/comments/${encodeURIComponent(commentId)}`);
    removeComment(threadId, commentId, null);
  } catch (err) {
    if (err.status === 404) removeComment(threadId, commentId, null);
    else toast('Could not delete the comment', err.message, 'error');
  }
}

function removeComment(threadId, commentId, commentCount, version = null) {
  const view = state.open.get(threadId);
  const had = view && view.comments.delete(commentId);
  const t = state.threads.get(threadId);
  if (t) {
    if (commentCount !== null && commentCount !== undefined) patchThread(threadId, { commentCount }, version);
    else if (had) patchThread(threadId, { commentCount: Math.max(0, (t.commentCount || 1) - 1) });
  }
  if (had) renderComments(threadId);
}

// ---------------------------------------------------------------- live events

/** Events about comments of an open thread; buffered while its comments load. */
function applyCommentEvent(msg) {
  const d = msg.data || {};
  const view = state.open.get(d.threadId);
  if (view && view.loading) {
    // Applied once the comments arrive, if newer than the fetch; counts now.
    view.pending.push(msg);
    if (msg.type === 'new_comment' || msg.type === 'comment_deleted') {
      patchThread(d.threadId, { commentCount: d.commentCount }, msg.id);
    }
    if (msg.type === 'new_comment') bumpThread(d.threadId, d.comment.createdAt);
    return msg.type === 'new_comment';
  }
  switch (msg.type) {
    case 'new_comment':
      return addComment(d.comment, d.commentCount, msg.id);
    case 'comment_deleted':
      return removeComment(d.threadId, d.commentId, d.commentCount, msg.id);
    case 'comment_edited': {
      const c = view && view.comments.get(d.comment.id);
      if (c) {
        Object.assign(c, { content: d.comment.content, contentHtml: d.comment.contentHtml, editedAt: d.comment.editedAt });
        // An open edit form of this comment keeps what its writer typed.
        renderComments(d.threadId);
      }
      return false;
    }
    case 'comment_liked':
    case 'comment_unliked': {
      const c = view && view.comments.get(d.commentId);
      if (c) {
        c.likeCount = d.likeCount;
        if (state.me && d.userId === state.me.id) c.likedByMe = msg.type === 'comment_liked';
        renderComments(d.threadId);
      }
      return false;
    }
    default:
      return false;
  }
}

function onMessage(msg) {
  if (!state.dedupe.accept(msg.id)) return;
  const d = msg.data || {};
  const me = state.me;
  switch (msg.type) {
    case 'connected':
    case 'ping':
    case 'resync':
      return;
    case 'presence':
      if (typeof d.online === 'number') $('online-count').textContent = String(d.online);
      return;
    case 'new_thread': {
      const added = insertThread(d, { atTop: true, version: msg.id });
      if (added && !(me && d.author && d.author.id === me.id)) {
        toast('New Thread!', `${d.author ? d.author.username : 'Someone'}: ${d.title}`);
      }
      return;
    }
    case 'thread_deleted':
      removeThread(d.threadId);
      return;
    case 'thread_liked':
    case 'thread_unliked': {
      const patch = { likeCount: d.likeCount };
      if (me && d.userId === me.id) patch.likedByMe = msg.type === 'thread_liked';
      patchThread(d.threadId, patch, msg.id);
      return;
    }
    case 'new_comment': {
      const added = applyCommentEvent(msg);
      const t = state.threads.get(d.threadId);
      const mine = me && d.comment && d.comment.author && d.comment.author.id === me.id;
      const fresh = state.open.has(d.threadId) ? added : true;
      // A reply to my own thread is announced by its `notification` (one
      // toast per event, not two).
      const toMe = me && t && t.author && t.author.id === me.id;
      if (t && !mine && !toMe && fresh) toast(`New comment on ${t.title}`, d.comment ? `${d.comment.author?.username ?? 'Someone'}: ${d.comment.content}` : '');
      return;
    }
    case 'comment_deleted':
    case 'comment_edited':
    case 'comment_liked':
    case 'comment_unliked':
      applyCommentEvent(msg);
      return;
    case 'thread_edited': {
      const t = d.thread || {};
      patchThread(d.threadId, { title: t.title, content: t.content, contentHtml: t.contentHtml, editedAt: t.editedAt });
      if (state.routed === d.threadId) setDocumentTitle(t.title);
      return;
    }
    case 'thread_locked':
      patchThread(d.threadId, { locked: d.locked });
      if (state.open.has(d.threadId)) renderComments(d.threadId);
      return;
    case 'thread_pinned':
      patchThread(d.threadId, { pinned: d.pinned });
      if (state.threads.has(d.threadId)) sortThreads();
      return;
    case 'banned':
      showBanned(d);
      return;
    case 'notification': {
      if (d.kind === 'reply') {
        const t = state.threads.get(d.threadId);
        const who = (d.from && d.from.username) || 'Someone';
        toast(`${who} replied to your thread`, t ? t.title : '', 'notify');
      }
      return;
    }
    default:
      return;
  }
}

/** The private event of a ban: the stream closes after it; say so. */
function showBanned(d) {
  const until = d.until ? ` until ${new Date(d.until).toLocaleString()}` : '';
  const reason = d.reason ? `: ${d.reason}` : '';
  const banner = $('account-banner');
  banner.textContent = `You have been banned${until}${reason}.`;
  banner.hidden = false;
}

// ---------------------------------------------------------------- connection

const CONN_TEXT = { connected: 'Live', connecting: 'Connecting...', disconnected: 'Offline', error: 'Offline' };

function showStatus(status) {
  const conn = $('conn');
  const state_ = status === 'connected' ? 'live' : status === 'connecting' ? 'connecting' : 'offline';
  conn.dataset.state = state_;
  $('conn-status').textContent = CONN_TEXT[status] || 'Offline';
  $('reconnect').hidden = state_ !== 'offline';
}

async function onResync() {
  try {
    const lastEventId = await reloadSnapshot();
    state.client.reconnect({ lastEventId });
  } catch {
    showStatus('error');
  }
}

// ---------------------------------------------------------------- search

const SEARCH_DEBOUNCE_MS = 200;

/**
 * The search box in the header: results as you type (debounced; an answer
 * to an older query is dropped), each opening its thread at the match.
 * Snippets come from the server escaped, with only <mark> as markup.
 */
function setupSearch() {
  const form = $('search-form');
  const input = $('search-input');
  const panel = $('search-results');
  let timer = null;
  let asked = 0;
  const close = () => {
    panel.hidden = true;
  };
  async function run(q, before = null) {
    const mine = ++asked;
    const params = new URLSearchParams({ q, limit: '10' });
    if (before) params.set('before', before);
    let res;
    try {
      res = await api('GET', `/api/community/search?${params}`);
    } catch (err) {
      if (mine !== asked) return;
      panel.replaceChildren(h('p', { class: 'field-error search-note', text: err.message }));
      panel.hidden = false;
      return;
    }
    if (mine !== asked) return;
    if (!before) panel.replaceChildren();
    panel.querySelector('.search-more')?.remove();
    if (!before && res.results.length === 0) panel.append(h('p', { class: 'muted search-note', text: `Nothing found for “${q}”.` }));
    const list = panel.querySelector('ol') || panel.appendChild(h('ol', { class: 'search-list' }));
    for (const hit of res.results) list.append(searchResult(hit, close));
    if (res.nextCursor) {
      panel.append(
        h('button', {
          type: 'button',
          class: 'btn btn-small search-more',
          'data-testid': 'search-more',
          onclick: () => run(q, res.nextCursor),
          text: 'More results',
        }),
      );
    }
    panel.hidden = false;
  }
  const ask = () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) {
      asked++;
      close();
      return;
    }
    timer = setTimeout(() => run(q), SEARCH_DEBOUNCE_MS);
  };
  input.addEventListener('input', ask);
  input.addEventListener('focus', () => {
    if (panel.childElementCount && input.value.trim()) panel.hidden = false;
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearTimeout(timer);
    if (input.value.trim()) run(input.value.trim());
  });
  form.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      close();
      input.focus();
    }
  });
  document.addEventListener('click', (ev) => {
    if (!form.contains(ev.target)) close();
  });
  // A mention links to /?q=@name: the posts that mention them.
  const q = new URLSearchParams(location.search).get('q');
  if (q) {
    input.value = q;
    run(q.trim());
  }
}

function searchResult(hit, close) {
  const where = hit.comment ? `comment by ${hit.comment.author?.username ?? 'unknown'}` : `thread by ${hit.thread.author?.username ?? 'unknown'}`;
  const snippet = h('span', { class: 'search-snippet' });
  snippet.innerHTML = hit.snippet; // escaped by the server; only <mark> is markup
  return h(
    'li',
    {},
    h(
      'button',
      {
        type: 'button',
        class: 'search-hit',
        'data-testid': 'search-hit',
        onclick: () => {
          close();
          openAt(hit.thread, hit.comment && hit.comment.id);
        },
      },
      h('span', { class: 'search-title', text: hit.thread.title }),
      h('span', { class: 'search-where muted', text: where }),
      snippet,
    ),
  );
}

/** Opens a thread (adding it to the list if it is not loaded) and shows the comment `commentId`, or the thread. */
async function openAt(thread, commentId) {
  insertThread(thread, { atTop: true });
  const card = state.cards.get(thread.id);
  if (!card) return;
  if (!state.open.has(thread.id)) await toggleOpen(thread.id);
  const target = commentId ? card.body.querySelector(`[data-comment-id="${CSS.escape(commentId)}"]`) : card.root;
  const el = target || card.root;
  el.scrollIntoView({ block: 'center', behavior: 'smooth' });
  el.classList.add('search-target');
  setTimeout(() => el.classList.remove('search-target'), 2000);
}

// ---------------------------------------------------------------- start

async function start() {
  setupAuth();
  setupComposer();
  setupSearch();
  $('load-more').addEventListener('click', loadMore);
  $('reconnect').addEventListener('click', () => state.client && state.client.reconnect());
  setInterval(() => {
    for (const t of document.querySelectorAll('time[datetime]')) t.textContent = relTime(t.getAttribute('datetime'));
  }, 60000);

  showStatus('connecting');
  try {
    const res = await api('GET', '/api/auth/me');
    setMe(res.user);
  } catch {
    setMe(null);
  }
  let lastEventId = null;
  try {
    lastEventId = await reloadSnapshot();
  } catch {
    /* banner shown; the stream still brings new threads */
  }
  await applyRoute();
  window.addEventListener('popstate', () => applyRoute());
  state.client = new SSEClient('/api/community/events', {
    onMessage,
    onStatusChange: showStatus,
    onResync,
  });
  state.client.connect({ lastEventId });
  window.addEventListener('online', () => {
    if (state.client.connectionStatus !== 'connected') state.client.reconnect();
  });
}

start();
