import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { startNpmScript, type StartedProcess } from './process.ts';

export interface KubectlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  /** Written to kubectl's stdin (for `-f -`). */
  input?: string;
  /** Kill kubectl after this long (default 30 s); the result then has code null. */
  timeoutMs?: number;
  /** Called with each stdout chunk as it arrives (for `-w` and `logs -f`). */
  onStdout?: (chunk: string) => void;
  /** Stops kubectl early; resolves with what it printed so far. */
  signal?: AbortSignal;
}

/** kubectl against one kubeconfig, shared by the emulator handle and the lab. */
export interface KubectlRunner {
  /** Runs the real kubectl with `--kubeconfig` and a private HOME (its discovery cache). */
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** Like kubectl, but rejects with kubectl's stderr when it exits non-zero. */
  kubectlOk(args: string[], opts?: KubectlOptions): Promise<string>;
}

/** A kubectl runner for `kubeconfig`, with `home` as HOME so suites do not share a cache. */
export function kubectlRunner(kubeconfig: string, home: string): KubectlRunner {
  const kubectl = (args: string[], opts: KubectlOptions = {}) =>
    new Promise<KubectlResult>((resolve, reject) => {
      const child = spawn('kubectl', ['--kubeconfig', kubeconfig, ...args], {
        env: { ...process.env, HOME: home, KUBECONFIG: kubeconfig },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        opts.onStdout?.(d);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      const abort = () => child.kill('SIGTERM');
      opts.signal?.addEventListener('abort', abort, { once: true });
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', abort);
        resolve({ code, stdout, stderr });
      });
      child.stdin.end(opts.input ?? '');
    });
  return {
    kubectl,
    async kubectlOk(args, opts) {
      const r = await kubectl(args, opts);
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      return r.stdout;
    },
  };
}

export interface KubeEmulatorHandle {
  /** `http://127.0.0.1:<port>` */
  url: string;
  kubeconfigPath: string;
  /** A @kubernetes/client-node KubeConfig loaded from that kubeconfig. */
  kubeConfig: KubeConfig;
  /** The bearer token in the kubeconfig (the administrator). */
  token: string;
  /** Runs the real kubectl with `--kubeconfig` and a private HOME (its discovery cache). */
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** Like kubectl, but rejects with kubectl's stderr when it exits non-zero. */
  kubectlOk(args: string[], opts?: KubectlOptions): Promise<string>;
  /** The emulator's JSON logs so far. */
  logs(): string;
  process: StartedProcess;
  /** SIGTERM, then removes the temporary directory. */
  stop(): Promise<void>;
}

export interface StartKubeOptions {
  scheduler?: boolean;
  /** More `kube-emulator` flags, e.g. ['--authz-config', path, '--history-size', '100']. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

/** Starts `npm run -s kube-emulator` on a free port with its kubeconfig in a temporary directory. */
export async function startKubeEmulator(opts: StartKubeOptions = {}): Promise<KubeEmulatorHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'kip-kube-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  const home = join(dir, 'home');
  const args = [
    '--port',
    '0',
    '--kubeconfig',
    kubeconfigPath,
    ...(opts.scheduler ? ['--scheduler'] : []),
    ...(opts.args ?? []),
  ];
  let proc: StartedProcess;
  try {
    proc = await startNpmScript('kube-emulator', args, { env: { LOG_LEVEL: 'warn', ...opts.env } });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kubeconfigPath);
  const { kubectl, kubectlOk } = kubectlRunner(kubeconfigPath, home);
  return {
    url: String(proc.ready.url),
    kubeconfigPath,
    kubeConfig,
    token: kubeConfig.getCurrentUser()?.token ?? '',
    kubectl,
    kubectlOk,
    logs: () => proc.stderr(),
    process: proc,
    stop: async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
