import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ContainerState, ContainerStateTerminated, ContainerStatus } from '../lib/cell-agent-api.ts';
import type { Logger } from '../lib/log.ts';
import { InstanceStreams } from './attach.ts';
import { buildRuntimeSpec, type BundleMount } from './bundle.ts';
import { cgroupDir, readCgroupTable } from './cgroups.ts';
import type { PulledImage } from './image-source.ts';
import { ContainerLogWriter } from './logs.ts';
import { mountOverlay, unmount } from './mounts.ts';
import type { Runc } from './runc.ts';
import { statusTime } from './status.ts';

/** What every container of a pod shares, handed down by the pod runner. */
export interface PodContext {
  pod: V1Pod;
  podDir: string;
  podIP: string | undefined;
  hostname: string;
  cellId: string;
  runc: Runc;
  log: Logger;
  namespaces: { ipc: string; uts: string };
  /** hosts, hostname and resolv.conf mounts plus /dev/shm, common to every container. */
  podMounts: BundleMount[];
  maxLogFileBytes: number;
  onChange(): void;
}

/** One run of a container: a runc container over its own overlay, from start to exit. */
export interface Instance {
  index: number;
  runcId: string;
  dir: string;
  logPath: string;
  startedAt: string;
  cgroups: { memory?: string; cpuacct?: string };
  proc: ChildProcess;
  exited: Promise<ContainerStateTerminated>;
  done: boolean;
  /** Live output for attached clients, and the stdin pipe of a `stdin: true` container. */
  streams: InstanceStreams;
}

const SIGNALS: Record<number, string> = {
  1: 'SIGHUP',
  2: 'SIGINT',
  9: 'SIGKILL',
  15: 'SIGTERM',
  6: 'SIGABRT',
  11: 'SIGSEGV',
};

/**
 * Runs one container of the pod (init or app) instance after instance and keeps the state the
 * kubelet reports for it. The restart decisions are the pod runner's.
 */
export class ContainerRunner {
  state: ContainerState;
  lastState: ContainerState = {};
  restartCount = 0;
  ready = false;
  started = false;
  image?: PulledImage;
  current?: Instance;
  /** The most recent instance, running or not; logs read from it. */
  latest?: Instance;
  previous?: Instance;
  private instances = 0;
  /** Instances runc was asked to start; the second and later ones are restarts. */
  private spawned = 0;

  constructor(
    readonly spec: V1Container,
    readonly isInit: boolean,
    private readonly ctx: PodContext,
    private readonly mounts: BundleMount[],
    private readonly env: { name: string; value: string }[],
  ) {
    this.state = { waiting: { reason: 'ContainerCreating' } };
  }

  get name(): string {
    return this.spec.name;
  }

  setWaiting(reason: string, message?: string): void {
    this.state = { waiting: message ? { reason, message } : { reason } };
    this.ready = false;
    this.started = false;
    this.ctx.onChange();
  }

  status(): ContainerStatus {
    const cid = this.current ? `runc://${this.current.runcId}` : this.state.terminated?.containerID;
    return {
      name: this.name,
      state: this.state,
      lastState: this.lastState,
      ready: this.ready,
      started: this.started,
      restartCount: this.restartCount,
      image: this.spec.image ?? '',
      imageID: this.image?.imageId ?? '',
      ...(cid ? { containerID: cid } : {}),
    };
  }

  /**
   * Starts a new instance: overlay rootfs, OCI bundle, `runc run`. Resolves once the container's
   * process exists; `instance.exited` resolves with its terminated state. Throws
   * ContainerConfigError (bad spec) or Error (runtime failure) without leaving anything behind.
   */
  async start(): Promise<Instance> {
    const image = this.image!;
    const index = this.instances++;
    const uid = (this.ctx.pod.metadata?.uid ?? '').slice(0, 8);
    const runcId = `${this.ctx.cellId}-${uid}-${this.name}-${index}`;
    const dir = join(this.ctx.podDir, 'containers', this.name, String(index));
    const rootfs = join(dir, 'rootfs');
    for (const d of ['upper', 'work', 'rootfs']) mkdirSync(join(dir, d), { recursive: true });
    const logDir = join(this.ctx.podDir, 'logs', this.name);
    mkdirSync(logDir, { recursive: true });
    const logPath = join(logDir, `${index}.log`);
    const termPath = join(dir, 'termination-log');
    writeFileSync(termPath, '');
    const cgroupsPath = `kip-${this.ctx.cellId}/${runcId}`;
    await mountOverlay(image.rootfs, join(dir, 'upper'), join(dir, 'work'), rootfs);
    let spec: Record<string, unknown>;
    try {
      spec = buildRuntimeSpec({
        pod: this.ctx.pod,
        container: this.spec,
        image,
        rootfs,
        env: this.env,
        hostname: this.ctx.hostname,
        mounts: [
          ...this.ctx.podMounts,
          {
            destination: this.spec.terminationMessagePath || '/dev/termination-log',
            source: termPath,
            readOnly: false,
          },
          ...this.mounts,
        ],
        namespaces: this.ctx.namespaces,
        cgroupsPath,
      });
    } catch (e) {
      await unmount(rootfs);
      throw e;
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 1));
    const pidFile = join(dir, 'pid');
    const runcLog = join(dir, 'runc.log');
    const writer = new ContainerLogWriter(logPath, this.ctx.maxLogFileBytes);
    // A `stdin: true` container keeps a pipe from the agent as its stdin for its whole life (attach).
    const proc = this.ctx.runc.run(runcId, dir, {
      pidFile,
      logFile: runcLog,
      stdio: [this.spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const streams = new InstanceStreams(proc.stdin, this.spec.stdinOnce === true, [
      proc.stdout!,
      proc.stderr!,
    ]);
    proc.stdout!.on('data', (d: Buffer) => {
      writer.write('stdout', d);
      streams.publish('stdout', d);
    });
    proc.stderr!.on('data', (d: Buffer) => {
      writer.write('stderr', d);
      streams.publish('stderr', d);
    });
    const startedAt = statusTime();
    const cgroups = { memory: cgroupDir('memory', cgroupsPath), cpuacct: cgroupDir('cpuacct', cgroupsPath) };
    const instance: Instance = {
      index,
      runcId,
      dir,
      logPath,
      startedAt,
      cgroups,
      proc,
      exited: undefined as never,
      done: false,
      streams,
    };
    let ended = false;
    const exitCode = new Promise<number>((resolve) => {
      proc.once('error', () => resolve(128));
      proc.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + 9 : 128)));
    }).finally(() => (ended = true));
    // Output may still be in flight after runc exits; the streams end once the container's last writer is gone.
    const outputDone = Promise.all([
      new Promise((r) => proc.stdout!.once('close', r)),
      new Promise((r) => proc.stderr!.once('close', r)),
    ]);
    instance.exited = exitCode.then(async (code) => {
      // No attached client may hold up the last output of an exited container.
      streams.release();
      await Promise.race([outputDone, new Promise((r) => setTimeout(r, 2000))]);
      writer.close();
      streams.end();
      return this.finish(instance, code, termPath, runcLog);
    });
    // Wait until runc has started the process (pid file) or gave up.
    const startedOk = await Promise.race([
      exitCode.then(() => false),
      (async () => {
        while (!existsSync(pidFile) && !ended) await new Promise((r) => setTimeout(r, 5));
        return existsSync(pidFile);
      })(),
    ]);
    if (++this.spawned > 1) this.restartCount++;
    if (this.latest) this.previous = this.latest;
    this.latest = instance;
    this.current = instance;
    if (startedOk || proc.exitCode !== null) {
      this.state = { running: { startedAt } };
      this.started = this.spec.startupProbe === undefined;
      this.ready = false;
      this.ctx.onChange();
    }
    return instance;
  }

  /** Sends a signal to the running instance; a container that already exited is not an error. */
  async signal(sig: string): Promise<void> {
    const inst = this.current;
    if (!inst || inst.done) return;
    await this.ctx.runc
      .kill(inst.runcId, sig)
      .catch((e: Error) => this.ctx.log.debug({ err: e.message, container: this.name }, 'kill'));
  }

  private async finish(
    inst: Instance,
    code: number,
    termPath: string,
    runcLog: string,
  ): Promise<ContainerStateTerminated> {
    const finishedAt = statusTime();
    const oom = readCgroupTable(inst.cgroups.memory, 'memory.oom_control').get('oom_kill') ?? 0;
    let reason = code === 0 ? 'Completed' : 'Error';
    let message: string | undefined;
    let exitCode = code;
    const runcError = readRuncError(runcLog);
    if (runcError) {
      reason = 'StartError';
      message = runcError;
      exitCode = 128;
    } else if (oom > 0 && code !== 0) reason = 'OOMKilled';
    if (!message) {
      try {
        message = readFileSync(termPath, 'utf8').slice(0, 4096) || undefined;
      } catch {
        message = undefined;
      }
    }
    if (!message && exitCode !== 0 && this.spec.terminationMessagePolicy === 'FallbackToLogsOnError') {
      message = tailText(inst.logPath, 80, 2048);
    }
    await this.ctx.runc
      .delete(inst.runcId)
      .catch((e: Error) => this.ctx.log.warn({ err: e.message, container: this.name }, 'runc delete failed'));
    await unmount(join(inst.dir, 'rootfs'));
    try {
      rmSync(join(inst.dir, 'upper'), { recursive: true, force: true });
      rmSync(join(inst.dir, 'work'), { recursive: true, force: true });
    } catch (e) {
      this.ctx.log.warn(
        { err: (e as Error).message, container: this.name },
        'cannot remove the writable layer',
      );
    }
    const terminated: ContainerStateTerminated = {
      exitCode,
      ...(exitCode > 128 && SIGNALS[exitCode - 128] ? { signal: exitCode - 128 } : {}),
      reason,
      ...(message ? { message } : {}),
      startedAt: inst.startedAt,
      finishedAt,
      containerID: `runc://${inst.runcId}`,
    };
    inst.done = true;
    if (this.current === inst) this.current = undefined;
    this.state = { terminated };
    this.ready = false;
    this.started = false;
    this.ctx.onChange();
    return terminated;
  }

  /** Before a restart: the terminated state moves to lastState and the container waits. */
  markRestarting(delayMs: number): void {
    if (this.state.terminated) this.lastState = { terminated: this.state.terminated };
    const pod = this.ctx.pod.metadata;
    this.setWaiting(
      'CrashLoopBackOff',
      `back-off ${Math.round(delayMs / 1000)}s restarting failed container=${this.name} pod=${pod?.name}_${pod?.namespace ?? 'default'}(${pod?.uid})`,
    );
  }

  /** Deletes older instances' files, keeping the latest and previous ones for `logs --previous`. */
  prune(): void {
    const keep = new Set([this.latest?.index, this.previous?.index]);
    for (let i = 0; i < this.instances; i++) {
      if (keep.has(i)) continue;
      rmSync(join(this.ctx.podDir, 'containers', this.name, String(i)), { recursive: true, force: true });
      rmSync(join(this.ctx.podDir, 'logs', this.name, `${i}.log`), { force: true });
      rmSync(join(this.ctx.podDir, 'logs', this.name, `${i}.log.1`), { force: true });
    }
  }
}

/** runc's own failure (as opposed to the container's exit), from its JSON log. */
function readRuncError(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').reverse()) {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === 'error' && entry.msg) return entry.msg.replace(/^runc run failed: /, '');
    } catch {
      // not JSON
    }
  }
  return undefined;
}

function tailText(logPath: string, lines: number, bytes: number): string | undefined {
  try {
    const text = readFileSync(logPath, 'utf8')
      .split('\n')
      .filter(Boolean)
      .slice(-lines)
      .map((l) => l.split(' ').slice(3).join(' '))
      .join('\n');
    return text.slice(-bytes) || undefined;
  } catch {
    return undefined;
  }
}
