/**
 * Standby cells: booted, agent-healthy VMs kept per configured shape (`cells.standby`), so a pod
 * whose chosen shape matches one is dispatched at once instead of waiting for a VM to boot. Each
 * standby cell is recorded in etcd (`standby/<VM name>`) before its insert, so the orphan
 * collector counts it as owned and a restart re-adopts it instead of booting another. A claim
 * moves the record to the pod's cell record in one etcd transaction (two pods never get one cell);
 * the VM is then relabelled for the pod and the pool replenished in the background.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CellAgentClient } from '../../lib/cell-agent-client.ts';
import type { Logger } from '../../lib/log.ts';
import { waitAtMost } from '../clock.ts';
import type {
  CellInstance,
  CellPlacement,
  CloudProvider,
  PodIdentity,
  ShapeRequest,
} from '../cloud/cloud-provider.ts';
import type { InstanceObserver } from '../cloud/instance-observer.ts';
import { LABELS, cellLabels, standbyInstanceName } from '../cloud/instance-names.ts';
import type { StoredCell } from '../state/cells.ts';
import type { StandbyStore, StoredStandby } from '../state/standby.ts';

/** One configured standby shape (`cells.standby[]`). */
export interface StandbyShape {
  machineType: string;
  count: number;
  spot?: boolean;
}

export interface StandbyPoolOptions {
  cloud: CloudProvider;
  observer: InstanceObserver;
  store: StandbyStore;
  clusterId: string;
  shapes: StandbyShape[];
  /** The `kip-cell-agent-config` document for a cell of this VM name (its certificate names it). */
  bootstrap: (cellName: string) => Promise<string>;
  /** A client for the cell's agent, dialled by IP and verified by the cell's name. */
  agentClient: (cellName: string, address: string) => CellAgentClient;
  log: Logger;
  /** Registers `kip_standby_cells_ready` and `kip_standby_cells_claimed_total`. */
  registry?: Registry;
  /** How long a standby VM may take to run and its agent to answer. Default 10 minutes. */
  bootTimeoutMs?: number;
  /** How often the pool is checked against the config. Default 5 s. */
  intervalMs?: number;
  /** After a failed boot, how long the shape waits before another try. Default 30 s. */
  retryDelayMs?: number;
}

const shapeKey = (machineType: string, spot: boolean) => `${machineType}/${spot ? 'spot' : 'on-demand'}`;

export class StandbyPool {
  private readonly tasks = new Map<string, Promise<void>>();
  private readonly failedAt = new Map<string, number>();
  private readonly abort = new AbortController();
  private reconciling: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly ready?: Gauge<'machine_type' | 'capacity_type'>;
  private readonly claimed?: Counter<'machine_type' | 'capacity_type'>;

  constructor(private readonly o: StandbyPoolOptions) {
    if (o.registry) {
      this.ready = new Gauge({
        name: 'kip_standby_cells_ready',
        help: 'Standby cells booted and agent-healthy, waiting for a pod, by shape',
        labelNames: ['machine_type', 'capacity_type'],
        registers: [o.registry],
      });
      this.claimed = new Counter({
        name: 'kip_standby_cells_claimed_total',
        help: 'Standby cells handed to pods, by shape',
        labelNames: ['machine_type', 'capacity_type'],
        registers: [o.registry],
      });
      for (const s of o.shapes) {
        const labels = { machine_type: s.machineType, capacity_type: s.spot ? 'spot' : 'on-demand' };
        this.ready.set(labels, 0);
        this.claimed.inc(labels, 0);
      }
    }
  }

  /** Whether any standby shape is configured. */
  get enabled(): boolean {
    return this.o.shapes.some((s) => s.count > 0);
  }

  /** Adopts recorded standby cells, boots what is missing, and keeps checking on an interval. */
  start(): void {
    const tick = () => {
      this.replenish();
      this.timer = setTimeout(tick, this.o.intervalMs ?? 5000);
      this.timer.unref();
    };
    tick();
  }

  /** Stops the checks and the boot tasks; standby VMs and records stay for the next start. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.abort.abort();
    await waitAtMost(Promise.allSettled([this.reconciling, ...this.tasks.values()]), 5000);
  }

  /** Checks the pool against the config in the background (one check at a time). */
  replenish(): void {
    if (this.abort.signal.aborted) return;
    if (this.reconciling) {
      this.again = true;
      return;
    }
    this.reconciling = this.reconcile()
      .catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'standby pool check failed'))
      .finally(() => {
        this.reconciling = undefined;
        if (this.again) {
          this.again = false;
          this.replenish();
        }
      });
  }

  /**
   * Claims a ready standby cell for the pod when the shape the cloud layer would choose for its
   * request (the first offering of its plan) matches one. Returns the pod's new cell record, or
   * null (nothing matches, or the pod already has a cell record).
   */
  async claim(
    pod: PodIdentity,
    request: ShapeRequest,
    placement?: CellPlacement,
  ): Promise<StoredCell | null> {
    if (!this.enabled || !this.o.cloud.plan) return null;
    // Standby cells have no GPUs attached and the provider's default placement: a pod asking for
    // either gets its own VM rather than one that only looks like its shape.
    if (request.gpus > 0 || (placement && !isDefaultPlacement(placement))) return null;
    let first;
    try {
      first = (await this.o.cloud.plan(request))[0];
    } catch {
      return null; // the normal path reports why no shape fits
    }
    if (!first) return null;
    const spot = first.capacityType === 'spot';
    const key = shapeKey(first.machineType, spot);
    const candidates = (await this.o.store.list()).filter(
      (s) => s.record.state === 'ready' && shapeKey(s.record.machineType, s.record.spot) === key,
    );
    for (const c of candidates) {
      const stored = await this.o.store.claim(c, {
        podUid: pod.uid,
        namespace: pod.namespace,
        podName: pod.name,
      });
      if (!stored) continue; // another pod got it first, or this pod has a record: try the next
      this.claimed?.inc({ machine_type: c.record.machineType, capacity_type: spot ? 'spot' : 'on-demand' });
      this.o.log.info({ pod: `${pod.namespace}/${pod.name}`, cell: c.record.name }, 'standby cell claimed');
      void this.relabel(c.record.name, c.record.zone, pod);
      this.replenish();
      return stored;
    }
    return null;
  }

  /** Gives a claimed VM its pod's labels (retried: until then the pod's cell record owns it). */
  private async relabel(name: string, zone: string | undefined, pod: PodIdentity): Promise<void> {
    if (!this.o.cloud.setLabels || !zone) return;
    for (let i = 0; i < 5 && !this.abort.signal.aborted; i++) {
      try {
        await this.o.cloud.setLabels({ name, zone }, cellLabels(this.o.clusterId, pod.uid, pod));
        return;
      } catch (err) {
        this.o.log.warn(
          { cell: name, err: (err as Error).message },
          'relabelling claimed standby cell failed',
        );
        await new Promise((r) => setTimeout(r, 1000 * 2 ** i).unref());
      }
    }
  }

  private async reconcile(): Promise<void> {
    const records = await this.o.store.list();
    const wanted = new Map(this.o.shapes.map((s) => [shapeKey(s.machineType, !!s.spot), s.count]));
    const have = new Map<string, StoredStandby[]>();
    for (const r of records) {
      const key = shapeKey(r.record.machineType, r.record.spot);
      have.set(key, [...(have.get(key) ?? []), r]);
    }
    const readyCounts = new Map<string, number>();
    for (const [key, list] of have) {
      const keep = wanted.get(key) ?? 0;
      // Ready ones are kept first; cells beyond the configured count go (config lowered).
      const sorted = [...list].sort(
        (a, b) => Number(b.record.state === 'ready') - Number(a.record.state === 'ready'),
      );
      for (const [i, r] of sorted.entries()) {
        if (i >= keep) {
          // A booting one is left to finish (then discarded on a later check); a ready one's watch
          // ends when its record goes.
          if (r.record.state === 'ready' || !this.tasks.has(r.record.name))
            await this.discard(r, 'beyond the configured standby count');
          continue;
        }
        if (r.record.state === 'ready') readyCounts.set(key, (readyCounts.get(key) ?? 0) + 1);
        if (!this.tasks.has(r.record.name)) this.follow(r);
      }
    }
    for (const s of this.o.shapes) {
      const key = shapeKey(s.machineType, !!s.spot);
      const missing = s.count - (have.get(key)?.length ?? 0);
      if (missing <= 0) continue;
      if (Date.now() - (this.failedAt.get(key) ?? 0) < (this.o.retryDelayMs ?? 30_000)) continue;
      for (let i = 0; i < missing; i++) {
        const name = standbyInstanceName(this.o.clusterId);
        const r = await this.o.store.create({ name, machineType: s.machineType, spot: !!s.spot });
        this.o.log.info({ cell: name, machineType: s.machineType, spot: !!s.spot }, 'booting standby cell');
        this.follow(r);
      }
    }
    for (const s of this.o.shapes) {
      const key = shapeKey(s.machineType, !!s.spot);
      this.ready?.set(
        { machine_type: s.machineType, capacity_type: s.spot ? 'spot' : 'on-demand' },
        readyCounts.get(key) ?? 0,
      );
    }
  }

  /** Runs one standby cell's boot from its recorded state; a failure discards it. */
  private follow(r: StoredStandby): void {
    const name = r.record.name;
    const task = this.boot(r)
      .catch(async (err: unknown) => {
        if (this.abort.signal.aborted) return;
        this.o.log.warn({ cell: name, err: (err as Error).message }, 'standby cell failed; discarding it');
        this.failedAt.set(shapeKey(r.record.machineType, r.record.spot), Date.now());
        const cur = await this.o.store.get(name).catch(() => null);
        if (cur) await this.discard(cur, 'boot failed').catch(() => undefined);
      })
      .finally(() => {
        this.tasks.delete(name);
        this.replenish();
      });
    this.tasks.set(name, task);
  }

  private async boot(start: StoredStandby): Promise<void> {
    const signal = this.abort.signal;
    let cur: StoredStandby | null = start;
    const timeout = this.o.bootTimeoutMs ?? 600_000;
    const deadline = Date.parse(start.record.createdAt) + timeout;
    while (cur && !signal.aborted) {
      const r: StoredStandby['record'] = cur.record;
      if (r.state === 'creating') {
        const inst = await this.o.cloud.create({
          cellId: r.name,
          standby: { name: r.name },
          pod: { namespace: '', name: '', uid: r.name },
          request: { cpuMillis: 0, memoryBytes: 0, gpus: 0, instanceType: r.machineType, spot: r.spot },
          placement: { networkTags: [] },
          bootstrap: await this.o.bootstrap(r.name),
        });
        this.o.observer.requestRefresh();
        const vm = await this.o.observer.waitFor(
          r.name,
          (c) => c.status === 'RUNNING' && !!c.internalIp,
          Math.max(1000, deadline - Date.now()),
        );
        if (!(await this.o.store.update(cur, { state: 'booting', zone: inst.zone, address: vm.internalIp! })))
          return; // claimed or discarded meanwhile
      } else if (r.state === 'booting') {
        const client = this.o.agentClient(r.name, r.address!);
        try {
          for (;;) {
            if (signal.aborted) return;
            try {
              await client.healthz();
              break;
            } catch (err) {
              if (Date.now() > deadline)
                throw new Error(`the cell agent on ${r.name} did not answer within ${timeout / 1000}s`, {
                  cause: err,
                });
              await new Promise((res) => setTimeout(res, 250));
            }
          }
        } finally {
          await client.close();
        }
        if (!(await this.o.store.update(cur, { state: 'ready' }))) return;
        this.o.log.info({ cell: r.name, machineType: r.machineType }, 'standby cell ready');
        this.replenish();
      } else {
        // Ready: watched until claimed (record gone) or its VM is lost (preempted, deleted outside Kip).
        for (;;) {
          if (signal.aborted) return;
          await new Promise((res) => setTimeout(res, this.o.intervalMs ?? 5000).unref());
          const now = await this.o.store.get(r.name);
          if (!now) return;
          const { instances, at } = this.o.observer.snapshot();
          const vm = instances.find((i) => i.name === r.name);
          if (at && (!vm || vm.status !== 'RUNNING'))
            throw new Error(`standby VM ${r.name} is gone or stopped`);
        }
      }
      cur = await this.o.store.get(start.record.name);
    }
  }

  /**
   * Deletes a standby cell's record, then its VM. The record goes first (compare-and-swap) so a
   * cell claimed meanwhile is never deleted; a crash in between leaves an unrecorded VM, which the
   * orphan collector deletes.
   */
  private async discard(r: StoredStandby, why: string): Promise<void> {
    if (!(await this.o.store.delete(r))) return;
    let zone = r.record.zone;
    if (!zone) zone = (await this.o.observer.refresh()).find((i) => i.name === r.record.name)?.zone;
    if (zone) await this.o.cloud.delete({ name: r.record.name, zone });
    this.o.log.info({ cell: r.record.name, why }, 'standby cell deleted');
  }
}

/** Whether a pod's placement annotations leave every provider default as it is. */
function isDefaultPlacement(p: CellPlacement): boolean {
  return (
    p.privateIpOnly === undefined &&
    p.volumeSizeGb === undefined &&
    p.networkTags.length === 0 &&
    p.serviceAccount === undefined
  );
}

/** Whether a VM carries the standby label. */
export const isStandbyVm = (vm: CellInstance): boolean => vm.labels[LABELS.standby] === 'true';
