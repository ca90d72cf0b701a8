/**
 * Coalesces identical concurrent calls: while a call for `key` is in flight, later callers for the
 * same key share its result instead of starting another. Nothing is kept once it settles, so no
 * answer is older than a call that was already running when the caller arrived: it is not a cache,
 * and needs no invalidation. Use it for reads that are hot and identical (the same product, the same
 * user), where N concurrent identical reads cost one backend round trip instead of N.
 */
export function coalesce<K, V>(load: (key: K) => Promise<V>): (key: K) => Promise<V> {
  const inFlight = new Map<K, Promise<V>>();
  return (key) => {
    const running = inFlight.get(key);
    if (running) return running;
    const started = load(key).finally(() => inFlight.delete(key));
    inFlight.set(key, started);
    return started;
  };
}
