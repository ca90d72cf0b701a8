/** Helpers for tests of services built with the kit. */

/**
 * Re-evaluates `probe` until it returns `expected` (deep-equal by JSON) or `timeoutMs` passes;
 * resolves with the last value either way, so the assertion that follows reports what was seen.
 */
export async function eventually<T>(
  probe: () => Promise<T>,
  expected: T,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    try {
      last = await probe();
      if (JSON.stringify(last) === JSON.stringify(expected)) return last;
    } catch (error) {
      last = error as T;
    }
    if (Date.now() > deadline) return last;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejectionOf<E = Error>(promise: Promise<unknown>): Promise<E> {
  try {
    await promise;
  } catch (error) {
    return error as E;
  }
  throw new Error('expected the call to fail, and it succeeded');
}
