/**
 * The cell manager: one VM per pod. It records the cell in etcd before anything is sent to the
 * cloud, has the cloud layer right-size and create the VM, waits for it to run and for its agent's
 * healthz, resolves and dispatches the pod, then follows the agent's status long-poll. It deletes
 * cells (graceful stop through the agent, then the VM) and adopts the cells it finds in etcd after
 * a restart: a dispatched cell is only watched again, never sent the pod a second time.
 */
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { PodStatusReply } from '../../lib/cell-agent-api.ts';
import { CellAgentClient, CellAgentError } from '../../lib/cell-agent-client.ts';
import type { Logger } from '../../lib/log.ts';
import type { KeyPair } from '../../lib/tls.ts';
import { cellServerCertificate } from '../certificates.ts';
import { sleep, systemClock, waitAtMost } from '../clock.ts';
import type { CellInstance, CloudProvider } from '../cloud/cloud-provider.ts';
import { CloudError, InvalidRequestError } from '../cloud/errors.ts';
import type { InstanceObserver } from '../cloud/instance-observer.ts';
import { instanceName } from '../cloud/instance-names.ts';
import { cellRequestFromPod } from '../cloud/pod-resources.ts';
import {
  CellExistsError,
  type CellChanges,
  type CellRecord,
  type CellStore,
  type StoredCell,
} from '../state/cells.ts';
import type { PodEventRecorder } from './events.ts';
import { DispatchConfigError, type ResolvedDispatch } from './pod-dispatch.ts';
import { isTerminalPhase, statusFromAgent, WAITING_REASONS, waitingStatus } from './pod-status.ts';
import {
  PodNotFoundError,
  type CellUsageMeter,
  type PodLifecycleHandler,
  type PodNotifier,
} from './types.ts';
import type { FinishedLogs } from './finished-logs.ts';
import type { StandbyPool } from './standby-pool.ts';
import { TokenRotation, type VolumeRefreshOptions } from './token-rotation.ts';
import { describeUnsupported, unsupportedFeatures } from './unsupported-features.ts';

export interface CellManagerOptions {
  cloud: CloudProvider;
  /** Lists the cluster's VMs on an interval; RUNNING and gone are read from its listings. */
  observer: InstanceObserver;
  cells: CellStore;
  clusterId: string;
  /** The cluster CA: signs each cell's server certificate and is the agents' client CA. */
  ca: KeyPair;
  /** The provider's client certificate for the agents (providerClientCertificate). */
  client: KeyPair;
  /** The agent's listen port (`cells.agentPort`). */
  agentPort: number;
  /** Registries the agents reach over plain http (`cells.insecureRegistries`). */
  insecureRegistries: string[];
  /** Resolves volumes, env, pull secrets and DNS for a pod (pod-dispatch.ts). */
  resolveDispatch: (pod: V1Pod) => Promise<ResolvedDispatch>;
  events: PodEventRecorder;
  /** Metering hook; absent when no usage reporter is configured. */
  meter?: CellUsageMeter;
  log: Logger;
  /** Observes seconds from the cell record's creation until its agent answers, by machine type. */
  onBooted?: (machineType: string, seconds: number) => void;
  /** How long a VM may take to run and its agent to answer. Default 10 minutes. */
  bootTimeoutMs?: number;
  /** Long-poll wait per status request, seconds. Default 30. */
  statusWaitSeconds?: number;
  /** Ready standby cells (`cells.standby`); a pod whose shape matches one is dispatched to it. */
  standby?: Pick<StandbyPool, 'claim'>;
  /** Token rotation and ConfigMap/Secret refresh on running cells (token-rotation.ts); off when absent. */
  volumeRefresh?: VolumeRefreshOptions;
  /** Keeps a finished pod's logs before its VM goes (finished-logs.ts); none are kept when absent. */
  finishedLogs?: Pick<FinishedLogs, 'collect'>;
}

interface Tracked {
  uid: string;
  key: string;
  cellName: string;
  pod: V1Pod;
  status?: V1PodStatus;
  abort: AbortController;
  run?: Promise<void>;
  deleting?: Promise<void>;
  client?: CellAgentClient;
  address?: string;
  /** The agent has the pod: logs, exec and stats can go to it. */
  dispatched: boolean;
  /** The record as this task last read or wrote it: only the task writes it while it runs. */
  stored?: StoredCell;
}

/** Retry delays for failures that are not the cloud's (network, agent, Kubernetes). */
const BACKOFF = { initialMs: 1000, maxMs: 30_000 };

/** The retry delay after `failures` failures in a row: doubling from BACKOFF.initialMs, capped. */
function backoffMs(failures: number): number {
  return Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** Math.min(failures, 5));
}

/** Rejects with the abort reason when `signal` aborts first. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('aborted'));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e as Error)),
    );
  });
}

/** The last status with phase Failed, reason CellLost, and every running container terminated. */
function lostStatus(last: V1PodStatus | undefined, message: string): V1PodStatus {
  const at = new Date().toISOString();
  const s = JSON.parse(JSON.stringify(last ?? {})) as Record<string, unknown>;
  const containers = (s.containerStatuses ?? []) as { state?: Record<string, unknown>; ready?: boolean }[];
  for (const c of containers) {
    if (!c.state?.terminated)
      c.state = { terminated: { exitCode: 137, reason: 'ContainerStatusUnknown', message, finishedAt: at } };
    c.ready = false;
  }
  const conditions = ((s.conditions ?? []) as { type: string; status: string }[]).map((c) =>
    c.type === 'Ready' || c.type === 'ContainersReady'
      ? { ...c, status: 'False', lastTransitionTime: at }
      : c,
  );
  return {
    ...s,
    phase: 'Failed',
    reason: 'CellLost',
    message,
    conditions,
    containerStatuses: containers,
  } as V1PodStatus;
}

const keyOf = (pod: V1Pod) => `${pod.metadata?.namespace}/${pod.metadata?.name}`;

/** vCPUs and memory of a custom machine type name (`n2-custom-4-10240`, `custom-2-4096-ext`). */
function customShape(machineType: string): { vcpus: number; memoryMiB: number } | undefined {
  const m = /custom-(\d+)-(\d+)(-ext)?$/.exec(machineType);
  return m ? { vcpus: Number(m[1]), memoryMiB: Number(m[2]) } : undefined;
}

export class CellManager implements PodLifecycleHandler, PodNotifier {
  private readonly byUid = new Map<string, Tracked>();
  private readonly byKey = new Map<string, string>();
  private notify: (pod: V1Pod) => void = () => {};
  private readonly bootTimeoutMs: number;
  private shapes: Promise<Map<string, { vcpus: number; memoryMiB: number; gpus: number }>> | undefined;
  private readonly volumes?: TokenRotation;

  constructor(private readonly o: CellManagerOptions) {
    this.bootTimeoutMs = o.bootTimeoutMs ?? 600_000;
    if (o.volumeRefresh)
      this.volumes = new TokenRotation({ ...o.volumeRefresh, events: o.events, log: o.log });
  }

  notifyPods(notify: (pod: V1Pod) => void): void {
    this.notify = notify;
  }

  async createPod(pod: V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    const existing = this.byUid.get(uid);
    if (existing) {
      existing.pod = pod;
      return;
    }
    const unsupported = unsupportedFeatures(pod);
    if (unsupported.length) {
      // No cell: a VM that cannot run the pod as written would cost money and hide the problem.
      const message = describeUnsupported(unsupported);
      const t = this.track(pod, instanceName(this.o.clusterId, uid));
      this.setStatus(t, waitingStatus(pod, WAITING_REASONS.unsupported, message));
      await this.o.events.record(pod, 'Warning', WAITING_REASONS.unsupported, message);
      return;
    }
    const identity = { namespace: pod.metadata!.namespace!, name: pod.metadata!.name!, uid };
    let stored: StoredCell | null = null;
    if (this.o.standby && !(await this.o.cells.get(uid))) {
      // A ready standby cell of the shape the cloud layer would choose: no boot to wait for.
      const { request, placement } = cellRequestFromPod(pod);
      stored = await this.o.standby.claim(identity, request, placement);
      if (stored) await this.claimedStandby(pod, stored.record);
    }
    try {
      stored ??= await this.o.cells.create({
        podUid: uid,
        namespace: identity.namespace,
        podName: identity.name,
        cellName: instanceName(this.o.clusterId, uid),
      });
    } catch (err) {
      if (!(err instanceof CellExistsError)) throw err;
      stored = err.current;
      this.o.log.info(
        { pod: keyOf(pod), cell: stored.record.cellName, state: stored.record.state },
        'adopting cell',
      );
    }
    // The recorded name, not one derived from the pod: a claimed standby cell keeps its VM name.
    const t = this.track(pod, stored.record.cellName);
    t.stored = stored;
    if (stored.record.address) t.address = stored.record.address;
    if (stored.record.state === 'dispatched' && t.address) {
      // Adopted after a restart: the agent has the pod; only its status is read again.
      t.client = this.agentClient(t.cellName, t.address);
      t.dispatched = true;
      this.volumes?.adopted(pod, () => (t.dispatched ? t.client : undefined));
    } else {
      this.setStatus(t, this.bootingStatus(t, stored.record));
    }
    if (stored.record.state === 'terminating' || stored.record.state === 'deleting') return;
    t.run = this.run(t).catch((err: unknown) =>
      this.o.log.error({ pod: t.key, err: (err as Error).message }, 'cell task failed'),
    );
  }

  updatePod(pod: V1Pod): Promise<void> {
    const t = this.byUid.get(pod.metadata!.uid!);
    if (t) t.pod = { ...pod, status: t.pod.status };
    this.volumes?.updated(pod);
    return Promise.resolve();
  }

  async deletePod(pod: V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    let t = this.byUid.get(uid);
    if (!t) {
      const rec = await this.o.cells.get(uid);
      if (!rec) throw new PodNotFoundError(pod.metadata!.namespace!, pod.metadata!.name!);
      t = this.track(pod, rec.record.cellName);
      if (rec.record.address) {
        t.address = rec.record.address;
        t.client = this.agentClient(t.cellName, t.address);
      }
    }
    const grace = pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const tracked = t;
    tracked.deleting ??= this.removeCell(tracked, { stop: true, graceSeconds: grace }).finally(() => {
      tracked.deleting = undefined;
    });
    await tracked.deleting;
  }

  getPod(namespace: string, name: string): Promise<V1Pod | null> {
    const t = this.tracked(namespace, name);
    return Promise.resolve(t ? { ...t.pod, status: t.status ?? t.pod.status } : null);
  }

  getPodStatus(namespace: string, name: string): Promise<V1PodStatus | null> {
    return Promise.resolve(this.tracked(namespace, name)?.status ?? null);
  }

  async getPods(): Promise<V1Pod[]> {
    const out: V1Pod[] = [];
    for (const { record } of await this.o.cells.list()) {
      const t = this.byUid.get(record.podUid);
      out.push(
        t
          ? { ...t.pod, status: t.status ?? t.pod.status }
          : { metadata: { namespace: record.namespace, name: record.podName, uid: record.podUid } },
      );
    }
    return out;
  }

  /** The agent serving a pod, once the pod was dispatched to it (kubelet API proxying). */
  agentFor(namespace: string, name: string): { client: CellAgentClient; pod: V1Pod } | undefined {
    const t = this.tracked(namespace, name);
    return t?.dispatched && t.client ? { client: t.client, pod: t.pod } : undefined;
  }

  /** Every pod whose agent has it, for stats. */
  dispatchedAgents(): { client: CellAgentClient; pod: V1Pod }[] {
    return [...this.byUid.values()]
      .filter((t) => t.dispatched && t.client)
      .map((t) => ({ client: t.client!, pod: t.pod }));
  }

  /** Stops every cell task (cells and VMs stay: the next start adopts them). */
  async stop(): Promise<void> {
    for (const t of this.byUid.values()) t.abort.abort();
    this.volumes?.stop();
    // A cloud call in flight cannot be aborted; its result is adopted from etcd at the next start.
    await waitAtMost(Promise.all([...this.byUid.values()].map((t) => t.run)), 5000);
    await Promise.all([...this.byUid.values()].map((t) => t.client?.close()));
  }

  private tracked(namespace: string, name: string): Tracked | undefined {
    const uid = this.byKey.get(`${namespace}/${name}`);
    return uid ? this.byUid.get(uid) : undefined;
  }

  private track(pod: V1Pod, cellName: string): Tracked {
    const t: Tracked = {
      uid: pod.metadata!.uid!,
      key: keyOf(pod),
      cellName,
      pod,
      abort: new AbortController(),
      dispatched: false,
    };
    this.byUid.set(t.uid, t);
    this.byKey.set(t.key, t.uid);
    return t;
  }

  private untrack(t: Tracked): void {
    this.volumes?.forget(t.uid);
    this.byUid.delete(t.uid);
    if (this.byKey.get(t.key) === t.uid) this.byKey.delete(t.key);
  }

  private setStatus(t: Tracked, status: V1PodStatus): void {
    t.status = status;
    this.notify({ ...t.pod, status });
  }

  private bootingStatus(t: Tracked, r: CellRecord): V1PodStatus {
    const where = r.machineType ? ` (${r.machineType} in ${r.zone})` : '';
    const what =
      r.state === 'requested' || r.state === 'creating'
        ? `creating VM ${r.cellName}${where}`
        : `VM ${r.cellName}${where} is running; waiting for its cell agent`;
    return waitingStatus(t.pod, WAITING_REASONS.cellBooting, what, {
      ...(r.address ? { address: r.address } : {}),
    });
  }

  /** A client for a cell's agent (the standby pool's health checks use it too). */
  agentClient(cellName: string, address: string): CellAgentClient {
    // Dialled by IP, verified by the cell's name: its certificate is issued for the name.
    return new CellAgentClient({
      baseUrl: `https://${address}:${this.o.agentPort}`,
      ca: this.o.ca.certPem,
      cert: this.o.client.certPem,
      key: this.o.client.keyPem,
      servername: cellName,
    });
  }

  /**
   * The `kip-cell-agent-config` document: the agent's config with inline PEMs (standby cells too).
   * JSON, which the agent's YAML loader reads as it is, and which costs far less to write per cell.
   */
  async bootstrap(cellName: string): Promise<string> {
    const server = await cellServerCertificate(this.o.ca, { cellName });
    return JSON.stringify({
      listen: `0.0.0.0:${this.o.agentPort}`,
      dataDir: '/var/lib/kip-cell',
      insecureRegistries: this.o.insecureRegistries,
      tls: { certPem: server.certPem, keyPem: server.keyPem, clientCaPem: this.o.ca.certPem },
    });
  }

  /** A claimed standby cell: the pod's event and the meter's start (its boot was the pool's). */
  private async claimedStandby(pod: V1Pod, r: CellRecord): Promise<void> {
    const capacityType = r.spot ? 'spot' : 'on-demand';
    await this.o.events.record(
      pod,
      'Normal',
      'StandbyCellClaimed',
      `using standby VM ${r.cellName} (${r.machineType}, ${capacityType}) in ${r.zone}`,
    );
    const t = { uid: r.podUid, cellName: r.cellName, pod } as Tracked;
    await this.cellStarted(t, r, {
      name: r.cellName,
      zone: r.zone ?? '',
      machineType: r.machineType ?? 'unknown',
      capacityType,
      status: 'RUNNING',
      labels: {},
    });
  }

  private async mutate(t: Tracked, changes: CellChanges): Promise<CellRecord> {
    const r = await this.o.cells.mutate(t.uid, () => changes, 5, t.stored);
    if (!r) throw new Error(`the cell record of ${t.key} is gone`);
    t.stored = r;
    return r.record;
  }

  /** Drives the cell forward from its recorded state until the pod is finished or the task aborts. */
  private async run(t: Tracked): Promise<void> {
    const signal = t.abort.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const cur = t.stored ?? (await this.o.cells.get(t.uid));
        if (!cur) return;
        t.stored = cur;
        if (await this.step(t, cur.record, signal)) return;
        failures = 0;
      } catch (err) {
        t.stored = undefined;
        if (signal.aborted) return;
        const delay = await this.failed(t, err, failures++);
        if (delay === null) return;
        await sleep(systemClock, delay, signal);
      }
    }
  }

  /** One state's work. Returns true when the task is over. */
  private async step(t: Tracked, r: CellRecord, signal: AbortSignal): Promise<boolean> {
    switch (r.state) {
      case 'requested':
      case 'creating': {
        if (r.state === 'requested') await this.mutate(t, { state: 'creating' });
        const { request, placement } = cellRequestFromPod(t.pod);
        const inst = await this.o.cloud.create({
          cellId: t.uid,
          pod: { namespace: r.namespace, name: r.podName, uid: t.uid },
          request,
          placement,
          bootstrap: await this.bootstrap(t.cellName),
        });
        const rec = await this.mutate(t, {
          machineType: inst.machineType,
          zone: inst.zone,
          spot: inst.capacityType === 'spot',
          message: '',
        });
        if (r.state === 'requested' || !r.machineType)
          await this.o.events.record(
            t.pod,
            'Normal',
            'CellCreated',
            `created VM ${t.cellName} (${inst.machineType}, ${inst.capacityType}) in ${inst.zone}`,
          );
        this.setStatus(t, this.bootingStatus(t, rec));
        this.o.observer.requestRefresh();
        const running = await abortable(
          this.o.observer.waitFor(
            t.cellName,
            (c) => c.status === 'RUNNING' && !!c.internalIp,
            this.bootTimeoutMs,
          ),
          signal,
        );
        await this.cellStarted(t, rec, running);
        t.address = running.internalIp!;
        const booting = await this.mutate(t, { state: 'booting', address: t.address });
        this.setStatus(t, this.bootingStatus(t, booting));
        return false;
      }
      case 'booting': {
        t.address = r.address!;
        t.client ??= this.agentClient(t.cellName, t.address);
        const deadline = Date.parse(r.stateSince) + this.bootTimeoutMs;
        for (;;) {
          try {
            await abortable(t.client.healthz(), signal);
            break;
          } catch (err) {
            if (signal.aborted) throw err;
            if (Date.now() > deadline)
              throw new Error(
                `the cell agent on ${t.cellName} did not answer within ${this.bootTimeoutMs / 1000}s`,
                { cause: err },
              );
            await sleep(systemClock, 250, signal);
          }
        }
        const seconds = (Date.now() - Date.parse(r.createdAt)) / 1000;
        this.o.onBooted?.(r.machineType ?? 'unknown', seconds);
        await this.mutate(t, { state: 'ready' });
        return false;
      }
      case 'ready': {
        t.client ??= this.agentClient(t.cellName, r.address!);
        t.address = r.address!;
        const resolved = await this.o.resolveDispatch(t.pod);
        for (const w of resolved.warnings)
          await this.o.events.record(t.pod, 'Warning', 'FailedToRetrieveImagePullSecret', w);
        await abortable(t.client.putPod(resolved.request), signal);
        t.dispatched = true;
        this.volumes?.dispatched(t.pod, () => (t.dispatched ? t.client : undefined), resolved);
        await this.mutate(t, { state: 'dispatched' });
        await this.o.events.record(
          t.pod,
          'Normal',
          'Dispatched',
          `pod sent to the cell agent on ${t.cellName} (${t.address})`,
        );
        return false;
      }
      case 'dispatched': {
        t.address = r.address!;
        t.client ??= this.agentClient(t.cellName, t.address);
        t.dispatched = true;
        const final = await this.followStatus(t, signal);
        if (!final) return true;
        if (final === 'lost') {
          // The VM was preempted or deleted behind Kip's back: the pod cannot go on. Failed lets
          // its controller replace it, as for a pod on a lost node.
          const message = `the pod's VM ${t.cellName} is gone (preempted or deleted outside Kip)`;
          this.setStatus(t, lostStatus(t.status, message));
          await this.o.events.record(t.pod, 'Warning', 'CellLost', message);
        }
        // A finished pod keeps its terminal status and loses its VM. Its logs are kept first
        // (`kubectl logs` outlives the VM), as part of the removal: a deletePod meanwhile (the
        // pod controller's, once it sees the terminal phase) joins it instead of awaiting this task.
        // A deletePod that came first (while the CellLost event was recorded) waits for this task to
        // end, then removes the cell itself: awaiting its removal here would wait forever.
        if (t.deleting) return true;
        t.deleting = Promise.resolve(final !== 'lost' && this.o.finishedLogs?.collect(t.pod, t.client))
          .then(() => this.removeCell(t, { stop: false, graceSeconds: 0, fromRun: true }))
          .finally(() => {
            t.deleting = undefined;
          });
        await t.deleting;
        return true;
      }
      default:
        return true;
    }
  }

  /** Follows the agent's status until the pod is terminal (returns it) or the task aborts (null). */
  private async followStatus(t: Tracked, signal: AbortSignal): Promise<PodStatusReply | 'lost' | null> {
    let version: number | undefined;
    let failures = 0;
    const seen = new Map<string, string>();
    while (!signal.aborted) {
      let reply: PodStatusReply;
      try {
        reply = await t.client!.getStatus({
          ...(version !== undefined ? { after: version } : {}),
          wait: this.o.statusWaitSeconds ?? 30,
          signal,
        });
        failures = 0;
      } catch (err) {
        if (signal.aborted) return null;
        // An agent that stops answering may have lost its VM: a listing tells.
        if (this.vmLost(t.cellName)) return 'lost';
        if (failures++ % 10 === 0)
          this.o.log.warn(
            { pod: t.key, cell: t.cellName, err: (err as Error).message },
            'cell status unavailable',
          );
        await sleep(systemClock, backoffMs(failures), signal);
        continue;
      }
      if (reply.uid !== t.uid) return null;
      if (reply.version === version) continue;
      version = reply.version;
      this.setStatus(t, statusFromAgent(reply, t.address!));
      await this.containerEvents(t, reply, seen);
      if (isTerminalPhase(reply.phase)) return reply;
    }
    return null;
  }

  /** Events for what a user asks "why is it not running": pull failures, crash loops, starts. */
  private async containerEvents(t: Tracked, reply: PodStatusReply, seen: Map<string, string>): Promise<void> {
    for (const c of [...reply.initContainerStatuses, ...reply.containerStatuses]) {
      const w = c.state.waiting;
      let mark: string | undefined;
      if (w?.reason && w.reason !== 'ContainerCreating' && w.reason !== 'PodInitializing') {
        mark = `waiting:${w.reason}:${w.message ?? ''}`;
        if (seen.get(c.name) !== mark)
          await this.o.events.record(
            t.pod,
            'Warning',
            w.reason,
            `container ${c.name}: ${w.message ?? w.reason}`,
          );
      } else if (c.state.running) {
        mark = `running:${c.restartCount}`;
        if (seen.get(c.name) !== mark)
          await this.o.events.record(t.pod, 'Normal', 'Started', `Started container ${c.name}`);
      }
      if (mark) seen.set(c.name, mark);
    }
  }

  /** Whether the latest listing shows the VM gone or stopped. */
  private vmLost(name: string): boolean {
    const { instances, at } = this.o.observer.snapshot();
    if (!at) return false;
    const vm = instances.find((i) => i.name === name);
    return !vm || vm.status === 'STOPPING' || vm.status === 'TERMINATED' || vm.status === 'STOPPED';
  }

  private async cellStarted(t: Tracked, r: CellRecord, vm: CellInstance): Promise<void> {
    if (!this.o.meter) return;
    const shape = await this.shapeOf(vm.machineType);
    try {
      await this.o.meter.cellStarted({
        cellName: t.cellName,
        podUid: t.uid,
        namespace: r.namespace,
        podName: r.podName,
        machineType: vm.machineType,
        zone: vm.zone,
        spot: vm.capacityType === 'spot',
        vcpus: shape.vcpus,
        memoryMiB: shape.memoryMiB,
        gpus: Math.max(shape.gpus, cellRequestFromPod(t.pod).request.gpus),
        at: new Date(),
      });
    } catch (err) {
      this.o.log.warn({ cell: t.cellName, err: (err as Error).message }, 'usage meter refused cellStarted');
    }
  }

  private async shapeOf(machineType: string): Promise<{ vcpus: number; memoryMiB: number; gpus: number }> {
    const custom = customShape(machineType);
    if (custom) return { ...custom, gpus: 0 };
    this.shapes ??= this.o.cloud
      .instanceTypes()
      .then(
        (types) =>
          new Map(
            types.map((s) => [s.name, { vcpus: s.vcpus, memoryMiB: s.memoryMiB, gpus: s.gpus?.count ?? 0 }]),
          ),
      );
    try {
      return (await this.shapes).get(machineType) ?? { vcpus: 0, memoryMiB: 0, gpus: 0 };
    } catch {
      this.shapes = undefined;
      return { vcpus: 0, memoryMiB: 0, gpus: 0 };
    }
  }

  /** What a failure means for the pod: events, a status message, and the retry delay (null: give up). */
  private async failed(t: Tracked, err: unknown, failures: number): Promise<number | null> {
    const backoff = backoffMs(failures);
    const e = err as Error;
    if (err instanceof CloudError) {
      const message = `${e.message}; ${err.action}`;
      await this.o.events.record(t.pod, 'Warning', WAITING_REASONS.cellCreateFailed, message);
      this.setStatus(t, waitingStatus(t.pod, WAITING_REASONS.cellCreateFailed, message));
      await this.o.cells.mutate(t.uid, () => ({ message: e.message })).catch(() => undefined);
      if (err instanceof InvalidRequestError) return null;
      const hinted = (err as { retryAfterMs?: number }).retryAfterMs;
      return Math.max(backoff, Math.min(hinted ?? backoff, 180_000));
    }
    if (err instanceof DispatchConfigError) {
      const message = `${err.field}: ${err.message}`;
      await this.o.events.record(t.pod, 'Warning', 'FailedDispatch', message);
      this.setStatus(
        t,
        waitingStatus(t.pod, WAITING_REASONS.configError, message, {
          ...(t.address ? { address: t.address } : {}),
        }),
      );
      return backoff;
    }
    if (err instanceof CellAgentError && err.code === 422) {
      // The agent refuses the pod as written; sending it again would be refused again.
      await this.o.events.record(t.pod, 'Warning', WAITING_REASONS.unsupported, err.message);
      this.setStatus(
        t,
        waitingStatus(t.pod, WAITING_REASONS.unsupported, err.message, {
          ...(t.address ? { address: t.address } : {}),
        }),
      );
      return null;
    }
    this.o.log.warn({ pod: t.key, cell: t.cellName, err: e.message }, 'cell step failed; retrying');
    return backoff;
  }

  /**
   * Deletes the pod's cell: with `stop`, the agent stops the pod with its grace period first; then
   * the VM is deleted, the listing confirms it gone, the meter hears of it and the record goes.
   */
  private async removeCell(
    t: Tracked,
    opts: { stop: boolean; graceSeconds: number; fromRun?: boolean },
  ): Promise<void> {
    if (!opts.fromRun) {
      t.abort.abort();
      await t.run;
    }
    let cur = await this.o.cells.get(t.uid);
    if (!cur) {
      await t.client?.close();
      this.untrack(t);
      return;
    }
    if (opts.stop && t.client && (cur.record.state === 'dispatched' || cur.record.state === 'terminating')) {
      await this.o.cells.mutate(t.uid, (r) => (r.state === 'dispatched' ? { state: 'terminating' } : null));
      await this.stopPod(t, opts.graceSeconds);
    }
    cur = await this.o.cells.mutate(t.uid, (r) => (r.state === 'deleting' ? null : { state: 'deleting' }));
    if (!cur) return;
    const vm = await this.findVm(t.cellName, cur.record.zone);
    if (vm) {
      await this.o.cloud.delete({ name: vm.name, zone: vm.zone });
      await this.waitGone(t.cellName);
    }
    try {
      await this.o.meter?.cellStopped({ cellName: t.cellName, at: new Date() });
    } catch (err) {
      this.o.log.warn({ cell: t.cellName, err: (err as Error).message }, 'usage meter refused cellStopped');
    }
    for (;;) {
      const last = await this.o.cells.get(t.uid);
      if (!last) break;
      try {
        await this.o.cells.delete(last);
        break;
      } catch {
        // changed under us: read again
      }
    }
    t.dispatched = false;
    await t.client?.close();
    t.client = undefined;
    this.untrack(t);
    await this.o.events.record(t.pod, 'Normal', 'CellDeleted', `deleted VM ${t.cellName}`);
    this.o.log.info({ pod: t.key, cell: t.cellName }, 'cell deleted');
  }

  /** Asks the agent to stop the pod and waits for its containers to end (grace period plus a margin). */
  private async stopPod(t: Tracked, graceSeconds: number): Promise<void> {
    const deadline = Date.now() + (graceSeconds + 15) * 1000;
    try {
      let reply = await t.client!.deletePod(graceSeconds);
      while (!reply.deleted && Date.now() < deadline) {
        const wait = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
        reply = await t.client!.getStatus({ after: reply.version, wait });
      }
      if (t.address) this.setStatus(t, statusFromAgent(reply, t.address));
    } catch (err) {
      // An agent that cannot be reached has nothing left to stop gracefully; the VM goes anyway.
      this.o.log.warn({ pod: t.key, cell: t.cellName, err: (err as Error).message }, 'graceful stop failed');
    }
  }

  private async findVm(
    name: string,
    zone: string | undefined,
  ): Promise<{ name: string; zone: string } | null> {
    if (zone) return { name, zone };
    const vm = (await this.o.observer.refresh()).find((i) => i.name === name);
    return vm ? { name, zone: vm.zone } : null;
  }

  /** Waits until a listing no longer shows the VM (the cloud's delete does not wait for it). */
  private async waitGone(name: string): Promise<void> {
    const deadline = Date.now() + 300_000;
    for (;;) {
      const list = await this.o.observer.refresh();
      const vm = list.find((i) => i.name === name);
      if (!vm || vm.status === 'TERMINATED') return;
      if (Date.now() > deadline) throw new Error(`VM ${name} still exists 300s after its delete`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
