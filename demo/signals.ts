/** Signals that stop the long-running demo commands (docker stop sends SIGTERM, Ctrl-C SIGINT). */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/** Resolves with the first of `signals` the process receives; the handlers are removed then. */
export function untilSignal(signals: readonly NodeJS.Signals[] = STOP_SIGNALS): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      for (const s of signals) process.off(s, on);
      resolve(signal);
    };
    for (const s of signals) process.on(s, on);
  });
}
