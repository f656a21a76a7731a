/** The signals that ask a daemon (a mount's, or `snapfs serve`) to finish what it is doing and stop. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/**
 * Calls `stop` on each SIGTERM or SIGINT until the returned function is
 * called. While listened to, neither signal ends the process: the daemon
 * stops itself once it has cleaned up.
 */
export function onStopSignals(stop: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of STOP_SIGNALS) process.on(signal, stop);
  return () => {
    for (const signal of STOP_SIGNALS) process.off(signal, stop);
  };
}
