import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Creates the structured JSON-lines logger every Kip server uses. Logs go to stderr so that stdout
 * stays free for the one machine-readable ready line a server prints.
 * The level comes from `LOG_LEVEL` (default `info`); `LOG_LEVEL=silent` turns logging off.
 */
export function createLogger(component: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      level,
      base: { component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
