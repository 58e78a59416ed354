import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  SSEClient,
  backoffDelay,
  createDeduper,
  withLastEventId,
} from '../sse-client.js';
import { makeClock, makeEventSourceClass, makeBroadcastChannelClass, makeLocks, flush } from './fakes.mjs';

/** A single-tab client (no locks/BroadcastChannel) on fakes. */
function soloClient(opts = {}) {
  const clock = makeClock();
  const ES = makeEventSourceClass();
  const log = { messages: [], statuses: [], errors: [], resyncs: [] };
  const client = new SSEClient('/api/community/events', {
    EventSource: ES,
    BroadcastChannel: undefined,
    locks: undefined,
    location: undefined,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    onMessage: (m) => log.messages.push(m),
    onStatusChange: (s) => log.statuses.push(s),
    onError: (e, info) => log.errors.push(info),
    ...opts,
  });
  return { client, clock, ES, log };
}

describe('helpers', () => {
  test('backoff grows exponentially, with jitter between half and the full step, capped', () => {
    const lo = (n) => backoffDelay(n, 1000, 30000, () => 0);
    const hi = (n) => backoffDelay(n, 1000, 30000, () => 1);
    assert.deepEqual([1, 2, 3, 4, 5].map(lo), [500, 1000, 2000, 4000, 8000]);
    assert.deepEqual([1, 2, 3, 4, 5].map(hi), [1000, 2000, 4000, 8000, 16000]);
    assert.equal(hi(10), 30000, 'capped at the maximum');
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(3, 1000, 30000)));
    assert.ok(seen.size > 1, 'jitter varies the delay');
    for (const d of seen) assert.ok(d >= 2000 && d <= 4000);
  });

  test('withLastEventId sets, replaces and removes the query parameter', () => {
    assert.equal(withLastEventId('/e', 5), '/e?lastEventId=5');
    assert.equal(withLastEventId('/e?thread=a&lastEventId=1', 9), '/e?thread=a&lastEventId=9');
    assert.equal(withLastEventId('/e?lastEventId=1', null), '/e');
  });

  test('createDeduper passes ids above the last one once, and id-less events always', () => {
    const d = createDeduper(10);
    assert.equal(d.accept(9), false);
    assert.equal(d.accept(10), false);
    assert.equal(d.accept(11), true);
    assert.equal(d.accept(11), false);
    assert.equal(d.accept(null), true);
    assert.equal(d.accept('12'), true);
    assert.equal(d.last, 12);
    d.reset(3);
    assert.equal(d.accept(4), true);
  });
});

describe('SSEClient, one tab', () => {
  test('first connect carries the snapshot position and goes connecting → connected', () => {
    const { client, ES, log } = soloClient();
    client.connect({ lastEventId: 42 });
    assert.equal(ES.instances.length, 1);
    assert.equal(ES.last.url, '/api/community/events?lastEventId=42');
    assert.equal(client.connectionStatus, 'connecting');
    assert.equal(client.isConnected, false);
    ES.last.emitOpen();
    assert.equal(client.connectionStatus, 'connected');
    assert.equal(client.isConnected, true);
    assert.deepEqual(log.statuses, ['connecting', 'connected']);
    assert.equal(client.role, 'solo');
  });

  test('messages reach onMessage with their id; stored events at or below the position are dropped', () => {
    const { client, ES, log } = soloClient();
    client.connect({ lastEventId: 5 });
    const es = ES.last;
    es.emitOpen();
    es.emit('connected', { connectionId: 'c1', lastEventId: 7 });
    es.emit('new_thread', { id: 't-old' }, 5); // already in the snapshot
    es.emit('new_thread', { id: 't6' }, 6);
    es.emit('ping', {});
    es.emit('thread_liked', { threadId: 't6', likeCount: 1 }, 7);
    es.emit('thread_liked', { threadId: 't6', likeCount: 1 }, 7); // duplicate
    assert.deepEqual(
      log.messages.map((m) => [m.type, m.id]),
      [
        ['connected', null],
        ['new_thread', 6],
        ['ping', null],
        ['thread_liked', 7],
      ],
    );
    assert.equal(log.messages[1].data.id, 't6');
    assert.equal(log.messages[1].timestamp, '2025-01-01T00:00:00Z');
    assert.equal(client.lastEventId, 7);
  });

  test('after an error the new EventSource resumes from the last id seen', () => {
    const { client, ES, clock } = soloClient();
    client.connect({ lastEventId: 1 });
    ES.last.emitOpen();
    ES.last.emit('new_comment', { threadId: 't' }, 2);
    ES.last.emit('new_comment', { threadId: 't' }, 3);
    ES.last.emitError(2); // the browser gave up
    assert.equal(ES.instances[0].readyState, 2, 'old stream closed');
    assert.equal(client.connectionStatus, 'connecting');
    clock.advance(1000);
    assert.equal(ES.instances.length, 2);
    assert.equal(ES.last.queryLastEventId, '3');
  });

  test('an error while the browser retries also moves to our own reconnect (no second live stream)', () => {
    const { client, ES, clock } = soloClient();
    client.connect();
    ES.last.emitOpen();
    ES.last.emit('new_thread', { id: 'a' }, 8);
    ES.last.emitError(0); // readyState CONNECTING
    assert.equal(ES.open.length, 0);
    clock.advance(1000);
    assert.equal(ES.open.length, 1);
    assert.equal(ES.last.queryLastEventId, '8');
  });

  test('reconnect delays grow exponentially with jitter', () => {
    const { client, ES, clock } = soloClient({ random: () => 0, maxReconnectAttempts: 10 });
    client.connect();
    const delays = [];
    for (let i = 0; i < 5; i++) {
      ES.last.emitError(2);
      delays.push(clock.pending()[0]);
      clock.advance(delays[i]);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000]);
    assert.equal(ES.instances.length, 6);
  });

  test('gives up after maxReconnectAttempts (default 5): status error, onError final, no more streams', () => {
    const { client, ES, clock, log } = soloClient();
    client.connect();
    for (let i = 0; i < 5; i++) {
      ES.last.emitError(2);
      assert.equal(client.reconnectAttempts, i + 1);
      clock.advance(60000);
    }
    assert.equal(ES.instances.length, 6);
    ES.last.emitError(2);
    assert.equal(client.connectionStatus, 'error');
    assert.equal(client.isConnected, false);
    assert.equal(log.errors.at(-1).final, true);
    clock.advance(10 * 60000);
    assert.equal(ES.instances.length, 6, 'no further attempts');
    assert.equal(ES.open.length, 0);
  });

  test('a successful open resets the attempt count', () => {
    const { client, ES, clock } = soloClient();
    client.connect();
    ES.last.emitError(2);
    ES.last.emitError(2); // stale instance: ignored
    clock.advance(60000);
    ES.last.emitError(2);
    assert.equal(client.reconnectAttempts, 2);
    clock.advance(60000);
    ES.last.emitOpen();
    assert.equal(client.reconnectAttempts, 0);
  });

  test('respects a custom maxReconnectAttempts', () => {
    const { client, ES, clock } = soloClient({ maxReconnectAttempts: 2 });
    client.connect();
    ES.last.emitError(2);
    clock.advance(60000);
    ES.last.emitError(2);
    clock.advance(60000);
    ES.last.emitError(2);
    assert.equal(client.connectionStatus, 'error');
    assert.equal(ES.instances.length, 3);
  });

  test('disconnect closes the stream and cancels pending retries', () => {
    const { client, ES, clock } = soloClient();
    client.connect();
    ES.last.emitOpen();
    client.disconnect();
    assert.equal(client.connectionStatus, 'disconnected');
    assert.equal(ES.open.length, 0);
    client.connect();
    ES.last.emitError(2);
    client.disconnect();
    clock.advance(60000);
    assert.equal(ES.instances.length, 2, 'the scheduled retry did not fire');
    assert.equal(clock.pending().length, 0, 'no timers left');
  });

  test('connect twice opens one stream; connect after disconnect resumes from the last id', () => {
    const { client, ES } = soloClient();
    client.connect({ lastEventId: 3 });
    client.connect();
    assert.equal(ES.instances.length, 1);
    ES.last.emitOpen();
    ES.last.emit('new_thread', { id: 'x' }, 4);
    client.disconnect();
    client.connect();
    assert.equal(ES.instances.length, 2);
    assert.equal(ES.last.queryLastEventId, '4');
  });

  test('reconnect after giving up starts over with a fresh attempt count', () => {
    const { client, ES, clock } = soloClient({ maxReconnectAttempts: 1 });
    client.connect({ lastEventId: 10 });
    ES.last.emitError(2);
    clock.advance(60000);
    ES.last.emitError(2);
    assert.equal(client.connectionStatus, 'error');
    const before = ES.instances.length;
    client.reconnect();
    assert.equal(ES.instances.length, before + 1, 'reconnects immediately');
    assert.equal(client.connectionStatus, 'connecting');
    assert.equal(client.reconnectAttempts, 0);
    assert.equal(ES.last.queryLastEventId, '10');
    ES.last.emitOpen();
    assert.equal(client.connectionStatus, 'connected');
  });

  test('reconnect while connected replaces the stream', () => {
    const { client, ES } = soloClient();
    client.connect();
    ES.last.emitOpen();
    ES.last.emit('ping', {});
    client.reconnect();
    assert.equal(ES.instances.length, 2);
    assert.equal(ES.instances[0].readyState, 2);
    assert.equal(ES.open.length, 1);
  });

  test('resync calls onResync; reconnect({lastEventId}) resumes from the new snapshot, even a lower one', () => {
    const resyncs = [];
    const { client, ES } = soloClient({ onResync: (data) => resyncs.push(data) });
    client.connect({ lastEventId: 100 });
    ES.last.emitOpen();
    ES.last.emit('resync', { lastEventId: 40 });
    assert.deepEqual(resyncs, [{ lastEventId: 40 }]);
    assert.equal(ES.open.length, 0, 'stream closed while the page reloads');
    assert.equal(client.lastEventId, null);
    client.reconnect({ lastEventId: 40 });
    assert.equal(ES.last.queryLastEventId, '40');
    ES.last.emitOpen();
    ES.last.emit('new_thread', { id: 'n' }, 41);
    assert.equal(client.lastEventId, 41);
  });

  test('resync without onResync reloads the page', () => {
    let reloads = 0;
    const { client, ES } = soloClient({ location: { reload: () => reloads++ } });
    client.connect({ lastEventId: 100 });
    ES.last.emit('resync', { lastEventId: 1 });
    assert.equal(reloads, 1);
  });

  test('watchdog reopens a stream silent for more than two ping intervals', () => {
    const { client, ES, clock } = soloClient({ pingInterval: 30000 });
    client.connect({ lastEventId: 1 });
    ES.last.emitOpen();
    ES.last.emit('new_thread', { id: 'a' }, 2);
    clock.advance(50000);
    ES.last.emit('ping', {}); // keeps it alive
    clock.advance(59000);
    assert.equal(ES.instances.length, 1, 'not yet: 59 s since the last message');
    clock.advance(1000); // 60 s of silence
    assert.equal(ES.instances[0].readyState, 2, 'silent stream closed');
    clock.advance(1000); // backoff
    assert.equal(ES.instances.length, 2);
    assert.equal(ES.last.queryLastEventId, '2');
  });

  test('watchdog timeout is an option', () => {
    const { client, ES, clock } = soloClient({ watchdogTimeout: 5000 });
    client.connect();
    ES.last.emitOpen();
    clock.advance(4999);
    assert.equal(ES.open.length, 1);
    clock.advance(1);
    assert.equal(ES.open.length, 0);
  });

  test('subscribe reports state changes until unsubscribed', () => {
    const { client, ES } = soloClient();
    const states = [];
    const off = client.subscribe((s) => states.push(s.connectionStatus));
    client.connect();
    ES.last.emitOpen();
    off();
    client.disconnect();
    assert.deepEqual(states.filter((s, i) => s !== states[i - 1]), ['connecting', 'connected']);
  });

  test('a malformed message is reported, not thrown', () => {
    const { client, ES, log } = soloClient();
    client.connect();
    ES.last.emitOpen();
    ES.last.emitRaw('not json');
    assert.equal(log.errors.length, 1);
    assert.equal(client.connectionStatus, 'connected');
  });
});

describe('SSEClient, tabs sharing one stream', () => {
  function makeBrowser() {
    return {
      clock: makeClock(),
      ES: makeEventSourceClass(),
      BC: makeBroadcastChannelClass(),
      locks: makeLocks(),
    };
  }
  function tab(browser, opts = {}) {
    const log = { messages: [], statuses: [], resyncs: [] };
    const client = new SSEClient('/api/community/events', {
      EventSource: browser.ES,
      BroadcastChannel: browser.BC,
      locks: browser.locks,
      location: undefined,
      setTimeout: browser.clock.setTimeout,
      clearTimeout: browser.clock.clearTimeout,
      onMessage: (m) => log.messages.push(m),
      onStatusChange: (s) => log.statuses.push(s),
      onResync: (d) => log.resyncs.push(d),
      ...opts,
    });
    return { client, log };
  }
  const ids = (log) => log.messages.filter((m) => m.id !== null).map((m) => m.id);

  test('one tab holds the stream and passes messages to the others', async () => {
    const b = makeBrowser();
    const a = tab(b);
    const c = tab(b);
    a.client.connect({ lastEventId: 10 });
    c.client.connect({ lastEventId: 10 });
    await flush();
    assert.equal(b.ES.instances.length, 1, 'one EventSource for the browser');
    assert.equal(a.client.role, 'leader');
    assert.equal(c.client.role, 'follower');
    b.ES.last.emitOpen();
    b.ES.last.emit('new_thread', { id: 't' }, 11);
    b.ES.last.emit('presence', { online: 3 });
    await flush();
    assert.deepEqual(ids(a.log), [11]);
    assert.deepEqual(ids(c.log), [11]);
    assert.equal(c.log.messages.at(-1).type, 'presence');
    assert.equal(c.client.connectionStatus, 'connected', 'followers mirror the status');
    assert.equal(c.client.lastEventId, 11);
  });

  test('when the holding tab closes another takes over from the last id it saw, with no loss or double', async () => {
    const b = makeBrowser();
    const a = tab(b);
    const c = tab(b);
    a.client.connect({ lastEventId: 1 });
    await flush();
    c.client.connect({ lastEventId: 1 });
    await flush();
    const first = b.ES.last;
    first.emitOpen();
    first.emit('new_comment', { threadId: 't' }, 2);
    first.emit('new_comment', { threadId: 't' }, 3);
    await flush();
    a.client.disconnect(); // the tab closes
    await flush();
    assert.equal(first.readyState, 2);
    assert.equal(c.client.role, 'leader');
    assert.equal(b.ES.instances.length, 2);
    const second = b.ES.last;
    assert.equal(second.queryLastEventId, '3');
    second.emitOpen();
    second.emit('new_comment', { threadId: 't' }, 3); // a server replaying the seam twice
    second.emit('new_comment', { threadId: 't' }, 4);
    await flush();
    assert.deepEqual(ids(c.log), [2, 3, 4]);
  });

  test('a tab that joins late gets what the holder saw after its snapshot', async () => {
    const b = makeBrowser();
    const a = tab(b);
    a.client.connect({ lastEventId: 1 });
    await flush();
    b.ES.last.emitOpen();
    b.ES.last.emit('new_thread', { id: 'x' }, 2);
    b.ES.last.emit('new_thread', { id: 'y' }, 3);
    const c = tab(b);
    c.client.connect({ lastEventId: 2 }); // its snapshot has event 2 already
    await flush();
    assert.deepEqual(ids(c.log), [3]);
    assert.equal(c.client.connectionStatus, 'connected');
  });

  test('resync on the shared stream reaches every tab', async () => {
    const b = makeBrowser();
    const a = tab(b);
    const c = tab(b);
    a.client.connect({ lastEventId: 50 });
    c.client.connect({ lastEventId: 50 });
    await flush();
    b.ES.last.emitOpen();
    b.ES.last.emit('resync', { lastEventId: 7 });
    await flush();
    assert.deepEqual(a.log.resyncs, [{ lastEventId: 7 }]);
    assert.deepEqual(c.log.resyncs, [{ lastEventId: 7 }]);
    a.client.reconnect({ lastEventId: 7 });
    assert.equal(b.ES.last.queryLastEventId, '7');
  });

  test("a follower's Reconnect asks the holder to retry after it gave up", async () => {
    const b = makeBrowser();
    const a = tab(b, { maxReconnectAttempts: 0 });
    const c = tab(b);
    a.client.connect();
    c.client.connect();
    await flush();
    b.ES.last.emitError(2);
    await flush();
    assert.equal(a.client.connectionStatus, 'error');
    assert.equal(c.client.connectionStatus, 'error');
    c.client.reconnect();
    await flush();
    assert.equal(b.ES.instances.length, 2);
    b.ES.last.emitOpen();
    await flush();
    assert.equal(c.client.connectionStatus, 'connected');
  });

  test('without Web Locks or BroadcastChannel each tab has its own stream', () => {
    const clock = makeClock();
    const ES = makeEventSourceClass();
    const opts = {
      EventSource: ES,
      BroadcastChannel: undefined,
      locks: undefined,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
    };
    const a = new SSEClient('/e', opts);
    const c = new SSEClient('/e', { ...opts, BroadcastChannel: makeBroadcastChannelClass() });
    a.connect();
    c.connect();
    assert.equal(ES.instances.length, 2);
    assert.equal(a.role, 'solo');
    assert.equal(c.role, 'solo');
  });
});
