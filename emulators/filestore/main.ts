import { Command, InvalidArgumentError } from 'commander';
import { mkdtempSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createLogger } from '../../lib/log.ts';
import { createMetricsRegistry } from '../../lib/metrics.ts';
import { printReadyLine } from '../../lib/ready-line.ts';
import { onShutdown } from '../../lib/shutdown.ts';
import { startFilestoreEmulator } from './server.ts';

function nonNegative(what: string) {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || (what === 'port' && n > 65535))
      throw new InvalidArgumentError(
        what === 'port' ? 'must be a port number 0-65535' : 'must be a whole number',
      );
    return n;
  };
}

const program = new Command('filestore-emulator')
  .description('Filestore v1 REST emulator: instances whose shares are local directories')
  .option('--port <port>', 'port on 127.0.0.1 (0 picks a free one)', nonNegative('port'), 0)
  .option('--data-dir <dir>', 'where shares are made (default a new temporary directory)')
  .option('--operation-delay-ms <ms>', 'how long create and delete take', nonNegative('ms'), 200)
  .parse();
const opts = program.opts<{ port: number; dataDir?: string; operationDelayMs: number }>();

const log = createLogger('filestore-emulator');
const dataDir = path.resolve(opts.dataDir ?? mkdtempSync(path.join(tmpdir(), 'kip-filestore-')));
try {
  await fs.mkdir(dataDir, { recursive: true });
} catch (err) {
  console.error(`filestore-emulator: --data-dir ${dataDir}: ${(err as Error).message}`);
  process.exit(2);
}
const emulator = await startFilestoreEmulator(opts.port, {
  dataDir,
  operationDelayMs: opts.operationDelayMs,
  log,
  registry: createMetricsRegistry('filestore_emulator'),
});
onShutdown(log, async () => {
  await emulator.close();
  // A directory made for this run goes with it; one given with --data-dir is the caller's.
  if (!opts.dataDir) await fs.rm(dataDir, { recursive: true, force: true });
});
log.info({ url: emulator.url, dataDir }, 'serving');
printReadyLine({ port: emulator.port, rootUrl: emulator.url, dataDir, pid: process.pid });
