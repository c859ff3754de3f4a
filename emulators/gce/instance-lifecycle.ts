import { createDisk, destroyDisk, type NewDisk } from './disk-store.ts';
import { OperationFailure } from './errors.ts';
import { timestamp } from './links.ts';
import type { EmulatorContext, InstanceRecord } from './state.ts';

/** Disks an insert creates, prepared before the instance is admitted. */
export interface PendingDisk extends NewDisk {
  attachIndex: number;
}

const isSpot = (rec: InstanceRecord) => {
  const s = rec.res.scheduling as { provisioningModel?: string; preemptible?: boolean } | undefined;
  return s?.provisioningModel === 'SPOT' || s?.preemptible === true;
};

const gone = (ctx: EmulatorContext, rec: InstanceRecord) =>
  rec.deleting !== undefined || ctx.instances.get(`${rec.zone}/${rec.res.name}`) !== rec;

/** Stockout first (capacity), then quota, as GCE reports them: inside the insert operation. */
function admit(ctx: EmulatorContext, rec: InstanceRecord, newDisks: PendingDisk[]): void {
  const model = isSpot(rec) ? 'SPOT' : 'STANDARD';
  const out = ctx.cfg.faults.stockouts.find(
    (s) =>
      (s.zone === rec.zone || s.zone === '*') &&
      (s.family === rec.family || s.family === '*') &&
      (!s.provisioningModel || s.provisioningModel === model),
  );
  if (out) {
    throw new OperationFailure(
      'ZONE_RESOURCE_POOL_EXHAUSTED',
      `The zone 'projects/${ctx.project}/zones/${rec.zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.`,
      503,
    );
  }
  const demand: Record<string, number> = { ...rec.demand };
  for (const d of newDisks) {
    const metric = d.type === 'pd-standard' ? 'DISKS_TOTAL_GB' : 'SSD_TOTAL_GB';
    demand[metric] = (demand[metric] ?? 0) + d.sizeGb;
  }
  ctx.quota.reserve(demand);
  rec.admitted = true;
}

/**
 * The insert operation's work: admission, disks, PROVISIONING → STAGING (operation DONE), then
 * RUNNING after the staging delay, when the hypervisor boots the cell.
 */
export async function runInsert(
  ctx: EmulatorContext,
  rec: InstanceRecord,
  newDisks: PendingDisk[],
): Promise<void> {
  if (gone(ctx, rec)) return;
  try {
    admit(ctx, rec, newDisks);
  } catch (e) {
    ctx.instances.delete(`${rec.zone}/${rec.res.name}`);
    ctx.hypervisor.pool.release(rec.ip);
    throw e;
  }
  for (const d of newDisks) {
    const disk = createDisk(ctx, d);
    // The disk's quota was taken with the instance's; keep it with the disk so a later delete returns it.
    disk.res.users = [rec.res.selfLink];
  }
  await ctx.ops.sleep(ctx.cfg.delays.provisioningMs);
  if (gone(ctx, rec)) return;
  rec.res.status = 'STAGING';
  void bootLater(ctx, rec);
}

async function bootLater(ctx: EmulatorContext, rec: InstanceRecord): Promise<void> {
  await ctx.ops.sleep(ctx.cfg.delays.stagingMs + ctx.cfg.faults.bootDelayMs);
  if (gone(ctx, rec)) return;
  const boot = rec.res.disks.find((d) => d.boot === true);
  const disk = boot ? ctx.disks.get(`${rec.zone}/${String(boot.source).split('/').pop()}`) : undefined;
  const agentConfig = rec.res.metadata.items?.find((i) => i.key === 'kip-cell-agent-config')?.value;
  // The machine's network exists before anyone sees RUNNING, so a client that connects at once
  // reaches the address instead of stalling on ARP for a namespace still being made.
  try {
    await ctx.hypervisor.boot({
      zone: rec.zone,
      name: rec.res.name,
      ip: rec.ip,
      dataDir: disk?.dir ?? ctx.stateDir,
      agentConfig,
    });
  } catch (e) {
    ctx.log.error({ err: e, instance: rec.res.name }, 'cell boot failed');
    rec.res.statusMessage = `cell boot failed: ${(e as Error).message}`;
  }
  if (gone(ctx, rec)) return;
  rec.res.status = 'RUNNING';
  rec.res.lastStartTimestamp = timestamp();
}

/** Stops the machine and gives back the instance's quota (a TERMINATED instance holds none). */
async function halt(ctx: EmulatorContext, rec: InstanceRecord): Promise<void> {
  await ctx.hypervisor.stop(rec.zone, rec.res.name);
  if (rec.admitted) {
    ctx.quota.release(rec.demand);
    rec.admitted = false;
  }
}

/** The delete operation's work: STOPPING, the cell stops, then the instance and its auto-delete disks go. */
export function runDelete(ctx: EmulatorContext, rec: InstanceRecord): Promise<void> {
  if (rec.deleting) return rec.deleting;
  rec.deleting = (async () => {
    rec.res.status = 'STOPPING';
    await halt(ctx, rec);
    await ctx.ops.sleep(ctx.cfg.delays.deleteMs);
    ctx.instances.delete(`${rec.zone}/${rec.res.name}`);
    ctx.hypervisor.pool.release(rec.ip);
    for (const att of rec.res.disks) {
      const disk = ctx.disks.get(`${rec.zone}/${String(att.source).split('/').pop()}`);
      if (!disk) continue;
      disk.res.users = (disk.res.users ?? []).filter((u) => u !== rec.res.selfLink);
      if (disk.res.users.length === 0) delete disk.res.users;
      if (att.autoDelete === true) destroyDisk(ctx, disk);
    }
  })();
  return rec.deleting;
}

/**
 * Spot preemption, as the admin endpoint triggers it: the machine stops; with
 * instanceTerminationAction DELETE the instance is deleted, otherwise it stays TERMINATED.
 */
export async function preempt(ctx: EmulatorContext, rec: InstanceRecord): Promise<'deleted' | 'terminated'> {
  const action = (rec.res.scheduling as { instanceTerminationAction?: string } | undefined)
    ?.instanceTerminationAction;
  if (action === 'DELETE') {
    await runDelete(ctx, rec);
    return 'deleted';
  }
  rec.res.status = 'STOPPING';
  await halt(ctx, rec);
  rec.res.status = 'TERMINATED';
  rec.res.lastStopTimestamp = timestamp();
  return 'terminated';
}

export { isSpot };
