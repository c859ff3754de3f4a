import type { Logger } from '../lib/log.ts';
import type { EndpointStatus } from '../lib/usage-reporter-client.ts';
import { BlockedError, PermanentError, type Endpoint } from './endpoints/endpoint.ts';
import type { StampedReport } from './report.ts';
import type { StateStore } from './state-store.ts';
import type { ReporterStats } from './status.ts';

interface QueueItem {
  report: StampedReport;
  /** ms since epoch; expiry counts from here. */
  enqueuedAt: number;
}

/** What `epqueue/<endpoint>.json` holds. */
interface QueueFile {
  items: QueueItem[];
  sent: number;
  expired: number;
  rejected: number;
  lastExpired: number | null;
}

export interface RetryPolicy {
  /** First retry delay (ubbagent: 2 s); doubled per consecutive failure. */
  minRetryDelayMs: number;
  /** Cap on the delay (ubbagent: 60 s). */
  maxRetryDelayMs: number;
  /** A report queued longer than this is dropped as expired (ubbagent: 3 h). */
  maxQueueTimeMs: number;
}

export interface EndpointQueueOptions extends RetryPolicy {
  endpoint: Endpoint;
  store: StateStore;
  stats: ReporterStats;
  log: Logger;
}

/** Exponential backoff with jitter: min·2^(n-1) capped at max, plus up to min(1 s, min) random. */
export function retryDelay(
  failures: number,
  p: Pick<RetryPolicy, 'minRetryDelayMs' | 'maxRetryDelayMs'>,
): number {
  const base = Math.min(p.maxRetryDelayMs, p.minRetryDelayMs * 2 ** Math.max(0, failures - 1));
  return base + Math.random() * Math.min(1000, p.minRetryDelayMs);
}

/**
 * One endpoint's durable send queue (ubbagent's RetryingSender): reports are sent in order, one at
 * a time; a transient failure is retried with backoff, a blocked consumer waits for its check to
 * clear, and nothing leaves the queue file until it is delivered, rejected or expired.
 */
export class EndpointQueue {
  readonly name: string;
  private items: QueueItem[] = [];
  private ids = new Set<string>();
  private counts = { sent: 0, expired: 0, rejected: 0, lastExpired: null as number | null };
  private failures = 0;
  private lastError: string | null = null;
  private blocked: string | null = null;
  private nextAttempt: number | null = null;
  private stopped = false;
  private wakeUp: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private readonly file: string;

  constructor(private readonly opts: EndpointQueueOptions) {
    this.name = opts.endpoint.name;
    this.file = `epqueue/${this.name}.json`;
  }

  async load(): Promise<void> {
    const saved = await this.opts.store.read<QueueFile>(this.file);
    if (!saved) return;
    this.items = saved.items;
    this.ids = new Set(this.items.map((i) => i.report.id));
    this.counts = {
      sent: saved.sent,
      expired: saved.expired,
      rejected: saved.rejected,
      lastExpired: saved.lastExpired,
    };
    if (this.items.length)
      this.opts.log.info({ endpoint: this.name, queued: this.items.length }, 'queue restored');
  }

  private markDirty(): void {
    this.opts.store.markDirty(this.file, (): QueueFile => ({ items: this.items, ...this.counts }));
  }

  /**
   * Adds a report (in memory; the caller commits the store). A report already queued under the
   * same id is not added twice: that happens when a bucket is flushed again after a crash.
   */
  enqueue(report: StampedReport): void {
    if (this.ids.has(report.id)) return;
    this.ids.add(report.id);
    this.items.push({ report, enqueuedAt: Date.now() });
    this.markDirty();
    if (this.nextAttempt === null) this.wake();
  }

  get length(): number {
    return this.items.length;
  }

  start(): void {
    this.loop ??= this.run();
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  private sleep(ms: number | null): Promise<void> {
    return new Promise((resolve) => {
      const t = ms === null ? undefined : setTimeout(() => this.wake(), ms);
      this.wakeUp = () => {
        if (t) clearTimeout(t);
        resolve();
      };
    });
  }

  private remove(item: QueueItem): void {
    const i = this.items.indexOf(item);
    if (i >= 0) this.items.splice(i, 1);
    this.ids.delete(item.report.id);
    this.markDirty();
  }

  private expire(): void {
    const now = Date.now();
    const expired = this.items.filter((i) => now - i.enqueuedAt > this.opts.maxQueueTimeMs);
    for (const item of expired) {
      this.remove(item);
      this.counts.expired++;
      this.counts.lastExpired = now;
      this.opts.log.error(
        { endpoint: this.name, id: item.report.id, metric: item.report.name, value: item.report.value },
        'report expired unsent',
      );
    }
  }

  private async commit(): Promise<void> {
    try {
      await this.opts.store.commit();
    } catch (e) {
      this.opts.log.error({ err: e, endpoint: this.name }, 'cannot persist queue');
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.expire();
      const item = this.items[0];
      if (!item) {
        await this.commit();
        if (!this.stopped && this.items.length === 0) await this.sleep(null);
        continue;
      }
      try {
        await this.opts.endpoint.send(item.report);
        this.remove(item);
        this.counts.sent++;
        this.failures = 0;
        this.lastError = null;
        this.blocked = null;
        this.nextAttempt = null;
        this.opts.stats.success(Date.now());
        this.opts.log.debug({ endpoint: this.name, id: item.report.id }, 'report sent');
        await this.commit();
      } catch (e) {
        const err = e as Error;
        this.lastError = err.message;
        this.opts.stats.failure();
        if (err instanceof PermanentError) {
          this.remove(item);
          this.counts.rejected++;
          this.opts.log.error(
            { endpoint: this.name, id: item.report.id, err: err.message },
            'report rejected',
          );
          await this.commit();
          continue;
        }
        let delay: number;
        if (err instanceof BlockedError) {
          if (this.blocked !== err.code)
            this.opts.log.error({ endpoint: this.name, code: err.code }, 'sending stopped');
          this.blocked = err.code;
          delay = err.retryAfterMs;
        } else {
          this.blocked = null;
          this.failures++;
          delay = retryDelay(this.failures, this.opts);
          this.opts.log.warn(
            { endpoint: this.name, err: err.message, retryInMs: Math.round(delay) },
            'send failed',
          );
        }
        this.nextAttempt = Date.now() + delay;
        if (!this.stopped) await this.sleep(delay);
        this.nextAttempt = null;
      }
    }
  }

  /** Resolves when the queue is empty or `timeoutMs` passed (for the shutdown flush). */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    // Stop early when no attempt can happen before the deadline: the queue file keeps the rest.
    while (
      this.items.length > 0 &&
      Date.now() < deadline &&
      !this.blocked &&
      !(this.nextAttempt !== null && this.nextAttempt > deadline)
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.items.length === 0;
  }

  /** Stops sending; an in-flight send is given `graceMs` to finish. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    this.wake();
    if (this.loop) await Promise.race([this.loop, new Promise((r) => setTimeout(r, graceMs).unref())]);
    await this.opts.endpoint.close?.();
  }

  status(): EndpointStatus {
    const oldest = this.items[0]?.enqueuedAt;
    const iso = (t: number | null | undefined) =>
      t === null || t === undefined ? null : new Date(t).toISOString();
    return {
      queued: this.items.length,
      oldestQueued: iso(oldest),
      sent: this.counts.sent,
      expired: this.counts.expired,
      rejected: this.counts.rejected,
      lastExpired: iso(this.counts.lastExpired),
      lastError: this.lastError,
      blocked: this.blocked,
      nextAttempt: iso(this.nextAttempt),
    };
  }
}
