import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../lib/free-port.ts';

/** A real etcd (Debian `etcd-server`) started for a test, on free loopback ports. */
export interface TestEtcd {
  endpoint: string;
  /** SIGTERM and remove its data directory. */
  stop(): Promise<void>;
}

/** Where and how one single-member etcd listens; shared with the local lab's etcd. */
export interface EtcdSettings {
  name: string;
  dataDir: string;
  /** http://127.0.0.1:<port> for clients. */
  clientUrl: string;
  /** http://127.0.0.1:<port> for the (unused) peer listener. */
  peerUrl: string;
  logLevel: 'error' | 'warn' | 'info';
}

/** The `etcd` command line for a single-member cluster on loopback. */
export function etcdArgs(s: EtcdSettings): string[] {
  return [
    '--name',
    s.name,
    '--data-dir',
    s.dataDir,
    '--listen-client-urls',
    s.clientUrl,
    '--advertise-client-urls',
    s.clientUrl,
    '--listen-peer-urls',
    s.peerUrl,
    '--initial-advertise-peer-urls',
    s.peerUrl,
    '--initial-cluster',
    `${s.name}=${s.peerUrl}`,
    '--log-level',
    s.logLevel,
    '--logger',
    'zap',
  ];
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(500) });
    return res.ok;
  } catch {
    return false;
  }
}

/** Starts etcd with a unique data dir and ports; resolves once `/health` answers. */
export async function startEtcd(): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), `kip-etcd-${process.pid}-`));
  for (let attempt = 0; ; attempt++) {
    const [client, peer] = [await freePort(), await freePort()];
    const endpoint = `http://127.0.0.1:${client}`;
    const peerUrl = `http://127.0.0.1:${peer}`;
    const name = `kip-test-${process.pid}`;
    const proc: ChildProcess = spawn(
      'etcd',
      etcdArgs({
        name,
        dataDir: join(dir, `data-${attempt}`),
        clientUrl: endpoint,
        peerUrl,
        logLevel: 'error',
      }),
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && proc.exitCode === null) {
      if (await healthy(endpoint)) {
        return {
          endpoint,
          async stop() {
            if (proc.exitCode === null && proc.signalCode === null) {
              proc.kill('SIGTERM');
              const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
              await exited;
              clearTimeout(t);
            }
            rmSync(dir, { recursive: true, force: true });
          },
        };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    proc.kill('SIGKILL');
    await exited;
    // A port taken between probing and binding: try once more with new ports.
    if (attempt >= 2 || !/address already in use/.test(stderr)) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`etcd did not become healthy: ${stderr.slice(-2000)}`);
    }
  }
}
