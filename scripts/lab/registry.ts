/**
 * The lab's registry: the real Debian `docker-registry`, listening on the cell network's gateway
 * address, the one host address cells (network namespaces on the bridge) and this machine both reach.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { httpOk, LabStartError, startDaemon } from './daemon.ts';
import { freePort, portFree } from '../../lib/free-port.ts';
import type { LabState } from './state.ts';

/** The port of the developer's lab registry; the examples name images on it. */
export const LAB_REGISTRY_PORT = 5000;

export async function startLabRegistry(
  dir: string,
  repo: string,
  opts: { address: string; port?: number },
): Promise<NonNullable<LabState['registry']>> {
  const dataDir = join(dir, 'registry');
  mkdirSync(dataDir, { recursive: true });
  let port = opts.port ?? 0;
  if (port === 0) port = await freePort(opts.address);
  else if (!(await portFree(opts.address, port)))
    throw new LabStartError('registry', `port ${port} on ${opts.address} is in use`);
  const host = `${opts.address}:${port}`;
  const config = join(dir, 'registry.yml');
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${dataDir}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  writeFileSync(config, `${lines.join('\n')}\n`);
  const log = join(dir, 'logs', 'registry.log');
  const d = await startDaemon({
    part: 'registry',
    command: 'docker-registry',
    args: ['serve', config],
    cwd: repo,
    logFile: log,
    ready: () => httpOk(`http://${host}/v2/`),
    timeoutMs: 30_000,
  });
  return { pid: d.pid, log, host, dataDir, config };
}
