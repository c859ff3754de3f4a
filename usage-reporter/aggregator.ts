import { randomUUID } from 'node:crypto';
import type { Logger } from '../lib/log.ts';
import type { MetricConfig } from './config.ts';
import { addValues, labelKey, type Report, type StampedReport } from './report.ts';
import type { StateStore } from './state-store.ts';

/** What `aggregator/<metric>.json` holds: the open bucket, one entry per label set. */
interface BucketFile {
  createdAt: number;
  /** Each entry already carries the id it will be sent under, so a re-flush after a crash reuses it. */
  entries: Record<string, StampedReport>;
}

export interface AggregatorOptions {
  metric: MetricConfig & { aggregation: { bufferSeconds: number } };
  store: StateStore;
  log: Logger;
  /** Receives the bucket's reports when it is flushed (enqueues them on the metric's endpoints). */
  emit: (reports: StampedReport[]) => void;
}

/**
 * Sums one metric's reports per label set over `bufferSeconds`, then emits one report per label
 * set whose interval covers every report it summed. The bucket lives in the state dir, so a
 * restart continues it.
 */
export class Aggregator {
  readonly metric: AggregatorOptions['metric'];
  private bucket: BucketFile | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly file: string;

  constructor(private readonly opts: AggregatorOptions) {
    this.metric = opts.metric;
    this.file = `aggregator/${this.metric.name}.json`;
  }

  private get bufferMs(): number {
    return this.metric.aggregation.bufferSeconds * 1000;
  }

  /** Restores the open bucket and re-arms its flush (at once when it is overdue). */
  async load(): Promise<void> {
    const saved = await this.opts.store.read<BucketFile>(this.file);
    if (saved && Object.keys(saved.entries).length > 0) {
      this.bucket = saved;
      this.arm();
    }
  }

  private markDirty(): void {
    this.opts.store.markDirty(this.file, (): BucketFile => this.bucket ?? { createdAt: 0, entries: {} });
  }

  private arm(): void {
    if (this.timer || !this.bucket) return;
    const due = Math.max(0, this.bucket.createdAt + this.bufferMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, due);
  }

  /** Adds a validated report to the open bucket (in memory; the caller commits the store). */
  add(r: Report): void {
    if (!this.bucket) {
      this.bucket = { createdAt: Date.now(), entries: {} };
      this.arm();
    }
    const key = labelKey(r.labels);
    const cur = this.bucket.entries[key];
    if (!cur) {
      this.bucket.entries[key] = { ...r, id: randomUUID() };
    } else {
      cur.value = addValues(cur.value, r.value);
      if (r.startTime < cur.startTime) cur.startTime = r.startTime;
      if (r.endTime > cur.endTime) cur.endTime = r.endTime;
    }
    this.markDirty();
  }

  /** Emits and clears the open bucket (in memory; marks queues and bucket dirty). */
  flush(): number {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const b = this.bucket;
    if (!b) return 0;
    const reports = Object.values(b.entries);
    this.opts.emit(reports);
    this.bucket = null;
    this.markDirty();
    this.opts.log.debug({ metric: this.metric.name, reports: reports.length }, 'bucket flushed');
    void this.opts.store
      .commit()
      .catch((e: unknown) => this.opts.log.error({ err: e }, 'cannot persist flush'));
    return reports.length;
  }

  status(): { labelSets: number; flushAt: string } | null {
    if (!this.bucket) return null;
    return {
      labelSets: Object.keys(this.bucket.entries).length,
      flushAt: new Date(this.bucket.createdAt + this.bufferMs).toISOString(),
    };
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
