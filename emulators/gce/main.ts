import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../../lib/config-file.ts';
import { createLogger } from '../../lib/log.ts';
import { printReadyLine } from '../../lib/ready-line.ts';
import { onShutdown } from '../../lib/shutdown.ts';
import { loadEmulatorConfig } from './config.ts';
import { startEmulator } from './emulator.ts';
import type { GceReadyLine } from './ready-line.ts';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

async function main(): Promise<void> {
  const program = new Command('gce-emulator')
    .description(
      'Compute Engine v1 API emulator that boots instances as network namespaces running the cell agent',
    )
    .exitOverride()
    .configureOutput({ writeErr: () => undefined })
    .option('--port <port>', 'port to listen on (0 picks a free one)', port, 0)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .addOption(
      new Option('--hypervisor <kind>', 'what a RUNNING instance boots')
        .choices(['none', 'netns'])
        .default('none'),
    )
    .option('--config <file>', 'YAML config file (docs/gce-emulator.md)')
    .option('--project <id>', 'project id served (overrides the config file)')
    .option(
      '--state-dir <dir>',
      'where disks, snapshots and cell logs live (default: a temporary directory)',
    );
  try {
    program.parse(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) process.exit(0);
      console.error(`gce-emulator: ${e.message.replace(/^error: /, '')}`);
      process.exit(2);
    }
    throw e;
  }
  const o = program.opts<{
    port: number;
    host: string;
    hypervisor: 'none' | 'netns';
    config?: string;
    project?: string;
    stateDir?: string;
  }>();
  const log = createLogger('gce-emulator');
  let config;
  try {
    config = loadEmulatorConfig(o.config);
    if (o.project) {
      if (!/^[a-z][-a-z0-9]{4,28}[a-z0-9]$/.test(o.project))
        throw new ConfigError(`--project: "${o.project}" is not a valid project id`);
      config.project = o.project;
    }
  } catch (e) {
    console.error(`gce-emulator: ${(e as Error).message}`);
    process.exit(2);
  }
  let emu;
  try {
    emu = await startEmulator({
      config,
      host: o.host,
      port: o.port,
      hypervisor: o.hypervisor,
      stateDir: o.stateDir,
      log,
    });
  } catch (e) {
    console.error(`gce-emulator: cannot start: ${(e as Error).message}`);
    process.exit(1);
  }
  onShutdown(log, () => emu.close());
  const url = `http://${emu.host}:${emu.port}`;
  log.info({ url, project: config.project, hypervisor: o.hypervisor }, 'gce emulator serving');
  printReadyLine({
    pid: process.pid,
    host: emu.host,
    port: emu.port,
    url,
    project: config.project,
    region: config.region,
    zones: config.zones,
    hypervisor: o.hypervisor,
    network: {
      block: emu.ctx.hypervisor.block.cidr,
      gateway: emu.ctx.hypervisor.block.gateway,
      bridge: emu.ctx.hypervisor.bridge ?? null,
    },
    stateDir: emu.ctx.stateDir,
    admin: `${url}/admin`,
    metrics: `${url}/metrics`,
  } satisfies GceReadyLine);
}

void main();
