import { CommanderError, InvalidArgumentError } from 'commander';
import { ConfigError } from '../lib/config-file.ts';
import { createLogger } from '../lib/log.ts';
import { createMetricsRegistry } from '../lib/metrics.ts';
import { printReadyLine } from '../lib/ready-line.ts';
import { onShutdown } from '../lib/shutdown.ts';
import { loadAgentConfig } from './config.ts';
import { parseFlags, type AgentFlags } from './flags.ts';
import { startHttpApi } from './http-api.ts';
import { Pipeline } from './pipeline.ts';

let flags: AgentFlags;
try {
  flags = parseFlags(process.argv.slice(2));
} catch (e) {
  if (e instanceof CommanderError && e.exitCode === 0) process.exit(0);
  // commander has already printed its own errors; ours get one line here.
  if (e instanceof InvalidArgumentError || !(e instanceof CommanderError)) {
    console.error(`usage-reporter: ${(e as Error).message}`);
  }
  process.exit(2);
}

const log = createLogger('usage-reporter');
try {
  const config = loadAgentConfig(flags.config);
  const registry = createMetricsRegistry('usage_reporter');
  const pipeline = new Pipeline({
    config,
    stateDir: flags.stateDir,
    log,
    registry,
    retry: {
      minRetryDelayMs: flags.minRetryDelayMs,
      maxRetryDelayMs: flags.maxRetryDelayMs,
      maxQueueTimeMs: flags.maxQueueTimeMs,
    },
    checkIntervalMs: flags.checkIntervalMs,
    requestTimeoutMs: flags.requestTimeoutMs,
    diskCleanupIntervalMs: flags.diskCleanupIntervalMs,
    // Let the 503 go out, then stop without flushing: the in-memory state is not trustworthy.
    onPersistFailure: () => setTimeout(() => process.exit(1), 100),
  });
  await pipeline.start();
  const { server, port } = await startHttpApi({ pipeline, registry, log, port: flags.localPort });
  onShutdown(log, async () => {
    // Stop taking reports first, so everything accepted is in the flush.
    server.close();
    server.closeIdleConnections();
    await pipeline.shutdown(flags.shutdownDrainMs);
    server.closeAllConnections();
  });
  log.info({ port, stateDir: flags.stateDir, agentId: pipeline.agentId }, 'serving');
  printReadyLine({ port, url: `http://127.0.0.1:${port}`, agentId: pipeline.agentId, pid: process.pid });
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(e.message);
    process.exit(2);
  }
  console.error(`usage-reporter: cannot start: ${(e as Error).message}`);
  process.exit(1);
}
