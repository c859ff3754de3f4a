/** The lab's Compute Engine emulator, booting every instance as a network namespace running the real cell agent. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { GceReadyLine } from '../../emulators/gce/ready-line.ts';
import { startDaemon, type DaemonSpec } from './daemon.ts';
import type { LabState } from './state.ts';

export interface ComputeOptions {
  hypervisor?: 'netns' | 'none';
  /** Merged into the emulator's config file (docs/gce-emulator.md). */
  config?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
}

/** `node --import tsx <entry>`: the pid recorded is the server's own, not a launcher's. */
export function tsxCommand(
  repo: string,
  entry: string,
  args: string[],
): Pick<DaemonSpec, 'command' | 'args'> {
  return { command: process.execPath, args: ['--import', 'tsx', join(repo, entry), ...args] };
}

export async function startLabCompute(
  dir: string,
  repo: string,
  opts: ComputeOptions = {},
): Promise<NonNullable<LabState['compute']>> {
  const stateDir = join(dir, 'compute');
  mkdirSync(stateDir, { recursive: true });
  const configFile = join(dir, 'compute.yaml');
  // Agents get time to stop their containers and unmount (several stop at once on a small machine).
  writeFileSync(
    configFile,
    stringify({ project: 'kip-lab', hypervisor: { stopGraceMs: 10_000 }, ...opts.config }),
  );
  const log = join(dir, 'logs', 'compute.log');
  const d = await startDaemon({
    part: 'compute',
    ...tsxCommand(repo, 'emulators/gce/main.ts', [
      '--port',
      '0',
      '--hypervisor',
      opts.hypervisor ?? 'netns',
      '--config',
      configFile,
      '--state-dir',
      stateDir,
    ]),
    cwd: repo,
    env: opts.env,
    logFile: log,
    ready: 'line',
    timeoutMs: 60_000,
  });
  const r = d.ready as GceReadyLine;
  return {
    pid: d.pid,
    log,
    host: r.host,
    port: r.port,
    url: r.url,
    project: r.project,
    region: r.region,
    zones: r.zones,
    admin: r.admin,
    metrics: r.metrics,
    network: r.network,
    netnsPrefix: `kgce-${d.pid.toString(36)}-`,
    stateDir,
  };
}
