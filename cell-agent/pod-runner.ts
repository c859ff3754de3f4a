import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Container, V1LifecycleHandler, V1Pod, V1Probe } from '@kubernetes/client-node';
import type {
  ContainerStatus,
  PodCondition,
  PodStatusReply,
  PutPodRequest,
  VolumeFiles,
} from '../lib/cell-agent-api.ts';
import type { Logger } from '../lib/log.ts';
import { Backoff, type BackoffPolicy } from './backoff.ts';
import { ContainerConfigError } from './bundle.ts';
import { removeCgroupTree } from './cgroups.ts';
import { ContainerRunner, type PodContext } from './container-runner.ts';
import type { ImageSource, PulledImage } from './image-source.ts';
import { mountTmpfs, mountsUnder, unmount } from './mounts.ts';
import { writePodNetworkFiles } from './network.ts';
import { probeOnce, runProbeLoop, type ProbeTarget } from './probes.ts';
import { parseQuantity } from '../lib/quantity.ts';
import type { Runc } from './runc.ts';
import { podConditions, podPhase, qosClass, statusTime } from './status.ts';
import { prepareVolumes, containerMounts, replaceVolumeFiles, VolumesUnavailableError } from './volumes.ts';

export interface PodRunnerDeps {
  runc: Runc;
  images: ImageSource;
  log: Logger;
  cellId: string;
  dataDir: string;
  podIP: string | undefined;
  restartBackoff: BackoffPolicy;
  imagePullBackoff: BackoffPolicy;
  maxLogFileBytes: number;
  /** Called after each pull that went to a registry, for metrics. */
  onImagePulled?: (ms: number, image: PulledImage) => void;
}

/** Resolves an env var's `valueFrom.fieldRef` / `resourceFieldRef` from the pod (others were resolved by the provider). */
function envValue(
  pod: V1Pod,
  c: V1Container,
  e: NonNullable<V1Container['env']>[number],
  podIP: string | undefined,
): string {
  if (e.value !== undefined) return e.value;
  const f = e.valueFrom?.fieldRef?.fieldPath;
  if (f) {
    const m = /^metadata\.(labels|annotations)\['(.*)'\]$/.exec(f);
    if (m) return (m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2]!] ?? '';
    const known: Record<string, string | undefined> = {
      'metadata.name': pod.metadata?.name,
      'metadata.namespace': pod.metadata?.namespace ?? 'default',
      'metadata.uid': pod.metadata?.uid,
      'spec.nodeName': pod.spec?.nodeName,
      'spec.serviceAccountName': pod.spec?.serviceAccountName,
      'status.podIP': podIP,
      'status.podIPs': podIP,
      'status.hostIP': pod.status?.hostIP ?? podIP,
      'status.hostIPs': pod.status?.hostIP ?? podIP,
    };
    return known[f] ?? '';
  }
  const r = e.valueFrom?.resourceFieldRef;
  if (r) {
    const target = r.containerName
      ? ([...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find(
          (x) => x.name === r.containerName,
        ) ?? c)
      : c;
    const [kind, res] = r.resource.split('.') as ['limits' | 'requests', string];
    const raw = target.resources?.[kind]?.[res];
    if (raw === undefined) return '0';
    const divisor = r.divisor !== undefined ? parseQuantity(r.divisor) : 1;
    return String(Math.ceil(parseQuantity(raw) / divisor));
  }
  return '';
}

/**
 * Runs one pod on the cell as the kubelet would: sandbox namespaces, volumes, image pulls with
 * backoff, init containers in order, app containers with restart policy and crash backoff,
 * probes, graceful deletion. Reports a kubelet-shaped status with a version for long-polls.
 */
export class PodRunner {
  readonly uid: string;
  readonly pod: V1Pod;
  readonly init: ContainerRunner[] = [];
  readonly app: ContainerRunner[] = [];
  private readonly podDir: string;
  private readonly abort = new AbortController();
  private sandbox?: ChildProcess;
  private sandboxReady = false;
  private terminating = false;
  private finished = false;
  private startTime?: string;
  private version = 0;
  private lastJson = '';
  private snapshot!: PodStatusReply;
  private readonly transitions = new Map<string, { status: string; time: string }>();
  private waiters: (() => void)[] = [];
  private deletion?: Promise<void>;
  private readonly pulls = new Map<string, Promise<PulledImage>>();
  private runDone?: Promise<void>;
  private readonly probeTimers = new Set<AbortController>();
  /** Why the pod could not be set up (volumes, sandbox); reported on every container. */
  private setupError?: string;
  private readonly createdAt = Date.now();
  /** Set once a DELETE finished: every container stopped. */
  private deleted = false;
  private deleteGrace?: number;
  private stopping?: Promise<void>;
  /** Set when activeDeadlineSeconds ran out: the pod fails with this reason. */
  private failure?: { reason: string; message: string };
  private deadlineTimer?: NodeJS.Timeout;
  /** Settles once the pod's volumes exist; rejects when the pod's setup failed before that. */
  private readonly volumesReady: Promise<void>;
  private volumesSettled: (err?: Error) => void = () => undefined;

  constructor(
    readonly request: PutPodRequest,
    private readonly deps: PodRunnerDeps,
  ) {
    this.pod = request.pod;
    this.uid = this.pod.metadata!.uid!;
    this.podDir = join(deps.dataDir, 'pods', this.uid);
    this.volumesReady = new Promise<void>((resolve, reject) => {
      this.volumesSettled = (err) => (err ? reject(err) : resolve());
    });
    this.volumesReady.catch(() => undefined);
    this.changed();
  }

  get hostname(): string {
    const explicit = this.request.hostname ?? this.pod.spec?.hostname;
    // A pod name may be longer than a hostname can be: truncated as the kubelet does.
    return explicit ?? this.pod.metadata!.name!.slice(0, 63).replace(/[-.]+$/, '');
  }

  get log(): Logger {
    return this.deps.log;
  }

  /** All containers, init first. */
  containers(): ContainerRunner[] {
    return [...this.init, ...this.app];
  }

  isTerminal(): boolean {
    return this.snapshot.phase === 'Succeeded' || this.snapshot.phase === 'Failed';
  }

  /** Sets the pod up and runs it in the background. */
  start(): void {
    this.runDone = this.run().catch((err: unknown) => {
      this.log.error({ err, pod: this.uid }, 'pod setup failed');
      this.setupError = (err as Error)?.message ?? String(err);
      this.volumesSettled(new VolumesUnavailableError(`the pod's setup failed: ${this.setupError}`));
      this.changed();
    });
  }

  private async run(): Promise<void> {
    const pod = this.pod;
    // Pull every image at once, while the pod is set up; each container waits for its own when its turn comes.
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])])
      void this.pull(c).catch(() => undefined);
    for (const d of ['etc', 'volumes', 'shm', 'containers', 'logs'])
      mkdirSync(join(this.podDir, d), { recursive: true });
    this.startTime = statusTime();
    const net = writePodNetworkFiles(
      join(this.podDir, 'etc'),
      pod,
      this.hostname,
      this.deps.podIP,
      this.request.dns,
    );
    const [volumes, , namespaces] = await Promise.all([
      prepareVolumes(join(this.podDir, 'volumes'), pod, this.request.volumes ?? {}),
      mountTmpfs(join(this.podDir, 'shm'), 64 * 1024 * 1024),
      this.startSandbox(),
    ]);
    this.volumesSettled();
    const ctx: PodContext = {
      pod,
      podDir: this.podDir,
      podIP: this.deps.podIP,
      hostname: this.hostname,
      cellId: this.deps.cellId,
      runc: this.deps.runc,
      log: this.log,
      namespaces,
      podMounts: [
        { destination: '/etc/hosts', source: net.hosts, readOnly: false },
        { destination: '/etc/hostname', source: net.hostname, readOnly: false },
        { destination: '/etc/resolv.conf', source: net.resolvConf, readOnly: false },
        { destination: '/dev/shm', source: join(this.podDir, 'shm'), readOnly: false },
      ],
      maxLogFileBytes: this.deps.maxLogFileBytes,
      onChange: () => this.changed(),
    };
    const make = (c: V1Container, isInit: boolean) =>
      new ContainerRunner(
        c,
        isInit,
        ctx,
        containerMounts(c, volumes),
        (c.env ?? []).map((e) => ({ name: e.name, value: envValue(pod, c, e, this.deps.podIP) })),
      );
    for (const c of pod.spec?.initContainers ?? []) this.init.push(make(c, true));
    for (const c of pod.spec?.containers ?? []) this.app.push(make(c, false));
    if (this.init.length > 0) for (const r of this.app) r.state = { waiting: { reason: 'PodInitializing' } };
    const deadline = pod.spec?.activeDeadlineSeconds;
    if (deadline !== undefined) {
      this.deadlineTimer = setTimeout(() => {
        if (this.finished) return;
        this.failure = {
          reason: 'DeadlineExceeded',
          message: 'Pod was active on the node longer than the specified deadline',
        };
        this.log.info({ pod: this.uid, deadline }, 'active deadline exceeded; stopping the pod');
        void this.stopAll(undefined, 'active deadline exceeded');
      }, deadline * 1000);
      this.deadlineTimer.unref();
    }
    this.sandboxReady = true;
    this.changed();
    this.log.debug({ pod: this.uid, ms: Date.now() - this.createdAt }, 'pod sandbox and volumes ready');
    const signal = this.abort.signal;
    for (const r of this.init) {
      const ok = await this.runContainer(r, signal);
      if (!ok || signal.aborted) return this.complete();
    }
    await Promise.all(this.app.map((r) => this.runContainer(r, signal)));
    await this.complete();
  }

  /** Creates the pod's shared IPC and UTS namespaces, held by a sleeping process (the pause container's role). */
  private async startSandbox(): Promise<{ ipc: string; uts: string }> {
    const proc = spawn(
      'unshare',
      [
        '--ipc',
        '--uts',
        '--',
        'sh',
        '-c',
        // The shell holds the namespaces while cat waits on a pipe from the agent. The pipe closes
        // only when the agent dies without stopping the pod (a normal stop kills this shell
        // first): then the shell removes the agent's containers, so none outlives it.
        'trap "" TERM INT HUP; echo "$0" > /proc/sys/kernel/hostname && echo ready && cat > /dev/null; ' +
          'for c in $("$1" --root "$2" list -q); do "$1" --root "$2" delete --force "$c"; done',
        this.hostname,
        this.deps.runc.binary,
        this.deps.runc.root,
      ],
      // Its own process group and no reaction to TERM/INT/HUP: a signal sent to the agent's group
      // must not end the sandbox before the agent had its say (a normal stop uses SIGKILL).
      { stdio: ['pipe', 'pipe', 'pipe'], detached: true },
    );
    this.sandbox = proc;
    proc.stdin!.on('error', () => undefined);
    // "ready" comes once the namespaces exist and the hostname is set; only then may containers join.
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const ready = await new Promise<boolean>((resolve) => {
      proc.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve(true));
      proc.once('exit', () => resolve(false));
      proc.once('error', () => resolve(false));
    });
    proc.stdout!.destroy();
    proc.stderr!.destroy();
    if (!ready || proc.pid === undefined)
      throw new Error(`cannot create the pod sandbox: ${stderr.trim() || 'unshare failed'}`);
    return { ipc: `/proc/${proc.pid}/ns/ipc`, uts: `/proc/${proc.pid}/ns/uts` };
  }

  private pull(c: V1Container): Promise<PulledImage> {
    const ref = c.image!;
    // The kubelet's default: Always for :latest or untagged images, IfNotPresent otherwise.
    const tagged = /:[^/@]+$/.test(ref.split('@')[0]!) && !ref.split('@')[0]!.endsWith(':latest');
    const pullPolicy: 'Always' | 'IfNotPresent' | 'Never' =
      (c.imagePullPolicy as 'Always' | undefined) ??
      (tagged || ref.includes('@') ? 'IfNotPresent' : 'Always');
    const key = `${ref}|${pullPolicy}`;
    let p = this.pulls.get(key);
    if (!p) {
      const dockerConfigs = (this.request.imagePullSecrets ?? []).map((s) =>
        typeof s === 'string' ? s : JSON.stringify(s),
      );
      const t0 = Date.now();
      p = this.deps.images.pull(ref, { dockerConfigs, signal: this.abort.signal, pullPolicy });
      p.then((img) => img.source === 'registry' && this.deps.onImagePulled?.(Date.now() - t0, img)).catch(
        () => undefined,
      );
      this.pulls.set(key, p);
      // A failed pull is retried by whoever asks next.
      p.catch(() => this.pulls.get(key) === p && this.pulls.delete(key));
    }
    return p;
  }

  private async ensureImage(r: ContainerRunner, signal: AbortSignal): Promise<boolean> {
    const backoff = new Backoff(this.deps.imagePullBackoff);
    const ref = r.spec.image!;
    for (;;) {
      if (signal.aborted) return false;
      r.setWaiting('ContainerCreating');
      try {
        r.image = await this.pull(r.spec);
        this.log.debug({ pod: this.uid, container: r.name, ms: Date.now() - this.createdAt }, 'image ready');
        return true;
      } catch (e) {
        if (signal.aborted) return false;
        const msg = (e as Error).message;
        const why = (e as { reason?: string }).reason;
        this.log.warn({ image: ref, err: msg, container: r.name }, 'image pull failed');
        // The kubelet's own reasons for an unparsable name and for a missing image it may not pull.
        if (why === 'InvalidReference')
          r.setWaiting('InvalidImageName', `Failed to apply default image tag "${ref}": ${msg}`);
        else if (why === 'NotFound' && r.spec.imagePullPolicy === 'Never')
          r.setWaiting(
            'ErrImageNeverPull',
            `Container image "${ref}" is not present with pull policy of Never`,
          );
        else r.setWaiting('ErrImagePull', `Failed to pull image "${ref}": ${msg}`);
        const delay = backoff.next(0);
        try {
          await sleep(Math.min(1000, delay / 2), undefined, { signal });
          if (r.state.waiting?.reason === 'ErrImagePull')
            r.setWaiting('ImagePullBackOff', `Back-off pulling image "${ref}"`);
          await sleep(Math.max(0, delay - Math.min(1000, delay / 2)), undefined, { signal });
        } catch {
          return false;
        }
      }
    }
  }

  /** Runs a container until the restart policy lets it rest; for init containers, true when it succeeded. */
  private async runContainer(r: ContainerRunner, signal: AbortSignal): Promise<boolean> {
    if (!(await this.ensureImage(r, signal))) return false;
    const policy = this.pod.spec?.restartPolicy ?? 'Always';
    const backoff = new Backoff(this.deps.restartBackoff);
    for (;;) {
      if (signal.aborted) return false;
      let exitCode: number;
      let ranMs: number;
      try {
        const inst = await r.start();
        // Deleted while runc was starting it: the stop above found nothing to stop yet.
        if (signal.aborted) {
          await this.stopContainer(r, this.deleteGrace ?? 0);
          return false;
        }
        this.log.debug(
          { pod: this.uid, container: r.name, ms: Date.now() - this.createdAt },
          'container started',
        );
        const postStart = r.spec.lifecycle?.postStart;
        // As with the kubelet, probes wait for postStart; a failed hook kills the container.
        if (
          postStart &&
          !(await this.runHook(r, inst.runcId, postStart, this.pod.spec?.terminationGracePeriodSeconds ?? 30))
        ) {
          this.log.info({ container: r.name }, 'postStart hook failed; killing the container');
          await this.stopContainer(r, this.pod.spec?.terminationGracePeriodSeconds ?? 30, false);
        }
        const probes = this.startProbes(r, inst.runcId);
        const t = await inst.exited;
        probes.abort();
        this.probeTimers.delete(probes);
        exitCode = t.exitCode;
        ranMs = Date.parse(t.finishedAt!) - Date.parse(t.startedAt!);
        r.prune();
      } catch (e) {
        const reason =
          e instanceof ContainerConfigError ? 'CreateContainerConfigError' : 'CreateContainerError';
        this.log.warn({ container: r.name, err: (e as Error).message }, 'container create failed');
        r.setWaiting(reason, (e as Error).message);
        try {
          await sleep(backoff.next(0), undefined, { signal });
        } catch {
          return false;
        }
        continue;
      }
      if (signal.aborted) return false;
      if (r.isInit && exitCode === 0) return true;
      const restart = policy === 'Always' || ((policy === 'OnFailure' || r.isInit) && exitCode !== 0);
      if (!restart || (r.isInit && policy === 'Never')) return exitCode === 0;
      const delay = backoff.next(ranMs);
      r.markRestarting(delay);
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        return false;
      }
    }
  }

  /** Starts the container's startup, liveness and readiness probes for one instance. */
  /** Where a container's probes and lifecycle hooks act: its pod IP, its ports, `runc exec`. */
  private probeTarget(r: ContainerRunner, runcId: string): ProbeTarget {
    return {
      podIP: this.deps.podIP ?? '127.0.0.1',
      ports: r.spec.ports ?? [],
      exec: (args, timeoutMs) =>
        new Promise((resolve, reject) => {
          const p = this.deps.runc.exec(runcId, args, { stdio: 'ignore' });
          const t = setTimeout(() => (p.kill('SIGKILL'), reject(new Error('probe timed out'))), timeoutMs);
          p.once('exit', (code) => (clearTimeout(t), resolve(code ?? 1)));
          p.once('error', (e) => (clearTimeout(t), reject(e)));
        }),
    };
  }

  /**
   * Runs a postStart/preStop handler (exec, httpGet, tcpSocket or sleep) within `timeoutSeconds`;
   * resolves with whether it succeeded.
   */
  private async runHook(
    r: ContainerRunner,
    runcId: string,
    hook: V1LifecycleHandler,
    timeoutSeconds: number,
  ): Promise<boolean> {
    if (hook.sleep) {
      await sleep(Math.min(hook.sleep.seconds, timeoutSeconds) * 1000);
      return true;
    }
    return probeOnce(
      { ...hook, timeoutSeconds: Math.max(1, timeoutSeconds) } as V1Probe,
      this.probeTarget(r, runcId),
    );
  }

  private startProbes(r: ContainerRunner, runcId: string): AbortController {
    const ac = new AbortController();
    this.probeTimers.add(ac);
    const target = this.probeTarget(r, runcId);
    const kill = (probe: V1Probe, why: string) => {
      this.log.info({ container: r.name, why }, 'probe failed; restarting container');
      ac.abort();
      const grace = probe.terminationGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30;
      void this.stopContainer(r, grace);
    };
    const afterStartup = () => {
      if (r.spec.livenessProbe)
        void runProbeLoop(
          r.spec.livenessProbe,
          target,
          ac.signal,
          (ok) => !ok && kill(r.spec.livenessProbe!, 'liveness'),
        );
      if (r.spec.readinessProbe && !r.isInit)
        void runProbeLoop(r.spec.readinessProbe, target, ac.signal, (ok) => {
          if (!r.current || !r.started) return;
          r.ready = ok;
          this.changed();
        });
      else if (!r.isInit) {
        r.ready = true;
        this.changed();
      }
    };
    if (r.spec.startupProbe && !r.isInit) {
      void runProbeLoop(r.spec.startupProbe, target, ac.signal, (ok) => {
        if (!ok) return kill(r.spec.startupProbe!, 'startup');
        r.started = true;
        this.changed();
        afterStartup();
      });
    } else afterStartup();
    return ac;
  }

  /** SIGTERM, then SIGKILL after `graceSeconds` if the instance is still running. */
  private async stopContainer(r: ContainerRunner, graceSeconds: number, preStop = true): Promise<void> {
    const inst = r.current;
    if (!inst || inst.done) return;
    const started = Date.now();
    const hook = r.spec.lifecycle?.preStop;
    // preStop runs first and counts against the grace period, as with the kubelet.
    if (preStop && hook && graceSeconds > 0) {
      await Promise.race([this.runHook(r, inst.runcId, hook, graceSeconds), inst.exited]).catch(() => false);
    }
    graceSeconds = Math.max(0, graceSeconds - (Date.now() - started) / 1000);
    // The image's StopSignal replaces SIGTERM, as with the kubelet.
    await r.signal(r.image?.config.StopSignal?.replace(/^SIG/, '') ?? 'TERM');
    const killed = await Promise.race([
      inst.exited.then(() => false),
      sleep(graceSeconds * 1000).then(() => true),
    ]);
    if (killed) await r.signal('KILL');
    await inst.exited;
  }

  /**
   * Stops the pod: SIGTERM to every running container, SIGKILL after the grace period, then the
   * status turns terminal. Idempotent; resolves once every container stopped.
   */
  delete(graceSeconds?: number): Promise<void> {
    const stopping = this.stopAll(graceSeconds, 'pod deleted');
    this.deletion ??= stopping.then(() => {
      this.deleted = true;
      this.changed();
    });
    return this.deletion;
  }

  /** Stops every container (grace, then SIGKILL) and turns the pod terminal. Idempotent. */
  private stopAll(graceSeconds: number | undefined, why: string): Promise<void> {
    if (this.stopping) return this.stopping;
    const grace = graceSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30;
    this.deleteGrace = grace;
    this.terminating = true;
    this.abort.abort(new Error(why));
    for (const ac of this.probeTimers) ac.abort();
    this.changed();
    this.stopping = (async () => {
      await Promise.all(this.containers().map((r) => this.stopContainer(r, grace)));
      await this.runDone;
      await this.complete();
    })();
    return this.stopping;
  }

  private async complete(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.terminating = true;
    for (const r of this.containers()) {
      if (r.state.terminated || r.state.running) continue;
      // Never started (blocked behind init, image or backoff): reported as the kubelet does for a terminal pod.
      r.state = {
        terminated: {
          exitCode: 137,
          reason: 'ContainerStatusUnknown',
          message: 'The container could not be located when the pod was terminated',
        },
      };
    }
    this.stopSandbox();
    this.changed();
  }

  private stopSandbox(): void {
    clearTimeout(this.deadlineTimer);
    if (this.sandbox && this.sandbox.exitCode === null) this.sandbox.kill('SIGKILL');
    this.sandboxReady = false;
  }

  /** Kills everything at once and removes the pod's mounts, cgroups and files (agent shutdown, pod replaced). */
  async destroy(removeFiles: boolean): Promise<void> {
    this.terminating = true;
    this.abort.abort(new Error('agent stopping'));
    await Promise.all(this.containers().map((r) => this.stopContainer(r, 0)));
    await Promise.race([this.runDone, sleep(5000)]);
    this.stopSandbox();
    for (const m of mountsUnder(this.podDir)) await unmount(m);
    removeCgroupTree(`kip-${this.deps.cellId}`);
    if (removeFiles) rmSync(this.podDir, { recursive: true, force: true });
  }

  /**
   * Replaces the files of the pod's configMap, secret, projected or downwardAPI volumes (waiting
   * until setup made them); returns the names whose content changed. Throws VolumeUpdateError for
   * a name that is not such a volume.
   */
  async replaceVolumeFiles(volumes: Record<string, VolumeFiles>): Promise<string[]> {
    await this.volumesReady;
    return replaceVolumeFiles(join(this.podDir, 'volumes'), this.pod, volumes);
  }

  /** Recomputes the status; a real change bumps the version and wakes long-polls. */
  changed(): void {
    const f = {
      pod: this.pod,
      sandboxReady: this.sandboxReady,
      terminating: this.terminating && this.finished,
      initStatuses: this.init.map((r) => r.status()),
      statuses: this.app.map((r) => r.status()),
    };
    // Before the containers exist, report them as the kubelet does while it sets the pod up.
    if (this.app.length === 0) {
      const reason =
        (this.pod.spec?.initContainers ?? []).length > 0 ? 'PodInitializing' : 'ContainerCreating';
      const waiting = (c: V1Container): ContainerStatus => ({
        name: c.name,
        state: {
          waiting: this.setupError
            ? { reason: 'CreateContainerError', message: this.setupError }
            : { reason },
        },
        lastState: {},
        ready: false,
        started: false,
        restartCount: 0,
        image: c.image ?? '',
        imageID: '',
      });
      f.initStatuses = (this.pod.spec?.initContainers ?? []).map(waiting);
      f.statuses = (this.pod.spec?.containers ?? []).map(waiting);
    }
    const phase = this.failure && this.finished ? 'Failed' : podPhase(f);
    const now = statusTime();
    const conditions: PodCondition[] = podConditions(f, phase).map((c) => {
      const prev = this.transitions.get(c.type);
      if (!prev || prev.status !== c.status) this.transitions.set(c.type, { status: c.status, time: now });
      return { ...c, lastProbeTime: null, lastTransitionTime: this.transitions.get(c.type)!.time };
    });
    const body = {
      uid: this.uid,
      phase,
      conditions,
      containerStatuses: f.statuses,
      initContainerStatuses: f.initStatuses,
      ...(this.deps.podIP ? { podIP: this.deps.podIP, podIPs: [{ ip: this.deps.podIP }] } : {}),
      ...(this.startTime ? { startTime: this.startTime } : {}),
      qosClass: qosClass(this.pod),
      ...(this.failure ? this.failure : {}),
      ...(this.deleted ? { deleted: true } : {}),
    };
    const json = JSON.stringify(body);
    if (json === this.lastJson) return;
    this.lastJson = json;
    this.version++;
    this.snapshot = { version: this.version, ...body };
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  status(): PodStatusReply {
    return this.snapshot;
  }

  /** Resolves with the status once its version exceeds `after`, or after `waitMs` with the current one. */
  async waitForStatus(after: number, waitMs: number, signal?: AbortSignal): Promise<PodStatusReply> {
    if (this.version > after || waitMs <= 0) return this.snapshot;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, waitMs);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.waiters.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });
    return this.snapshot;
  }
}
