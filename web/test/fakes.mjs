// Fakes for the browser globals sse-client.js uses: EventSource, a manual
// clock (setTimeout/clearTimeout), BroadcastChannel and navigator.locks.

export function makeClock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map();
  return {
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { fn, at: now + Math.max(0, ms) });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    get now() {
      return now;
    },
    pending() {
      return [...timers.values()].map((t) => t.at - now).sort((a, b) => a - b);
    },
    /** Moves time forward, firing due timers in order. */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let due = null;
        for (const [id, t] of timers) if (t.at <= end && (!due || t.at < due[1].at)) due = [id, t];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
    },
  };
}

export function makeEventSourceClass() {
  class FakeEventSource {
    static instances = [];
    static get last() {
      return FakeEventSource.instances[FakeEventSource.instances.length - 1];
    }
    static get open() {
      return FakeEventSource.instances.filter((e) => e.readyState !== 2);
    }
    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.readyState = 0;
      this.lastEventId = '';
      this.onopen = this.onmessage = this.onerror = null;
      FakeEventSource.instances.push(this);
    }
    /** The query's lastEventId, or null. */
    get queryLastEventId() {
      const q = this.url.split('?')[1] || '';
      return new URLSearchParams(q).get('lastEventId');
    }
    emitOpen() {
      this.readyState = 1;
      this.onopen?.({ type: 'open' });
    }
    /** Sends one SSE message; `id` mimics an `id:` line (the buffer persists, as in browsers). */
    emit(type, data = {}, id) {
      if (id !== undefined) this.lastEventId = String(id);
      const payload = JSON.stringify({ type, data, timestamp: '2025-01-01T00:00:00Z' });
      this.onmessage?.({ type: 'message', data: payload, lastEventId: this.lastEventId });
    }
    emitRaw(data) {
      this.onmessage?.({ type: 'message', data, lastEventId: this.lastEventId });
    }
    emitError(readyState = 0) {
      this.readyState = readyState;
      this.onerror?.({ type: 'error' });
    }
    close() {
      this.readyState = 2;
    }
  }
  return FakeEventSource;
}

/** A BroadcastChannel hub: channels of one name deliver to each other, not to themselves. */
export function makeBroadcastChannelClass() {
  const hub = new Map();
  class FakeBroadcastChannel {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      this.closed = false;
      if (!hub.has(name)) hub.set(name, new Set());
      hub.get(name).add(this);
    }
    postMessage(data) {
      if (this.closed) throw new Error('InvalidStateError');
      const copy = structuredClone(data);
      for (const ch of hub.get(this.name)) {
        if (ch === this) continue;
        queueMicrotask(() => {
          if (!ch.closed) ch.onmessage?.({ data: copy });
        });
      }
    }
    close() {
      this.closed = true;
      hub.get(this.name).delete(this);
    }
  }
  return FakeBroadcastChannel;
}

/** navigator.locks with exclusive locks granted in request order, honouring `signal`. */
export function makeLocks() {
  const queues = new Map();
  const held = new Map();
  function pump(name) {
    if (held.get(name)) return;
    const q = queues.get(name) || [];
    const next = q.shift();
    if (!next) return;
    held.set(name, true);
    Promise.resolve()
      .then(() => next.cb({ name, mode: 'exclusive' }))
      .then(next.resolve, next.reject)
      .finally(() => {
        held.set(name, false);
        pump(name);
      });
  }
  return {
    request(name, opts, cb) {
      if (typeof opts === 'function') [opts, cb] = [{}, opts];
      return new Promise((resolve, reject) => {
        const entry = { cb, resolve, reject };
        if (!queues.has(name)) queues.set(name, []);
        queues.get(name).push(entry);
        opts.signal?.addEventListener('abort', () => {
          const q = queues.get(name);
          const i = q.indexOf(entry);
          if (i >= 0) {
            q.splice(i, 1);
            reject(new DOMException('aborted', 'AbortError'));
          }
        });
        pump(name);
      });
    },
    isHeld(name) {
      return !!held.get(name);
    },
  };
}

/** Lets queued microtasks and promise chains run. */
export async function flush(times = 10) {
  for (let i = 0; i < times; i++) await new Promise((r) => setImmediate(r));
}
