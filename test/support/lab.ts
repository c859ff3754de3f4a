/**
 * One lab per end-to-end suite, started through the same code as `make local`
 * (scripts/lab/lab.ts) in a unique temporary directory with a free registry port, so suites and
 * a developer's lab run side by side. `stop()` (and, should the suite crash, process exit) tears
 * it down.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive, startedPids, stopPid } from '../../scripts/lab/daemon.ts';
import { labDown, labUp, REPO_ROOT, type LabUpOptions } from '../../scripts/lab/lab.ts';
import { LAB_NODE_NAME, startLabProvider } from '../../scripts/lab/provider.ts';
import { LAB_REGISTRY_PORT } from '../../scripts/lab/registry.ts';
import { writeLabState, type LabState } from '../../scripts/lab/state.ts';
import { kubectlRunner, type KubectlOptions, type KubectlResult } from './kube.ts';

export interface LabInstance {
  name: string;
  zone: string;
  status: string;
  networkIP: string;
  labels: Record<string, string>;
}

export interface TestLab {
  state: LabState;
  kubeconfig: string;
  /** The example image in this lab's registry. */
  image: string;
  /** Runs the real kubectl against the lab (private HOME for its discovery cache). */
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** Like kubectl, but rejects with kubectl's stderr on a non-zero exit. */
  kubectlOk(args: string[], opts?: KubectlOptions): Promise<string>;
  /** An examples/ manifest with its image pointed at this lab's registry. */
  example(file: string): string;
  /** Every instance the Compute Engine emulator holds, read through its REST API. */
  instances(): Promise<LabInstance[]>;
  /** The virtual node's Lease `spec.renewTime`, read with kubectl. */
  leaseRenewTime(): Promise<string>;
  /** SIGKILL the provider (no shutdown of any kind). */
  killProvider(): Promise<void>;
  /** Start the provider again with the same config; resolves once it is ready. */
  restartProvider(): Promise<void>;
  /** The last lines of a part's log (etcd, compute, registry, kube, provider). */
  logTail(part: 'etcd' | 'compute' | 'registry' | 'kube' | 'provider', lines?: number): string;
  stop(): Promise<void>;
}

const live = new Set<LabState>();
process.once('exit', () => {
  // Only signals are possible here; the emulator removes its cells and bridge on SIGTERM.
  const pids = new Set(startedPids);
  for (const s of live)
    for (const p of [s.provider, s.kube, s.registry, s.compute, s.etcd]) if (p) pids.add(p.pid);
  for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGTERM');
});

export async function startLab(opts: Omit<LabUpOptions, 'dir' | 'progress'> = {}): Promise<TestLab> {
  const dir = mkdtempSync(join(tmpdir(), `kip-lab-${process.pid}-`));
  const home = join(dir, 'home');
  let state: LabState;
  try {
    ({ state } = await labUp({ registryPort: 0, ...opts, dir }));
  } catch (e) {
    const tail = (e as { tail?: string }).tail;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(e as Error).message}${tail ? `\n${tail}` : ''}`, { cause: e });
  }
  live.add(state);
  const { kubectl, kubectlOk } = kubectlRunner(state.kubeconfig, home);
  const compute = state.compute!;
  return {
    state,
    kubeconfig: state.kubeconfig,
    image: state.image ?? '',
    kubectl,
    kubectlOk,
    example(file) {
      const text = readFileSync(join(REPO_ROOT, 'examples', file), 'utf8');
      return text.replaceAll(`198.18.0.1:${LAB_REGISTRY_PORT}`, state.registry!.host);
    },
    async leaseRenewTime() {
      const args = [
        '-n',
        'kube-node-lease',
        'get',
        'lease',
        LAB_NODE_NAME,
        '-o',
        'jsonpath={.spec.renewTime}',
      ];
      return (await kubectlOk(args)).trim();
    },
    async instances() {
      const res = await fetch(`${compute.url}/compute/v1/projects/${compute.project}/aggregated/instances`);
      if (!res.ok) throw new Error(`instances.aggregatedList: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as {
        items?: Record<string, { instances?: Record<string, unknown>[] }>;
      };
      const out: LabInstance[] = [];
      for (const scope of Object.values(body.items ?? {})) {
        for (const i of scope.instances ?? []) {
          const nics = i.networkInterfaces as { networkIP?: string }[] | undefined;
          out.push({
            name: String(i.name),
            zone: String(i.zone).split('/').pop()!,
            status: String(i.status),
            networkIP: nics?.[0]?.networkIP ?? '',
            labels: (i.labels as Record<string, string>) ?? {},
          });
        }
      }
      return out;
    },
    async killProvider() {
      const pid = state.provider!.pid;
      process.kill(pid, 'SIGKILL');
      while (isAlive(pid)) await new Promise((r) => setTimeout(r, 20));
    },
    async restartProvider() {
      state.provider = await startLabProvider(state.dir, REPO_ROOT, state, { env: opts.providerEnv });
      writeLabState(state);
    },
    logTail(part, lines = 40) {
      const p = state[part];
      if (!p) return '';
      return readFileSync(p.log, 'utf8').split('\n').slice(-lines).join('\n');
    },
    async stop() {
      live.delete(state);
      await stopPid(state.provider?.pid, 5000);
      await labDown(state.dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
