import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { invalidField } from './errors.ts';
import { link, newFingerprint, newId, timestamp, zonePath } from './links.ts';
import type { DiskRecord, EmulatorContext, SnapshotRecord } from './state.ts';

export const DISK_TYPES = ['pd-standard', 'pd-balanced', 'pd-ssd', 'pd-extreme'];

/** Which regional quota a disk type's size counts against. */
export function diskQuota(type: string, sizeGb: number): Record<string, number> {
  return type === 'pd-standard' ? { DISKS_TOTAL_GB: sizeGb } : { SSD_TOTAL_GB: sizeGb };
}

/** Reads a disk type given as a bare name or a `zones/Z/diskTypes/T` reference. */
export function diskTypeName(ref: unknown, field: string): string {
  if (ref === undefined || ref === null || ref === '') return 'pd-standard';
  const name = String(ref).split('/').pop()!;
  if (!DISK_TYPES.includes(name))
    throw invalidField(
      field,
      ref,
      `Disk type '${name}' does not exist. Use one of ${DISK_TYPES.join(', ')}.`,
    );
  return name;
}

export interface NewDisk {
  zone: string;
  name: string;
  sizeGb: number;
  type: string;
  labels?: Record<string, string>;
  sourceImage?: string;
  sourceImageId?: string;
  snapshot?: SnapshotRecord;
  description?: string;
}

/** Creates the disk record and its content directory (a copy of the snapshot's, when restoring). */
export function createDisk(ctx: EmulatorContext, d: NewDisk): DiskRecord {
  const dir = join(ctx.stateDir, 'disks', d.zone, d.name);
  rmSync(dir, { recursive: true, force: true });
  if (d.snapshot) cpSync(d.snapshot.dir, dir, { recursive: true });
  else mkdirSync(dir, { recursive: true });
  const rec: DiskRecord = {
    zone: d.zone,
    dir,
    demand: diskQuota(d.type, d.sizeGb),
    res: {
      kind: 'compute#disk',
      id: newId(),
      creationTimestamp: timestamp(),
      name: d.name,
      ...(d.description ? { description: d.description } : {}),
      sizeGb: String(d.sizeGb),
      zone: link(zonePath(ctx.project, d.zone)),
      status: 'READY',
      selfLink: link(`${zonePath(ctx.project, d.zone)}/disks/${d.name}`),
      type: link(`${zonePath(ctx.project, d.zone)}/diskTypes/${d.type}`),
      labels: d.labels ?? {},
      labelFingerprint: newFingerprint(),
      physicalBlockSizeBytes: '4096',
      architecture: 'X86_64',
      ...(d.sourceImage ? { sourceImage: d.sourceImage, sourceImageId: d.sourceImageId } : {}),
      ...(d.snapshot ? { sourceSnapshot: d.snapshot.res.selfLink, sourceSnapshotId: d.snapshot.res.id } : {}),
    },
  };
  ctx.disks.set(`${d.zone}/${d.name}`, rec);
  return rec;
}

/** Removes the disk, its content and its quota. */
export function destroyDisk(ctx: EmulatorContext, rec: DiskRecord): void {
  ctx.disks.delete(`${rec.zone}/${rec.res.name}`);
  ctx.quota.release(rec.demand);
  rmSync(rec.dir, { recursive: true, force: true });
}
