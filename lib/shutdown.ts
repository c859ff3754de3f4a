import type { Logger } from './log.ts';

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits 0 (1 if stopping failed). A second SIGINT
 * while stopping exits at once, so an operator pressing Ctrl-C twice is never stuck behind a hung
 * shutdown. A repeated SIGTERM is ignored: launchers such as tsx re-send it, and Kubernetes
 * escalates to SIGKILL after the grace period anyway.
 */
export function onShutdown(log: Logger, stop: () => Promise<void> | void): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      if (signal === 'SIGINT') process.exit(1);
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    Promise.resolve()
      .then(stop)
      .then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
