import type { Logger } from '../../lib/log.ts';
import type { EmulatorConfig } from './config.ts';
import type { Hypervisor } from './hypervisor.ts';
import type { MachineCatalog } from './machine-catalog.ts';
import type { OperationEngine, OperationResource } from './operations.ts';
import type { RegionalQuota } from './quota.ts';

/** An API resource as stored: plain JSON, returned as is. */
export type Resource = Record<string, unknown> & { name: string; id: string; selfLink: string };

export interface InstanceRecord {
  res: Resource & {
    status: string;
    labels: Record<string, string>;
    labelFingerprint: string;
    metadata: { kind: string; fingerprint: string; items?: { key: string; value?: string }[] };
    networkInterfaces: Record<string, unknown>[];
    disks: Record<string, unknown>[];
  };
  zone: string;
  family: string;
  /** What the instance holds of the regional quota while it exists. */
  demand: Record<string, number>;
  ip: string;
  /** Set once a delete has started; a second delete waits on it. */
  deleting?: Promise<void>;
  /** False until the insert's capacity and quota checks passed. */
  admitted: boolean;
}

export interface DiskRecord {
  res: Resource & { users?: string[]; sizeGb: string; status: string; labels: Record<string, string> };
  zone: string;
  /** The directory holding the disk's content (the cell agent's data dir when it is a boot disk). */
  dir: string;
  demand: Record<string, number>;
}

export interface SnapshotRecord {
  res: Resource & { status: string };
  dir: string;
}

/** Counters of API calls, for /admin/calls and Prometheus. */
export interface CallCounters {
  record(method: string, code: number): void;
}

/** Everything a route handler works with. `cfg` is live: the admin endpoint changes it. */
export interface EmulatorContext {
  cfg: EmulatorConfig;
  project: string;
  region: string;
  catalog: MachineCatalog;
  ops: OperationEngine;
  quota: RegionalQuota;
  hypervisor: Hypervisor;
  log: Logger;
  stateDir: string;
  instances: Map<string, InstanceRecord>;
  disks: Map<string, DiskRecord>;
  snapshots: Map<string, SnapshotRecord>;
  firewalls: Map<string, Resource>;
  /** requestId → the operation the first call with it started. */
  requestIds: Map<string, OperationResource>;
}
