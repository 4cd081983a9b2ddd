// Bounded waiting, shared by the benchmark, the soak and the tests: every wait names what it waits
// for and gives up after a bound, so a hang fails the run with a reason instead of hanging it.

/** The default bound for one wait on loopback; a test's hang fails that test instead of the run. */
export const WAIT_MS = 5000;
/** How often `until` looks again by default: short, since what it waits for is local. */
export const POLL_MS = 5;

/** Rejects with `what` in the message if `promise` hasn't settled within `ms`. */
export async function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms`: for pacing load and letting a process settle, never to wait for an event. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Checks `cond` every `everyMs` until it holds; rejects after `ms`. For a state that emits no
 * event (a counter, a file, another process's HTTP endpoint); an error thrown by `cond` ends the
 * wait with that error.
 */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = WAIT_MS, everyMs = POLL_MS): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(everyMs);
  }
}
