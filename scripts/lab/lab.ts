/**
 * Starting and stopping a whole lab: etcd, the Compute Engine emulator (netns cells), the
 * registry on the cell network's gateway, the example image, the Kubernetes API emulator with
 * its scheduler, and the provider. `make local`, `make local-down` and the end-to-end suites
 * (test/support/lab.ts) all go through here.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLabCompute, type ComputeOptions } from './compute.ts';
import { isAlive, LabStartError, stopPid } from './daemon.ts';
import { startLabEtcd } from './etcd.ts';
import { startLabKube } from './kube.ts';
import type { labProviderConfig } from './provider.ts';
import { startLabProvider } from './provider.ts';
import { LAB_REGISTRY_PORT, startLabRegistry } from './registry.ts';
import { seedExampleImage } from './seed-image.ts';
import { PARTS, readLabState, writeLabState, type LabState } from './state.ts';

/** The repository root (scripts/lab/ is two levels down). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where `make local` keeps its lab. */
export const DEFAULT_LAB_DIR = join(REPO_ROOT, '.kip', 'local');

export interface LabUpOptions {
  dir?: string;
  /** The registry's port on the gateway address: 5000 (what examples/ name) by default, 0 for a free one. */
  registryPort?: number;
  compute?: ComputeOptions;
  /** Seed the example image (default true). */
  seedImage?: boolean;
  /** Start the provider (default true). */
  provider?: boolean;
  providerEnv?: NodeJS.ProcessEnv;
  providerConfig?: Parameters<typeof labProviderConfig>[1];
  /** Progress: called when a part starts and when it is up. */
  progress?: (event: { part: string; phase: 'start' | 'up'; detail?: string; ms?: number }) => void;
}

export type LabUpResult = { state: LabState; alreadyUp: boolean };

/** Every recorded process of the lab is alive. */
export function labRunning(state: LabState): boolean {
  return state.complete && PARTS.every((p) => !state[p] || isAlive(state[p]!.pid));
}

/**
 * Starts a lab in `dir` and resolves to its state; a lab already running there is returned as
 * is. A part that fails stops everything started so far, removes the directory and rejects with
 * a LabStartError naming the part (its `logTail()` is read before the directory goes, in
 * `message`'s companion `tail`).
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabUpResult> {
  const dir = resolve(opts.dir ?? DEFAULT_LAB_DIR);
  const existing = readLabState(dir);
  if (existing && labRunning(existing)) return { state: existing, alreadyUp: true };
  if (existing || existsSync(dir)) await labDown(dir);
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const state: LabState = {
    version: 1,
    dir,
    startedAt: new Date().toISOString(),
    complete: false,
    kubeconfig: join(dir, 'kubeconfig'),
  };
  writeLabState(state);
  const step = async <T>(part: string, fn: () => Promise<T>, detail: (v: T) => string): Promise<T> => {
    const t0 = Date.now();
    opts.progress?.({ part, phase: 'start' });
    const v = await fn();
    opts.progress?.({ part, phase: 'up', detail: detail(v), ms: Date.now() - t0 });
    return v;
  };
  try {
    state.etcd = await step(
      'etcd',
      () => startLabEtcd(dir, REPO_ROOT),
      (v) => v.endpoint,
    );
    writeLabState(state);
    state.compute = await step(
      'compute',
      () => startLabCompute(dir, REPO_ROOT, opts.compute),
      (v) => `${v.url} (project ${v.project}, cells on ${v.network.block} via ${v.network.bridge ?? 'none'})`,
    );
    writeLabState(state);
    const compute = state.compute;
    state.registry = await step(
      'registry',
      () =>
        startLabRegistry(dir, REPO_ROOT, {
          // Without a bridge (hypervisor none) nothing outside this machine's loopback needs it.
          address: compute.network.bridge ? compute.network.gateway : '127.0.0.1',
          port: opts.registryPort ?? LAB_REGISTRY_PORT,
        }),
      (v) => v.host,
    );
    writeLabState(state);
    if (opts.seedImage !== false) {
      const host = state.registry.host;
      state.image = await step(
        'image',
        () => seedExampleImage(host),
        (v) => v,
      );
      writeLabState(state);
    }
    state.kube = await step(
      'kube',
      () => startLabKube(dir, REPO_ROOT, state.kubeconfig),
      (v) => v.url,
    );
    writeLabState(state);
    if (opts.provider !== false) {
      state.provider = await step(
        'provider',
        () =>
          startLabProvider(dir, REPO_ROOT, state, {
            env: opts.providerEnv,
            extraConfig: opts.providerConfig,
          }),
        (v) => `node ${v.node}, kubelet API ${v.kubeletApi}`,
      );
    }
    state.complete = true;
    writeLabState(state);
    return { state, alreadyUp: false };
  } catch (e) {
    const err = e instanceof LabStartError ? e : new LabStartError('lab', (e as Error).message);
    const tail = err.logTail();
    await labDown(dir);
    throw Object.assign(err, { tail });
  }
}

/** Network namespaces whose names start with `prefix`. */
function netnsWithPrefix(prefix: string): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

/**
 * Stops every process of the lab in `dir` (provider first), removes what the Compute Engine
 * emulator would have removed had it stopped cleanly (cell namespaces, bridge), and deletes the
 * directory. Resolves to the parts it stopped; a directory with no lab is simply removed.
 */
export async function labDown(dir: string = DEFAULT_LAB_DIR): Promise<string[]> {
  dir = resolve(dir);
  const state = readLabState(dir);
  const stopped: string[] = [];
  if (state) {
    for (const part of [...PARTS].reverse()) {
      const p = state[part];
      if (!p) continue;
      if (isAlive(p.pid)) stopped.push(part);
      // The compute emulator stops its cells (agent grace 3 s) before it exits.
      await stopPid(p.pid, part === 'compute' ? 20_000 : 10_000);
    }
    const compute = state.compute;
    if (compute) {
      for (const ns of netnsWithPrefix(compute.netnsPrefix)) {
        // A cell agent left behind by an emulator that was killed.
        for (const pid of execNetnsPids(ns)) await stopPid(pid, 3000);
        run('ip', ['netns', 'delete', ns]);
      }
      if (compute.network.bridge) run('ip', ['link', 'delete', compute.network.bridge]);
    }
  }
  releaseLeftovers(dir);
  rmSync(dir, { recursive: true, force: true });
  return stopped;
}

/**
 * What a cell agent killed before it finished stopping leaves under the lab directory: container
 * processes (their root is a rootfs in there) and overlay/tmpfs mounts. Removed so the directory
 * can go.
 */
function releaseLeftovers(dir: string): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/root`).startsWith(`${dir}/`)) process.kill(Number(entry), 'SIGKILL');
    } catch {
      // gone, or not ours to read
    }
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  // Lazy: a mount still busy for a moment is detached now and freed when released.
  for (const m of mounts) run('umount', ['-l', m]);
}

function execNetnsPids(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}
