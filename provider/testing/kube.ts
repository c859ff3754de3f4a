import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { startKubeEmulator, type KubeEmulator } from '../../emulators/kube/emulator.ts';
import { writeKubeconfig } from '../../emulators/kube/kubeconfig.ts';
import { createLogger } from '../../lib/log.ts';

const run = promisify(execFile);

/** The Kubernetes API emulator in-process, with a kubeconfig for kubectl and client-node. */
export interface TestKube {
  emulator: KubeEmulator;
  kubeconfigPath: string;
  kc: KubeConfig;
  /** Runs real kubectl against the emulator; resolves with stdout. */
  kubectl(...args: string[]): Promise<string>;
  /** kubectl ... -o json, parsed. */
  kubectlJson<T = Record<string, unknown>>(...args: string[]): Promise<T>;
  stop(): Promise<void>;
}

export async function startTestKube(
  opts: Partial<Parameters<typeof startKubeEmulator>[0]> = {},
): Promise<TestKube> {
  const emulator = await startKubeEmulator({
    log: createLogger('kube-emulator', 'silent'),
    port: 0,
    ...opts,
  });
  const dir = mkdtempSync(join(tmpdir(), `kip-kube-${process.pid}-`));
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeKubeconfig(kubeconfigPath, { server: emulator.url, token: emulator.adminToken });
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const kubectl = async (...args: string[]) =>
    (await run('kubectl', ['--kubeconfig', kubeconfigPath, ...args], { timeout: 20_000 })).stdout;
  return {
    emulator,
    kubeconfigPath,
    kc,
    kubectl,
    kubectlJson: async <T>(...args: string[]) => JSON.parse(await kubectl(...args, '-o', 'json')) as T,
    async stop() {
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a value (not undefined/false) or `timeoutMs` passes. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
