/** The lab's Kubernetes API emulator, with its scheduler; it writes the lab's kubeconfig. */
import { join } from 'node:path';
import { startDaemon } from './daemon.ts';
import { tsxCommand } from './compute.ts';
import type { LabState } from './state.ts';

export async function startLabKube(
  dir: string,
  repo: string,
  kubeconfig: string,
): Promise<NonNullable<LabState['kube']>> {
  const log = join(dir, 'logs', 'kube.log');
  const d = await startDaemon({
    part: 'kube',
    ...tsxCommand(repo, 'emulators/kube/main.ts', ['--port', '0', '--scheduler', '--kubeconfig', kubeconfig]),
    cwd: repo,
    logFile: log,
    ready: 'line',
    timeoutMs: 60_000,
  });
  const r = d.ready as { url: string; port: number; metrics: string };
  return { pid: d.pid, log, url: r.url, port: r.port, metrics: r.metrics };
}
