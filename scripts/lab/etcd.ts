/** The lab's etcd: the real Debian `etcd`, on free loopback ports, data under the lab dir. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { httpOk, startDaemon } from './daemon.ts';
import { freePort } from '../../lib/free-port.ts';
import { etcdArgs } from '../../provider/testing/etcd.ts';
import type { LabState } from './state.ts';

export async function startLabEtcd(dir: string, repo: string): Promise<NonNullable<LabState['etcd']>> {
  const dataDir = join(dir, 'etcd');
  mkdirSync(dataDir, { recursive: true });
  const log = join(dir, 'logs', 'etcd.log');
  const [client, peer] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const name = 'kip-lab';
  const d = await startDaemon({
    part: 'etcd',
    command: 'etcd',
    args: etcdArgs({ name, dataDir, clientUrl: endpoint, peerUrl, logLevel: 'warn' }),
    cwd: repo,
    logFile: log,
    ready: () => httpOk(`${endpoint}/health`),
    timeoutMs: 30_000,
  });
  return { pid: d.pid, log, endpoint, dataDir };
}
