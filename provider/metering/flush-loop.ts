/**
 * Every interval: close the billing interval in the ledger, then send what is pending to the usage
 * reporter. Failures leave the usage in etcd for the next tick; nothing is dropped.
 */
import type { Logger } from '../../lib/log.ts';
import { sleep, type Clock } from '../clock.ts';
import { LedgerConflictError, type UsageLedger } from './ledger.ts';
import type { MeteringMetrics } from './metrics.ts';
import { postPending, type PostResult, type ReporterApi } from './interval-poster.ts';

export interface FlushLoopOptions {
  ledger: UsageLedger;
  reporter: ReporterApi;
  clock: Clock;
  /** `usageReporter.intervalSeconds`, in ms. */
  intervalMs: number;
  log: Logger;
  metrics: MeteringMetrics;
}

/** What one flush did. */
export interface FlushResult extends PostResult {
  /** Reports recorded by the interval this flush closed (0 if none closed). */
  recorded: number;
}

export class FlushLoop {
  private running: Promise<unknown> = Promise.resolve();
  private tick = 0;
  /** Metrics the reporter takes no report id for (see postPending). */
  private readonly idRefused = new Set<string>();

  constructor(private readonly opts: FlushLoopOptions) {}

  /**
   * Closes the interval ending now and sends everything pending. Calls are serialised. Throws when
   * etcd fails; the usage stays in the ledger for the next call.
   */
  flush(): Promise<FlushResult> {
    const next = this.running.then(
      () => this.flushOnce(),
      () => this.flushOnce(),
    );
    this.running = next.catch(() => undefined);
    return next;
  }

  /** Only sends what is pending, without closing an interval (at start, to finish a previous run's work). */
  postOnly(): Promise<PostResult> {
    const next = this.running.then(
      () => this.post(),
      () => this.post(),
    );
    this.running = next.catch(() => undefined);
    return next;
  }

  private async flushOnce(): Promise<FlushResult> {
    const { ledger, clock, log } = this.opts;
    let recorded: number;
    for (let attempt = 0; ; attempt++) {
      try {
        const interval = await ledger.close(clock.now());
        recorded = interval?.reports.length ?? 0;
        break;
      } catch (err) {
        // A cell write raced the close: its reads are stale, so read again.
        if (!(err instanceof LedgerConflictError) || attempt >= 10) throw err;
      }
    }
    if (++this.tick % 60 === 0) {
      const expired = await ledger.expireTombstones(clock.now());
      if (expired) log.info({ expired }, 'expired settled-cell tombstones');
    }
    return { recorded, ...(await this.post()) };
  }

  private async post(): Promise<PostResult> {
    const { ledger, reporter, log, metrics } = this.opts;
    let result: PostResult;
    try {
      result = await postPending({ ledger, reporter, log, metrics, idRefused: this.idRefused });
    } catch (err) {
      if (!(err instanceof LedgerConflictError)) throw err;
      // Another provider process is sending the same interval; its writes fence ours.
      log.info({ err: err.message }, 'usage interval sent by another writer; leaving it to them');
      result = { posted: 0, pending: (await ledger.pending()).length };
    }
    metrics.intervalsPending.set(result.pending);
    metrics.cellsMetered.set((await ledger.cells()).length);
    return result;
  }

  /** Flushes every interval, aligned to multiples of it, until `signal` aborts; then flushes once more. */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, intervalMs, log } = this.opts;
    try {
      await this.postOnly();
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'usage metering: cannot send pending usage');
    }
    while (!signal.aborted) {
      await sleep(clock, intervalMs - (clock.now() % intervalMs), signal);
      try {
        const r = await this.flush();
        log.debug(r, 'usage interval flushed');
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'usage metering: flush failed; usage stays in the ledger');
      }
    }
    // On shutdown, send usage up to now rather than leaving it for the next start.
    try {
      await this.flush();
    } catch (err) {
      log.warn(
        { err: (err as Error).message },
        'usage metering: final flush failed; usage stays in the ledger',
      );
    }
  }
}
