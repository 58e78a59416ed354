// useSSE — the React hook of the original design, built on sse-client.js.
//
//   const { isConnected, connectionStatus, reconnectAttempts,
//           connect, disconnect, reconnect } = useSSE('/api/community/events', {
//     onMessage: (event) => { ... event.type, event.data, event.id ... },
//     onError: (error) => { ... },
//     onStatusChange: (status) => { ... },
//     onResync: (data) => { reload the snapshot, then reconnect({ lastEventId }) },
//     reconnectInterval: 1000,      // base backoff, ms
//     maxReconnectAttempts: 5,
//     lastEventId: snapshot.lastEventId,
//   });
//
// Connects on mount (unless `autoConnect: false`) and disconnects on unmount.
// Callbacks are read from the latest render, so inline functions are fine.
// Tabs of one browser share one stream (see sse-client.js).

import { useEffect, useRef, useState, useCallback } from 'react';
import { SSEClient } from './sse-client.js';

const CALLBACKS = ['onMessage', 'onError', 'onStatusChange', 'onResync', 'onRoleChange'];

export function useSSE(url, options = {}) {
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const clientRef = useRef(null);
  const [state, setState] = useState({
    isConnected: false,
    connectionStatus: 'disconnected',
    reconnectAttempts: 0,
    lastEventId: options.lastEventId ?? null,
  });

  useEffect(() => {
    if (!url) return undefined;
    const { autoConnect = true, ...rest } = optionsRef.current;
    const clientOptions = { ...rest };
    for (const name of CALLBACKS) {
      clientOptions[name] = (...args) => optionsRef.current[name]?.(...args);
    }
    // Without a user onResync the client would reload the page; keep that
    // default only when the user gave none.
    if (!optionsRef.current.onResync) delete clientOptions.onResync;
    const client = new SSEClient(url, clientOptions);
    clientRef.current = client;
    const unsubscribe = client.subscribe((s) =>
      setState((prev) =>
        prev.isConnected === s.isConnected &&
        prev.connectionStatus === s.connectionStatus &&
        prev.reconnectAttempts === s.reconnectAttempts &&
        prev.lastEventId === s.lastEventId
          ? prev
          : {
              isConnected: s.isConnected,
              connectionStatus: s.connectionStatus,
              reconnectAttempts: s.reconnectAttempts,
              lastEventId: s.lastEventId,
            },
      ),
    );
    if (autoConnect) client.connect();
    return () => {
      unsubscribe();
      client.disconnect();
      if (clientRef.current === client) clientRef.current = null;
    };
  }, [url]);

  const connect = useCallback((opts) => clientRef.current?.connect(opts), []);
  const disconnect = useCallback(() => clientRef.current?.disconnect(), []);
  const reconnect = useCallback((opts) => clientRef.current?.reconnect(opts), []);

  return {
    isConnected: state.isConnected,
    connectionStatus: state.connectionStatus,
    reconnectAttempts: state.reconnectAttempts,
    lastEventId: state.lastEventId,
    connect,
    disconnect,
    reconnect,
  };
}

export default useSSE;
