import { Command, InvalidArgumentError } from 'commander';

/** The agent's command line, with ubbagent's environment variables as fallbacks. */
export interface AgentFlags {
  config: string;
  stateDir: string;
  localPort: number;
  minRetryDelayMs: number;
  maxRetryDelayMs: number;
  maxQueueTimeMs: number;
  checkIntervalMs: number;
  requestTimeoutMs: number;
  shutdownDrainMs: number;
  diskCleanupIntervalMs: number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go-style duration (`250ms`, `2s`, `1.5m`, `3h`) into milliseconds. */
export function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`"${v}" is not a duration such as 500ms, 2s, 1m or 3h`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

function port(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError(`"${v}" is not a port number 0-65535`);
  return n;
}

/** Parses argv; throws (commander exits) with one readable line on a bad or missing flag. */
export function parseFlags(argv: string[], env: NodeJS.ProcessEnv = process.env): AgentFlags {
  const program = new Command('usage-reporter')
    .description('ubbagent-compatible usage reporter: aggregates usage and reports it to Service Control')
    .option('--config <file>', 'agent config (ubbagent format); env AGENT_CONFIG_FILE', env.AGENT_CONFIG_FILE)
    .option('--state-dir <dir>', 'durable state directory; env AGENT_STATE_DIR', env.AGENT_STATE_DIR)
    .option('--local-port <port>', 'HTTP port on 127.0.0.1; env AGENT_LOCAL_PORT', env.AGENT_LOCAL_PORT)
    .option('--min-retry-delay <duration>', 'first retry delay', parseDuration, 2000)
    .option('--max-retry-delay <duration>', 'longest retry delay', parseDuration, 60_000)
    .option(
      '--max-queue-time <duration>',
      'drop a report unsent after this long',
      parseDuration,
      3 * 3_600_000,
    )
    .option('--check-interval <duration>', 'reuse a services.check result this long', parseDuration, 60_000)
    .option('--request-timeout <duration>', 'Service Control request timeout', parseDuration, 60_000)
    .option(
      '--shutdown-drain <duration>',
      'on SIGTERM, try this long to send what is queued',
      parseDuration,
      10_000,
    )
    .option(
      '--disk-cleanup-interval <duration>',
      'how often the disk endpoint deletes expired files',
      parseDuration,
      60_000,
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .parse(argv, { from: 'user' });
  const o = program.opts<Record<string, string | number | undefined>>();
  const need = (v: unknown, flag: string, envName: string, why: string): string => {
    if (v === undefined || v === '')
      throw new InvalidArgumentError(`${flag} (or ${envName}) is required: ${why}`);
    return String(v);
  };
  const minRetryDelayMs = o.minRetryDelay as number;
  const maxRetryDelayMs = o.maxRetryDelay as number;
  if (maxRetryDelayMs < minRetryDelayMs)
    throw new InvalidArgumentError('--max-retry-delay is below --min-retry-delay');
  return {
    config: need(o.config, '--config', 'AGENT_CONFIG_FILE', 'the agent config file'),
    stateDir: need(
      o.stateDir,
      '--state-dir',
      'AGENT_STATE_DIR',
      'without a state directory accepted reports would not survive a restart',
    ),
    localPort: port(need(o.localPort, '--local-port', 'AGENT_LOCAL_PORT', 'the port of the HTTP API')),
    minRetryDelayMs,
    maxRetryDelayMs,
    maxQueueTimeMs: o.maxQueueTime as number,
    checkIntervalMs: o.checkInterval as number,
    requestTimeoutMs: o.requestTimeout as number,
    shutdownDrainMs: o.shutdownDrain as number,
    diskCleanupIntervalMs: o.diskCleanupInterval as number,
  };
}
