// stoa's live-update client: one EventSource per browser, shared by its tabs.
//
// What it does (the stream and reconnection are described in docs/replay.md):
// - Connects to the stream with `?lastEventId=<snapshot position>`, so the
//   events between loading a snapshot and connecting are replayed, not lost.
// - Tracks the last event id it saw; a new EventSource (after an error, a
//   silent stream or a manual reconnect) resumes from it, so nothing is lost
//   and, because ids are deduplicated, nothing is applied twice.
// - Reconnects with exponential backoff and jitter, at most
//   `maxReconnectAttempts` times in a row, then reports status 'error'.
// - A stream silent for longer than two ping intervals (a buffering proxy, a
//   sleeping laptop) is treated as dead and reopened.
// - On `resync` (the position is gone from the server's outbox) it calls
//   `onResync` so the page reloads its snapshot, or reloads the page.
// - Tabs share one stream: the tab holding the Web Lock `stoa-sse-leader`
//   owns the EventSource and passes every message to the other tabs over a
//   BroadcastChannel. When it closes, another tab gets the lock and resumes
//   from the last id it saw. Without Web Locks or BroadcastChannel each tab
//   has its own stream.
//
// Every browser global it uses can be passed in the options, for tests.

/** Message types the server sends without an `id:` line (never stored). */
export const UNSTORED_TYPES = new Set(['connected', 'ping', 'resync', 'presence']);

export const STATUS = Object.freeze({
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  DISCONNECTED: 'disconnected',
  ERROR: 'error',
});

const DEFAULTS = {
  reconnectInterval: 1000, // base backoff delay, ms
  maxReconnectInterval: 30000, // backoff cap, ms
  maxReconnectAttempts: 5,
  pingInterval: 30000, // the server's default ping interval, ms
  watchdogTimeout: null, // ms of silence before reopening; default 2 × pingInterval
  lockName: 'stoa-sse-leader',
  channelName: 'stoa-sse',
  shareAcrossTabs: true,
  replayBufferSize: 1000, // messages a leader keeps for tabs that join late
  withCredentials: false,
};

const ES_CLOSED = 2;

/**
 * Tracks the newest event id applied and rejects anything at or below it.
 * Events without an id (ping, presence, …) always pass.
 *
 *   const dedupe = createDeduper(snapshot.lastEventId);
 *   if (dedupe.accept(message.id)) apply(message);
 */
export function createDeduper(lastId = null) {
  let last = toId(lastId);
  return {
    accept(id) {
      const n = toId(id);
      if (n === null) return true;
      if (last !== null && n <= last) return false;
      last = n;
      return true;
    },
    reset(id = null) {
      last = toId(id);
    },
    get last() {
      return last;
    },
  };
}

/** Delay before reconnect attempt `attempt` (1-based): exponential, capped, with "equal jitter". */
export function backoffDelay(attempt, base = 1000, max = 30000, random = Math.random) {
  const exp = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** `url` with its `lastEventId` query parameter set to `id` (or removed when null). */
export function withLastEventId(url, id) {
  const hashAt = url.indexOf('#');
  const base = hashAt >= 0 ? url.slice(0, hashAt) : url;
  const qAt = base.indexOf('?');
  const path = qAt >= 0 ? base.slice(0, qAt) : base;
  const params = new URLSearchParams(qAt >= 0 ? base.slice(qAt + 1) : '');
  params.delete('lastEventId');
  if (id !== null && id !== undefined) params.set('lastEventId', String(id));
  const q = params.toString();
  return q ? `${path}?${q}` : path;
}

function toId(v) {
  if (v === null || v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function randomId() {
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

export class SSEClient {
  /**
   * @param {string} url  e.g. '/api/community/events'
   * @param {object} options  see DEFAULTS; callbacks onMessage(message, client),
   *   onError(error, {attempt, final}), onStatusChange(status, client),
   *   onResync(data, client), onRoleChange(role); `lastEventId` is the
   *   starting position. Injectable globals: EventSource, BroadcastChannel,
   *   locks, setTimeout, clearTimeout, random, location.
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const g = globalThis;
    const o = this.options;
    this._EventSource = 'EventSource' in options ? options.EventSource : g.EventSource;
    this._BroadcastChannel = 'BroadcastChannel' in options ? options.BroadcastChannel : g.BroadcastChannel;
    this._locks = 'locks' in options ? options.locks : g.navigator?.locks;
    this._setTimeout = o.setTimeout || g.setTimeout.bind(g);
    this._clearTimeout = o.clearTimeout || g.clearTimeout.bind(g);
    this._random = o.random || Math.random;
    this._location = 'location' in options ? options.location : g.location;

    this.tabId = randomId();
    this.connectionStatus = STATUS.DISCONNECTED;
    this.reconnectAttempts = 0;
    this.lastEventId = toId(o.lastEventId);
    /** 'leader' (owns the shared stream), 'follower', 'solo' (own stream) or null (stopped). */
    this.role = null;

    this._es = null;
    this._retryTimer = null;
    this._watchdogTimer = null;
    this._channel = null;
    this._lockAbort = null;
    this._releaseLock = null;
    this._gen = 0; // bumps on every start/stop so stale callbacks do nothing
    this._active = false;
    this._serverPingInterval = null;
    this._recent = []; // leader: recent stored messages, for late-joining tabs
    this._floor = null; // leader: id before the first message this stream could deliver
    this._listeners = new Set();
  }

  get isConnected() {
    return this.connectionStatus === STATUS.CONNECTED;
  }

  /** Plain-object view of the state, for UI bindings. */
  getState() {
    return {
      isConnected: this.isConnected,
      connectionStatus: this.connectionStatus,
      reconnectAttempts: this.reconnectAttempts,
      lastEventId: this.lastEventId,
      role: this.role,
    };
  }

  /** Calls `fn(state)` on every state change; returns an unsubscribe function. */
  subscribe(fn) {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  /** Starts listening. `opts.lastEventId` sets the position (e.g. a snapshot's). */
  connect(opts = {}) {
    if (opts.lastEventId !== undefined) this.lastEventId = toId(opts.lastEventId);
    if (this._active) return;
    this._active = true;
    const gen = ++this._gen;
    this.reconnectAttempts = 0;
    this._setStatus(STATUS.CONNECTING);

    const shared =
      this.options.shareAcrossTabs && this._locks && typeof this._locks.request === 'function' && this._BroadcastChannel;
    if (!shared) {
      this._setRole('solo');
      this._open();
      return;
    }
    this._setRole('follower');
    this._channel = new this._BroadcastChannel(this.options.channelName);
    this._channel.onmessage = (ev) => this._onChannel(ev.data);
    this._post({ kind: 'hello', from: this.tabId, lastEventId: this.lastEventId });

    const abort = typeof AbortController === 'function' ? new AbortController() : null;
    this._lockAbort = abort;
    const lockOpts = abort ? { signal: abort.signal } : {};
    Promise.resolve()
      .then(() =>
        this._locks.request(this.options.lockName, lockOpts, () => {
          if (gen !== this._gen) return undefined; // stopped meanwhile: let go at once
          this._lockAbort = null;
          return new Promise((resolve) => {
            this._releaseLock = resolve;
            this._becomeLeader();
          });
        }),
      )
      .catch(() => {}); // aborted: disconnect() was called while waiting
  }

  /** Stops listening: closes the stream, gives up the lock, cancels retries. */
  disconnect() {
    this._gen++;
    this._active = false;
    this._closeStream();
    this._clearRetry();
    if (this._lockAbort) {
      this._lockAbort.abort();
      this._lockAbort = null;
    }
    if (this._releaseLock) {
      this._releaseLock();
      this._releaseLock = null;
    }
    if (this._channel) {
      this._channel.onmessage = null;
      this._channel.close();
      this._channel = null;
    }
    this._recent = [];
    this._floor = null;
    this.reconnectAttempts = 0;
    this._setRole(null);
    this._setStatus(STATUS.DISCONNECTED);
  }

  /**
   * Reconnects now, resetting the attempt count (the "Reconnect" button).
   * `opts.lastEventId` sets a new position, e.g. after reloading a snapshot on resync.
   */
  reconnect(opts = {}) {
    if (opts.lastEventId !== undefined) this.lastEventId = toId(opts.lastEventId);
    if (!this._active) {
      this.connect();
      return;
    }
    if (this.role === 'follower') {
      // The stream belongs to another tab: ask it to retry if it gave up, and
      // ask for what we may have missed from our (possibly new) position.
      if (this.connectionStatus !== STATUS.CONNECTED) this._post({ kind: 'reconnect' });
      this._post({ kind: 'hello', from: this.tabId, lastEventId: this.lastEventId });
      return;
    }
    this.reconnectAttempts = 0;
    this._clearRetry();
    this._closeStream();
    this._setStatus(STATUS.CONNECTING);
    this._open();
  }

  /**
   * Reopens the shared stream from the last id seen, whichever tab holds it,
   * e.g. after signing in or out so the stream carries the right private events.
   */
  restart() {
    if (!this._active) return;
    if (this.role === 'follower') this._post({ kind: 'restart' });
    else this.reconnect();
  }

  // ---- stream (leader or solo) ----

  _becomeLeader() {
    this._setRole('leader');
    this._recent = [];
    this._floor = this.lastEventId;
    this.reconnectAttempts = 0;
    this._setStatus(STATUS.CONNECTING);
    this._open();
  }

  _open() {
    this._clearRetry();
    this._closeStream();
    if (!this._EventSource) {
      this._fail(new Error('EventSource is not available'));
      return;
    }
    const url = withLastEventId(this.url, this.lastEventId);
    let es;
    try {
      es = new this._EventSource(url, this.options.withCredentials ? { withCredentials: true } : undefined);
    } catch (err) {
      this._fail(err);
      return;
    }
    this._es = es;
    if (this._floor === null || (this.lastEventId !== null && this._recent.length === 0)) this._floor = this.lastEventId;
    es.onopen = () => {
      if (es !== this._es) return;
      this._armWatchdog();
      this.reconnectAttempts = 0;
      this._setStatus(STATUS.CONNECTED);
    };
    es.onmessage = (ev) => {
      if (es !== this._es) return;
      this._onStreamMessage(ev);
    };
    es.onerror = (ev) => {
      if (es !== this._es) return;
      // Our own backoff replaces the browser's retry so that attempts are
      // counted and limited; the new EventSource carries lastEventId in its URL.
      const err = new Error(es.readyState === ES_CLOSED ? 'stream closed' : 'stream error');
      err.event = ev;
      this._fail(err);
    };
    this._armWatchdog();
  }

  _onStreamMessage(ev) {
    this._armWatchdog();
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (err) {
      this._callback('onError', err, { attempt: this.reconnectAttempts, final: false });
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    const id = UNSTORED_TYPES.has(msg.type) ? null : toId(ev.lastEventId);
    const message = { ...msg, id };
    if (this.connectionStatus !== STATUS.CONNECTED) {
      this.reconnectAttempts = 0;
      this._setStatus(STATUS.CONNECTED);
    }
    if (msg.type === 'connected' && msg.data && Number(msg.data.pingInterval) > 0) {
      this._serverPingInterval = Number(msg.data.pingInterval);
      this._armWatchdog();
    }
    if (!this._accept(message)) return;
    if (this.role === 'leader') {
      if (id !== null) {
        this._recent.push(message);
        if (this._recent.length > this.options.replayBufferSize) this._floor = this._recent.shift().id;
      }
      this._post({ kind: 'event', message });
    }
    this._dispatch(message);
  }

  _fail(err) {
    this._closeStream();
    if (!this._active) return;
    const max = this.options.maxReconnectAttempts;
    if (this.reconnectAttempts >= max) {
      this._setStatus(STATUS.ERROR);
      this._callback('onError', err, { attempt: this.reconnectAttempts, final: true });
      return;
    }
    this.reconnectAttempts++;
    this._callback('onError', err, { attempt: this.reconnectAttempts, final: false });
    const delay = backoffDelay(
      this.reconnectAttempts,
      this.options.reconnectInterval,
      this.options.maxReconnectInterval,
      this._random,
    );
    this._setStatus(STATUS.CONNECTING);
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      if (this._active && this.role !== 'follower') this._open();
    }, delay);
  }

  _watchdogMs() {
    if (this.options.watchdogTimeout) return this.options.watchdogTimeout;
    return 2 * (this._serverPingInterval || this.options.pingInterval);
  }

  _armWatchdog() {
    if (this._watchdogTimer !== null) this._clearTimeout(this._watchdogTimer);
    this._watchdogTimer = this._setTimeout(() => {
      this._watchdogTimer = null;
      if (this._es) this._fail(new Error('stream silent for too long'));
    }, this._watchdogMs());
  }

  _closeStream() {
    if (this._watchdogTimer !== null) {
      this._clearTimeout(this._watchdogTimer);
      this._watchdogTimer = null;
    }
    if (this._es) {
      const es = this._es;
      this._es = null;
      es.onopen = es.onmessage = es.onerror = null;
      es.close();
    }
  }

  _clearRetry() {
    if (this._retryTimer !== null) {
      this._clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }

  // ---- tabs ----

  _post(msg) {
    if (!this._channel) return;
    try {
      this._channel.postMessage(msg);
    } catch {
      /* channel closed */
    }
  }

  _onChannel(m) {
    if (!m || typeof m !== 'object' || !this._active) return;
    if (this.role === 'leader') {
      if (m.kind === 'hello') this._answerHello(m);
      else if (m.kind === 'reconnect') {
        if (this.connectionStatus !== STATUS.CONNECTED) this.reconnect();
      } else if (m.kind === 'restart') this.reconnect();
      return;
    }
    if (this.role !== 'follower') return;
    if (m.kind === 'event' && m.message) {
      if (this._accept(m.message)) this._dispatch(m.message);
    } else if (m.kind === 'replay' && m.to === this.tabId) {
      if (m.gap) this._resync({ lastEventId: m.lastEventId ?? null });
      else for (const message of m.messages || []) if (this._accept(message)) this._dispatch(message);
    } else if (m.kind === 'status') {
      this.reconnectAttempts = m.reconnectAttempts || 0;
      this._setStatus(m.status);
    }
  }

  _answerHello(m) {
    this._post({ kind: 'status', status: this.connectionStatus, reconnectAttempts: this.reconnectAttempts });
    const from = toId(m.lastEventId);
    if (from === null) return;
    if (this._floor !== null && from < this._floor) {
      this._post({ kind: 'replay', to: m.from, gap: true, lastEventId: this.lastEventId });
      return;
    }
    const messages = this._recent.filter((x) => x.id > from);
    if (messages.length) this._post({ kind: 'replay', to: m.from, messages });
  }

  // ---- delivery ----

  /** Dedupe by id; moves the position forward. */
  _accept(message) {
    if (UNSTORED_TYPES.has(message.type)) return true;
    const id = toId(message.id);
    if (id === null) return true;
    if (this.lastEventId !== null && id <= this.lastEventId) return false;
    this.lastEventId = id;
    this._emit();
    return true;
  }

  _dispatch(message) {
    if (message.type === 'resync') {
      this._callback('onMessage', message, this);
      this._resync(message.data || {});
      return;
    }
    this._callback('onMessage', message, this);
  }

  _resync(data) {
    // Our position is gone: forget it, and let the page load a new snapshot
    // and call reconnect({lastEventId}) with the snapshot's position.
    this.lastEventId = null;
    if (this.role !== 'follower') {
      this._clearRetry();
      this._closeStream();
      this._recent = [];
      this._floor = null;
      this._setStatus(STATUS.CONNECTING);
    }
    this._emit();
    if (typeof this.options.onResync === 'function') {
      this.options.onResync(data, this);
    } else if (this._location && typeof this._location.reload === 'function') {
      this._location.reload();
    } else {
      this.reconnect({ lastEventId: data.lastEventId ?? null });
    }
  }

  // ---- state ----

  _setRole(role) {
    if (this.role === role) return;
    this.role = role;
    this._callback('onRoleChange', role, this);
    this._emit();
  }

  _setStatus(status) {
    const changed = status !== this.connectionStatus;
    this.connectionStatus = status;
    if (this.role === 'leader') {
      this._post({ kind: 'status', status, reconnectAttempts: this.reconnectAttempts });
    }
    if (changed) this._callback('onStatusChange', status, this);
    this._emit();
  }

  _emit() {
    if (!this._listeners.size) return;
    const state = this.getState();
    for (const fn of [...this._listeners]) {
      try {
        fn(state);
      } catch (err) {
        console.error(err);
      }
    }
  }

  _callback(name, ...args) {
    const fn = this.options[name];
    if (typeof fn !== 'function') return;
    try {
      fn(...args);
    } catch (err) {
      console.error(err);
    }
  }
}

export default SSEClient;
