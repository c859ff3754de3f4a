/**
 * The provider's CellUsageMeter (provider/pods/types.ts): records cell starts and stops in the etcd
 * ledger and runs the flush loop that bills them through the usage reporter. See docs/metering.md.
 */
import type { Namespace } from 'etcd3';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/log.ts';
import { UsageReporterClient } from '../../lib/usage-reporter-client.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { CellStartedUsage, CellStoppedUsage, CellUsageMeter } from '../pods/types.ts';
import { FlushLoop, type FlushResult } from './flush-loop.ts';
import type { ReporterApi } from './interval-poster.ts';
import { UsageLedger } from './ledger.ts';
import { createMeteringMetrics } from './metrics.ts';

export interface UsageMeterOptions {
  /** The provider's state namespace (`StateStore.ns`); the ledger lives under `metering/`. */
  ns: Namespace;
  /** `usageReporter.url`, e.g. `http://127.0.0.1:6080`. Ignored when `reporter` is given. */
  reporterUrl?: string;
  /** The reporter client; default a UsageReporterClient for `reporterUrl`. */
  reporter?: ReporterApi;
  /** `usageReporter.intervalSeconds`. */
  intervalSeconds: number;
  log: Logger;
  /** The provider's registry, for the `kip_metering_*` metrics. */
  registry?: Registry;
  clock?: Clock;
}

/** A cell event with a field the meter cannot bill; the message names the field. */
export class InvalidUsageError extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = 'InvalidUsageError';
  }
}

function checkStarted(u: CellStartedUsage): void {
  const bad = (field: string, why: string) => {
    throw new InvalidUsageError(`cellStarted for ${u.cellName || '?'}: ${field} ${why}`, field);
  };
  if (!u.cellName) bad('cellName', 'is required');
  if (!u.machineType) bad('machineType', 'is required');
  for (const f of ['vcpus', 'memoryMiB', 'gpus'] as const) {
    if (!Number.isFinite(u[f]) || u[f] < 0) bad(f, 'must be a non-negative number');
  }
  if (!(u.at instanceof Date) || Number.isNaN(u.at.getTime())) bad('at', 'must be a valid Date');
}

export class UsageMeter implements CellUsageMeter {
  readonly ledger: UsageLedger;
  private readonly loop: FlushLoop;
  private readonly clock: Clock;
  private readonly log: Logger;
  private running?: Promise<void>;
  private readonly stopper = new AbortController();

  constructor(opts: UsageMeterOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log;
    this.ledger = new UsageLedger(opts.ns);
    const reporter = opts.reporter ?? new UsageReporterClient({ baseUrl: opts.reporterUrl ?? '' });
    if (!opts.reporter && !opts.reporterUrl) throw new Error('UsageMeter needs reporterUrl or reporter');
    this.loop = new FlushLoop({
      ledger: this.ledger,
      reporter,
      clock: this.clock,
      intervalMs: opts.intervalSeconds * 1000,
      log: opts.log,
      metrics: createMeteringMetrics(opts.registry),
    });
  }

  /** Starts the flush loop: first sends what a previous run left pending, then flushes every interval. */
  start(): void {
    this.running ??= this.loop.run(this.stopper.signal);
  }

  /** Stops the loop after one final flush (usage up to now goes to the reporter if it is up). */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.running;
  }

  /** Bills the cell from `at`. A repeated call for the same cell is ignored. */
  async cellStarted(usage: CellStartedUsage): Promise<void> {
    checkStarted(usage);
    const recorded = await this.retrying(() => this.ledger.recordStart(usage, this.clock.now()));
    this.log.info(
      { cell: usage.cellName, machineType: usage.machineType, spot: usage.spot, at: usage.at, recorded },
      'metering cell',
    );
  }

  /** Ends the cell's billing at `at`; its final interval is billed once by the next flush. */
  async cellStopped(usage: CellStoppedUsage): Promise<void> {
    if (!usage.cellName) throw new InvalidUsageError('cellStopped: cellName is required', 'cellName');
    if (!(usage.at instanceof Date) || Number.isNaN(usage.at.getTime()))
      throw new InvalidUsageError(`cellStopped for ${usage.cellName}: at must be a valid Date`, 'at');
    const recorded = await this.retrying(() => this.ledger.recordStop(usage, this.clock.now()));
    this.log.info({ cell: usage.cellName, at: usage.at, recorded }, 'cell metering ends');
  }

  /**
   * The cell manager reports each event once: ride out a short etcd outage (about 15 s) rather
   * than lose the event. Safe to repeat, since recording is idempotent.
   */
  private async retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= 4) throw err;
        this.log.warn({ err: (err as Error).message, attempt }, 'usage ledger write failed; retrying');
        await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
      }
    }
  }

  /** Closes the interval ending now and sends what is pending (the loop does this every interval). */
  flush(): Promise<FlushResult> {
    return this.loop.flush();
  }
}
