import { Command, InvalidArgumentError } from 'commander';
import { ConfigError } from '../../lib/config-file.ts';
import { createLogger } from '../../lib/log.ts';
import { createMetricsRegistry } from '../../lib/metrics.ts';
import { printReadyLine } from '../../lib/ready-line.ts';
import { onShutdown } from '../../lib/shutdown.ts';
import { loadEmulatorConfig } from './config.ts';
import { startServiceControlEmulator } from './server.ts';

function portNumber(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number 0-65535');
  return n;
}

const program = new Command('servicecontrol-emulator')
  .description('Service Control v1 emulator: check and report, billed operations, injectable faults')
  .option('--port <port>', 'port on 127.0.0.1 (0 picks a free one)', portNumber, 0)
  .option('--config <file>', 'YAML: services, consumers with check errors, faults armed at start')
  .parse();
const opts = program.opts<{ port: number; config?: string }>();

const log = createLogger('servicecontrol-emulator');
try {
  const config = loadEmulatorConfig(opts.config);
  const emulator = await startServiceControlEmulator(opts.port, {
    config,
    log,
    registry: createMetricsRegistry('servicecontrol_emulator'),
  });
  onShutdown(log, () => emulator.close());
  log.info({ url: emulator.url }, 'serving');
  printReadyLine({ port: emulator.port, rootUrl: emulator.url, pid: process.pid });
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(e.message);
    process.exit(2);
  }
  throw e;
}
