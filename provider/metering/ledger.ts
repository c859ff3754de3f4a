/**
 * The usage ledger in etcd (`<prefix>metering/`). It is what makes a provider restart neither lose
 * nor double-bill usage:
 * - `head`: the billing position (last closed interval, billed-to time, unit remainders per label
 *   group) and the cells the last close settled;
 * - `cells/<cellName>`: each metered cell's shape and start/stop times;
 * - `done/<cellName>`: a settled cell, so a cell reported again after a restart is not billed again;
 * - `intervals/<seq>`: the reports of one closed interval and how far posting got.
 * Closing an interval writes `head` and `intervals/<seq>` in one transaction, guarded by head's
 * revision, so an interval is recorded exactly once with the cells' advance.
 */
import { randomUUID } from 'node:crypto';
import type { Namespace } from 'etcd3';
import type { CellStartedUsage, CellStoppedUsage } from '../pods/types.ts';
import type { MetricReport } from '../../lib/usage-reporter-client.ts';
import { closeInterval, machineFamily, type BillingPosition, type MeteredCell } from './interval-billing.ts';

/** `head`: the billing position plus what the close that wrote it settled. */
export interface LedgerHead extends BillingPosition {
  /** Cells the last close billed to their end; their records are removed (idempotently). */
  settled: string[];
  /** Bumped by every cell write, so a close that read the cells before it retries. */
  version: number;
}

/**
 * One closed interval. Posting goes report by report: `inFlight` is written before a report is
 * sent and cleared with `next` after the reporter accepted it. A report found `inFlight` after a
 * crash or a lost reply may have been accepted: sent with its id, it is sent again under the same
 * id (billed once); sent without (a metric the reporter aggregates), it is moved to `unconfirmed`
 * (kept here for reconciliation) instead of risking a second bill.
 */
export interface IntervalRecord {
  seq: number;
  /** Unique id of the interval; each report's id is derived from it. */
  id: string;
  from: string;
  to: string;
  reports: { id: string; report: MetricReport }[];
  /** Index of the next report to send. */
  next: number;
  inFlight: number | null;
  /** Whether the report in flight went with its id (a resend is then de-duplicated). */
  inFlightWithId?: boolean;
  unconfirmed: number[];
  rejected: { index: number; error: string }[];
}

/** A stored interval with the etcd mod revision it was read at. */
export interface StoredInterval {
  record: IntervalRecord;
  revision: string;
}

/** Another writer changed the ledger since it was read (a second provider, or a retry). */
export class LedgerConflictError extends Error {
  constructor(what: string) {
    super(`usage ledger ${what} changed concurrently; re-read and retry`);
    this.name = 'LedgerConflictError';
  }
}

const seqKey = (seq: number) => `intervals/${String(seq).padStart(12, '0')}`;
/** A settled cell's tombstone is kept this long: longer than any restart re-reports a cell. */
const TOMBSTONE_MS = 7 * 24 * 3600 * 1000;

export class UsageLedger {
  private readonly ns: Namespace;
  /** Writes in this process go one at a time: they all guard on `head`, so in parallel they would only collide. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(ns: Namespace) {
    this.ns = ns.namespace('metering/');
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Reads `head`, creating it at `now` on first use. */
  async head(now: number): Promise<{ head: LedgerHead; revision: string }> {
    for (;;) {
      const { kvs } = await this.ns.get('head').exec();
      const kv = kvs[0];
      if (kv) return { head: JSON.parse(kv.value.toString()) as LedgerHead, revision: kv.mod_revision };
      const head: LedgerHead = { seq: 0, billedTo: now, carry: {}, settled: [], version: 0 };
      const r = await this.ns
        .if('head', 'Create', '==', 0)
        .then(this.ns.put('head').value(JSON.stringify(head)))
        .commit();
      if (r.succeeded) return { head, revision: r.header.revision };
    }
  }

  /**
   * Records a started cell. A cell already recorded or already settled is left alone, so a repeated
   * report (a provider restart) is billed once. Returns whether it was recorded now.
   */
  recordStart(u: CellStartedUsage, now: number): Promise<boolean> {
    return this.serial(() => this.recordStartNow(u, now));
  }

  private async recordStartNow(u: CellStartedUsage, now: number): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const { head, revision } = await this.head(now);
      const cell: MeteredCell = {
        cellName: u.cellName,
        podUid: u.podUid,
        namespace: u.namespace,
        podName: u.podName,
        machineType: u.machineType,
        zone: u.zone,
        family: machineFamily(u.machineType),
        spot: u.spot,
        vcpus: u.vcpus,
        memoryMiB: u.memoryMiB,
        gpus: u.gpus,
        startedAt: u.at.getTime(),
        sinceSeq: head.seq,
      };
      const r = await this.ns
        .if('head', 'Mod', '==', revision)
        .and(`cells/${u.cellName}`, 'Create', '==', 0)
        .and(`done/${u.cellName}`, 'Create', '==', 0)
        .then(
          this.ns.put(`cells/${u.cellName}`).value(JSON.stringify(cell)),
          this.ns.put('head').value(JSON.stringify({ ...head, version: head.version + 1 })),
        )
        .else(this.ns.get(`cells/${u.cellName}`), this.ns.get(`done/${u.cellName}`))
        .commit();
      if (r.succeeded) return true;
      const exists = r.responses.some((x) => (x.response_range?.kvs.length ?? 0) > 0);
      if (exists) return false;
      if (attempt >= 20) throw new LedgerConflictError('head');
    }
  }

  /**
   * Records a cell's stop. An unknown or settled cell is ignored (its VM never ran, or it was
   * billed already); a second stop keeps the first time. Returns whether it was recorded now.
   */
  recordStop(u: CellStoppedUsage, now: number): Promise<boolean> {
    return this.serial(() => this.recordStopNow(u, now));
  }

  private async recordStopNow(u: CellStoppedUsage, now: number): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const { head, revision } = await this.head(now);
      const { kvs } = await this.ns.get(`cells/${u.cellName}`).exec();
      const kv = kvs[0];
      if (!kv) return false;
      const cell = JSON.parse(kv.value.toString()) as MeteredCell;
      if (cell.stoppedAt !== undefined) return false;
      const r = await this.ns
        .if('head', 'Mod', '==', revision)
        .and(`cells/${u.cellName}`, 'Mod', '==', kv.mod_revision)
        .then(
          this.ns.put(`cells/${u.cellName}`).value(JSON.stringify({ ...cell, stoppedAt: u.at.getTime() })),
          this.ns.put('head').value(JSON.stringify({ ...head, version: head.version + 1 })),
        )
        .commit();
      if (r.succeeded) return true;
      if (attempt >= 20) throw new LedgerConflictError(`cell ${u.cellName}`);
    }
  }

  /** Every metered cell not yet removed. */
  async cells(): Promise<MeteredCell[]> {
    const all = await this.ns.getAll().prefix('cells/').strings();
    return Object.values(all).map((v) => JSON.parse(v) as MeteredCell);
  }

  /**
   * Removes settled cells' records, leaving a tombstone each. Idempotent; a crash midway leaves
   * them listed in `head.settled`, and the next close finishes the job before it bills.
   */
  async removeSettled(names: string[], now: number): Promise<void> {
    for (let i = 0; i < names.length; i += 40) {
      const ops = names
        .slice(i, i + 40)
        .flatMap((n) => [
          this.ns.delete().key(`cells/${n}`),
          this.ns.put(`done/${n}`).value(JSON.stringify({ at: now })),
        ]);
      await this.ns
        .if('head', 'Version', '>', 0)
        .then(...ops)
        .commit();
    }
  }

  /** Deletes tombstones older than a week. */
  async expireTombstones(now: number): Promise<number> {
    const all = await this.ns.getAll().prefix('done/').strings();
    let n = 0;
    for (const [key, v] of Object.entries(all)) {
      if ((JSON.parse(v) as { at: number }).at < now - TOMBSTONE_MS) {
        await this.ns.delete().key(key);
        n++;
      }
    }
    return n;
  }

  /**
   * Closes the interval ending at `end`: bills every cell, writes the new head and the interval's
   * reports in one transaction. Returns null when `end` is not after the billed-to time (a clock
   * step back) and throws LedgerConflictError if another writer got in between.
   */
  close(end: number): Promise<IntervalRecord | null> {
    return this.serial(() => this.closeNow(end));
  }

  private async closeNow(end: number): Promise<IntervalRecord | null> {
    const { head, revision } = await this.head(end);
    if (head.settled.length) await this.removeSettled(head.settled, end);
    if (end <= head.billedTo) return null;
    const done = new Set(head.settled);
    const cells = (await this.cells()).filter((c) => !done.has(c.cellName));
    const result = closeInterval(head, cells, end);
    const id = randomUUID();
    const interval: IntervalRecord = {
      seq: result.position.seq,
      id,
      from: new Date(head.billedTo).toISOString(),
      to: new Date(end).toISOString(),
      reports: result.reports.map((report, i) => ({ id: `${id}-${i}`, report })),
      next: 0,
      inFlight: null,
      unconfirmed: [],
      rejected: [],
    };
    const newHead: LedgerHead = { ...result.position, settled: result.settled, version: head.version };
    const ops = [this.ns.put('head').value(JSON.stringify(newHead))];
    if (interval.reports.length) ops.push(this.ns.put(seqKey(interval.seq)).value(JSON.stringify(interval)));
    const r = await this.ns
      .if('head', 'Mod', '==', revision)
      .then(...ops)
      .commit();
    if (!r.succeeded) throw new LedgerConflictError('head');
    if (result.settled.length) await this.removeSettled(result.settled, end);
    return interval;
  }

  /** Closed intervals with reports still to send, oldest first. */
  async pending(): Promise<StoredInterval[]> {
    const { kvs } = await this.ns.getAll().prefix('intervals/').sort('Key', 'Ascend').exec();
    return kvs
      .map((kv) => ({ record: JSON.parse(kv.value.toString()) as IntervalRecord, revision: kv.mod_revision }))
      .filter((s) => s.record.next < s.record.reports.length || s.record.inFlight !== null);
  }

  /** Intervals kept because a report was unconfirmed or rejected, for reconciliation. */
  async kept(): Promise<IntervalRecord[]> {
    const all = await this.ns.getAll().prefix('intervals/').strings();
    return Object.values(all)
      .map((v) => JSON.parse(v) as IntervalRecord)
      .filter((r) => r.next >= r.reports.length && r.inFlight === null);
  }

  /**
   * Writes `record` if the stored one is still at `revision`; a fully sent interval with nothing to
   * reconcile is deleted instead. Returns the new revision.
   */
  async updateInterval(stored: StoredInterval, record: IntervalRecord): Promise<StoredInterval> {
    const key = seqKey(record.seq);
    const finished =
      record.next >= record.reports.length &&
      record.inFlight === null &&
      record.unconfirmed.length === 0 &&
      record.rejected.length === 0;
    const r = await this.ns
      .if(key, 'Mod', '==', stored.revision)
      .then(finished ? this.ns.delete().key(key) : this.ns.put(key).value(JSON.stringify(record)))
      .commit();
    if (!r.succeeded) throw new LedgerConflictError(`interval ${record.seq}`);
    return { record, revision: r.header.revision };
  }
}
