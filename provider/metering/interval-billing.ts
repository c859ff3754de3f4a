/**
 * The arithmetic of one billing interval, without I/O: which part of each cell's running time falls
 * due, summed per label group, turned into whole units with the remainders carried forward.
 */
import type { MetricReport } from '../../lib/usage-reporter-client.ts';
import type { CellStartedUsage } from '../pods/types.ts';

/** The metric ids the provider reports (docs/metering.md); each is an int64 DELTA metric. */
export const METRICS = {
  cellSeconds: 'cell_seconds',
  vcpuSeconds: 'vcpu_seconds',
  memoryGibSeconds: 'memory_gib_seconds',
  gpuSeconds: 'gpu_seconds',
} as const;

/**
 * A cell as the ledger keeps it while it is metered: the started usage, with its time as
 * `startedAt`. Times are milliseconds since the epoch.
 */
export interface MeteredCell extends Omit<CellStartedUsage, 'at'> {
  /** The machine family label (`e2`, `n2`, `a2`), derived from the machine type. */
  family: string;
  startedAt: number;
  /** Set once the cell's VM is gone. */
  stoppedAt?: number;
  /**
   * The ledger's interval sequence number when the cell was recorded. A cell recorded after
   * interval `seq` closed has not been billed at all, however early it started.
   */
  sinceSeq: number;
}

/** Usage not yet reported for one label group, in unit-milliseconds (negative: billed ahead, or a credit). */
export interface GroupCarry {
  cellMs: number;
  vcpuMs: number;
  memoryMiBMs: number;
  gpuMs: number;
}

/** Where billing stands: the last closed interval and the remainders it left. */
export interface BillingPosition {
  seq: number;
  /** Every cell known at the close of `seq` is billed up to here. */
  billedTo: number;
  /** Per label group key (see groupKey). */
  carry: Record<string, GroupCarry>;
}

export interface IntervalResult {
  /** The reports to post, whole units only, zero values left out. */
  reports: MetricReport[];
  /** The new position (seq + 1, billedTo = the interval's end). */
  position: BillingPosition;
  /** Cells whose final interval this was: their record can go. */
  settled: string[];
}

/**
 * The family label of a machine type: its first dash-separated part (`n2-standard-4` → `n2`,
 * `n2-custom-4-8192` → `n2`); N1 custom shapes (`custom-4-8192`) are `n1`.
 */
export function machineFamily(machineType: string): string {
  const first = machineType.split('-')[0]!.toLowerCase();
  return first === 'custom' ? 'n1' : first;
}

export function groupKey(family: string, spot: boolean): string {
  return `${family}/${spot ? 'spot' : 'standard'}`;
}

function parseGroupKey(key: string): { family: string; spot: boolean } {
  const i = key.lastIndexOf('/');
  return { family: key.slice(0, i), spot: key.slice(i + 1) === 'spot' };
}

/** How long a cell ran, in ms, up to `until` (0 before it started). */
function runningMs(cell: MeteredCell, until: number): number {
  const end = Math.min(cell.stoppedAt ?? until, until);
  return Math.max(0, end - cell.startedAt);
}

/**
 * Closes the interval (position.billedTo, end]. Each cell's delta is what it has run up to `end`
 * minus what earlier intervals billed it; a stop learned after an interval billed past it turns into
 * a credit against the group's next usage.
 */
export function closeInterval(position: BillingPosition, cells: MeteredCell[], end: number): IntervalResult {
  const carry: Record<string, GroupCarry> = {};
  for (const [k, c] of Object.entries(position.carry)) carry[k] = { ...c };
  const settled: string[] = [];
  for (const cell of cells) {
    // Billed before: nothing if recorded after the last close, else everything up to billedTo
    // (a cell whose stop was known at a close is settled then, so its stop was not known).
    const before =
      cell.sinceSeq < position.seq ? runningMs({ ...cell, stoppedAt: undefined }, position.billedTo) : 0;
    const delta = runningMs(cell, end) - before;
    if (cell.stoppedAt !== undefined && cell.stoppedAt <= end) settled.push(cell.cellName);
    if (delta === 0) continue;
    const key = groupKey(cell.family, cell.spot);
    const c = (carry[key] ??= { cellMs: 0, vcpuMs: 0, memoryMiBMs: 0, gpuMs: 0 });
    c.cellMs += delta;
    c.vcpuMs += delta * cell.vcpus;
    c.memoryMiBMs += delta * cell.memoryMiB;
    c.gpuMs += delta * cell.gpus;
  }
  const reports: MetricReport[] = [];
  const startTime = new Date(position.billedTo).toISOString();
  const endTime = new Date(end).toISOString();
  for (const key of Object.keys(carry).sort()) {
    const c = carry[key]!;
    const { family, spot } = parseGroupKey(key);
    const labels = { machine_family: family, spot: String(spot) };
    // Nearest whole unit, the difference carried (possibly negative): what is billed never strays
    // more than half a unit from the usage, even after a group's last cell.
    const take = (name: string, field: keyof GroupCarry, perUnit: number) => {
      const units = Math.round(c[field] / perUnit);
      if (units <= 0) return;
      c[field] -= units * perUnit;
      reports.push({ name, startTime, endTime, value: { int64Value: units }, labels });
    };
    take(METRICS.cellSeconds, 'cellMs', 1000);
    take(METRICS.vcpuSeconds, 'vcpuMs', 1000);
    take(METRICS.memoryGibSeconds, 'memoryMiBMs', 1024 * 1000);
    take(METRICS.gpuSeconds, 'gpuMs', 1000);
    if (c.cellMs === 0 && c.vcpuMs === 0 && c.memoryMiBMs === 0 && c.gpuMs === 0) delete carry[key];
  }
  return { reports, position: { seq: position.seq + 1, billedTo: end, carry }, settled };
}
