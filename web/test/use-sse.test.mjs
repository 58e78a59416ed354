// The React hook, rendered with react-dom/client into a jsdom document.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { JSDOM } from 'jsdom';
import { makeClock, makeEventSourceClass } from './fakes.mjs';

let React, createRoot, act, useSSE, dom;

before(async () => {
  dom = new JSDOM('<!doctype html><div id="root"></div>');
  globalThis.window = dom.window;
  globalThis.document = dom.window.document;
  // Node 20 has no global navigator; react-dom reads it when loaded.
  if (typeof globalThis.navigator === 'undefined') {
    Object.defineProperty(globalThis, 'navigator', { value: dom.window.navigator, configurable: true, writable: true });
  }
  globalThis.IS_REACT_ACT_ENVIRONMENT = true;
  React = await import('react');
  ({ createRoot } = await import('react-dom/client'));
  act = React.act;
  ({ useSSE } = await import('../use-sse.js'));
});

after(() => {
  dom.window.close();
  delete globalThis.window;
  delete globalThis.document;
});

function setup(options = {}) {
  const clock = makeClock();
  const ES = makeEventSourceClass();
  const messages = [];
  let hook;
  function Probe(props) {
    hook = useSSE(props.url, {
      EventSource: ES,
      BroadcastChannel: undefined,
      locks: undefined,
      location: undefined,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      onMessage: (m) => messages.push([props.tag, m.type, m.id]),
      ...options,
    });
    return React.createElement('span', { id: 'status' }, hook.connectionStatus);
  }
  const container = document.createElement('div');
  document.body.appendChild(container);
  const root = createRoot(container);
  return {
    ES,
    clock,
    messages,
    root,
    get hook() {
      return hook;
    },
    text: () => container.textContent,
    render: (props) => act(() => root.render(React.createElement(Probe, props))),
  };
}

test('useSSE connects on mount and exposes the original interface', async () => {
  const t = setup({ lastEventId: 9 });
  await t.render({ url: '/api/community/events', tag: 'a' });
  assert.equal(t.ES.instances.length, 1);
  assert.equal(t.ES.last.url, '/api/community/events?lastEventId=9');
  for (const k of ['isConnected', 'connectionStatus', 'reconnectAttempts', 'connect', 'disconnect', 'reconnect']) {
    assert.ok(k in t.hook, k);
  }
  assert.equal(t.hook.connectionStatus, 'connecting');
  assert.equal(t.hook.isConnected, false);
  await act(() => t.ES.last.emitOpen());
  assert.equal(t.hook.connectionStatus, 'connected');
  assert.equal(t.hook.isConnected, true);
  assert.equal(t.text(), 'connected');
  await act(() => t.root.unmount());
});

test('onMessage is the latest render’s callback; messages carry type and id', async () => {
  const t = setup();
  await t.render({ url: '/e', tag: 'first' });
  await act(() => t.ES.last.emitOpen());
  await t.render({ url: '/e', tag: 'second' });
  assert.equal(t.ES.instances.length, 1, 'a re-render does not reconnect');
  await act(() => t.ES.last.emit('new_thread', { id: 'x' }, 3));
  assert.deepEqual(t.messages, [['second', 'new_thread', 3]]);
  assert.equal(t.hook.lastEventId, 3);
  await act(() => t.root.unmount());
});

test('errors count reconnectAttempts, give up at the limit, and reconnect() starts again', async () => {
  const t = setup({ maxReconnectAttempts: 2, reconnectInterval: 100 });
  await t.render({ url: '/e' });
  await act(() => t.ES.last.emitError(2));
  assert.equal(t.hook.reconnectAttempts, 1);
  assert.equal(t.hook.connectionStatus, 'connecting');
  await act(() => t.clock.advance(10000));
  await act(() => t.ES.last.emitError(2));
  await act(() => t.clock.advance(10000));
  await act(() => t.ES.last.emitError(2));
  assert.equal(t.hook.connectionStatus, 'error');
  assert.equal(t.ES.instances.length, 3);
  await act(() => t.hook.reconnect());
  assert.equal(t.ES.instances.length, 4);
  assert.equal(t.hook.reconnectAttempts, 0);
  await act(() => t.ES.last.emitOpen());
  assert.equal(t.hook.isConnected, true);
  await act(() => t.root.unmount());
});

test('disconnect() and connect() control the stream; unmount closes it', async () => {
  const t = setup({ autoConnect: false });
  await t.render({ url: '/e' });
  assert.equal(t.ES.instances.length, 0, 'autoConnect: false waits for connect()');
  assert.equal(t.hook.connectionStatus, 'disconnected');
  await act(() => t.hook.connect());
  await act(() => t.ES.last.emitOpen());
  assert.equal(t.hook.connectionStatus, 'connected');
  await act(() => t.hook.disconnect());
  assert.equal(t.hook.connectionStatus, 'disconnected');
  assert.equal(t.ES.open.length, 0);
  await act(() => t.hook.connect());
  assert.equal(t.ES.open.length, 1);
  await act(() => t.root.unmount());
  assert.equal(t.ES.open.length, 0, 'unmount closes the stream');
});

test('changing the url reconnects to the new one', async () => {
  const t = setup();
  await t.render({ url: '/e?thread=a' });
  await t.render({ url: '/e?thread=b' });
  assert.equal(t.ES.instances.length, 2);
  assert.equal(t.ES.instances[0].readyState, 2);
  assert.equal(t.ES.last.url, '/e?thread=b');
  await act(() => t.root.unmount());
});
