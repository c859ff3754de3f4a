import { randomUUID } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../lib/log.ts';
import type { ReporterStatus } from '../lib/usage-reporter-client.ts';
import { Aggregator } from './aggregator.ts';
import { decodeServiceAccountKey, type AgentConfig, type MetricConfig } from './config.ts';
import { EndpointQueue, type RetryPolicy } from './endpoint-queue.ts';
import { DiskEndpoint } from './endpoints/disk.ts';
import type { Endpoint } from './endpoints/endpoint.ts';
import { ServiceControlEndpoint } from './endpoints/servicecontrol.ts';
import { addLabelsFilter, type ReportFilter } from './filters/add-labels.ts';
import { validateReport, type Report, type StampedReport } from './report.ts';
import { createServiceControlClient } from './service-control-client.ts';
import { Heartbeat } from './sources/heartbeat.ts';
import { StateStore } from './state-store.ts';
import { ReporterStats, buildStatus } from './status.ts';

export interface PipelineOptions {
  config: AgentConfig;
  stateDir: string;
  log: Logger;
  registry: Registry;
  retry: RetryPolicy;
  /** How long a Service Control check result is reused (60 s). */
  checkIntervalMs: number;
  /** Per-request timeout for Service Control (60 s). */
  requestTimeoutMs: number;
  /** How often the disk endpoint deletes expired files (60 s). */
  diskCleanupIntervalMs?: number;
  /** Called when an accepted report cannot be written; main.ts exits so a restart reloads the disk state. */
  onPersistFailure?: (err: Error) => void;
}

/** A report that could not be taken because the agent is shutting down or cannot persist. */
export class UnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnavailableError';
  }
}

/**
 * The agent: reports in (HTTP and sources) → filters → per-metric aggregation or passthrough →
 * one durable queue per endpoint → Service Control / disk.
 */
export class Pipeline {
  private readonly metrics: Map<string, MetricConfig>;
  private readonly filters: ReportFilter[];
  private readonly queues = new Map<string, EndpointQueue>();
  private readonly aggregators = new Map<string, Aggregator>();
  private readonly heartbeats: Heartbeat[] = [];
  private readonly stats = new ReporterStats();
  private readonly store: StateStore;
  private readonly accepted: Counter;
  private readonly rejected: Counter;
  private closing = false;
  agentId = '';

  constructor(private readonly opts: PipelineOptions) {
    const { config, registry } = opts;
    const writes = new Histogram({
      name: 'usage_reporter_state_write_seconds',
      help: 'duration of one grouped state write round (temporary files, fsync, rename, directory fsync)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    });
    this.store = new StateStore(opts.stateDir, (s) => writes.observe(s));
    this.metrics = new Map(config.metrics.map((m) => [m.name, m]));
    this.filters = config.filters.map((f) => addLabelsFilter(f.addLabels));
    this.accepted = new Counter({
      name: 'usage_reporter_reports_accepted_total',
      help: 'reports accepted (persisted) by metric',
      labelNames: ['metric'],
      registers: [registry],
    });
    this.rejected = new Counter({
      name: 'usage_reporter_reports_rejected_total',
      help: 'reports refused with HTTP 400',
      registers: [registry],
    });
    const queues = this.queues;
    const stats = this.stats;
    new Gauge({
      name: 'usage_reporter_queued_reports',
      help: 'reports waiting in an endpoint queue',
      labelNames: ['endpoint'],
      registers: [registry],
      collect() {
        for (const q of queues.values()) this.set({ endpoint: q.name }, q.length);
      },
    });
    new Gauge({
      name: 'usage_reporter_send_failures_total',
      help: 'failed sends since start (ubbagent totalFailureCount)',
      registers: [registry],
      collect() {
        this.set(stats.totalFailureCount);
      },
    });
  }

  private buildEndpoint(i: number): Endpoint {
    const { config, log } = this.opts;
    const ep = config.endpoints[i]!;
    if (ep.disk) {
      return new DiskEndpoint({
        name: ep.name,
        config: ep.disk,
        log,
        cleanupIntervalMs: this.opts.diskCleanupIntervalMs,
      });
    }
    const sc = ep.servicecontrol!;
    const identityIndex = config.identities.findIndex((id) => id.name === sc.identity);
    const client = createServiceControlClient({
      rootUrl: sc.rootUrl,
      key: sc.rootUrl
        ? undefined
        : decodeServiceAccountKey(
            config.identities[identityIndex]!.gcp,
            `identities[${identityIndex}].gcp`,
            'config',
          ),
      timeoutMs: this.opts.requestTimeoutMs,
    });
    return new ServiceControlEndpoint({
      name: ep.name,
      config: sc,
      client,
      agentId: this.agentId,
      checkIntervalMs: this.opts.checkIntervalMs,
    });
  }

  /** Opens the state dir, restores buckets and queues, and starts sending and the sources. */
  async start(): Promise<void> {
    const { config, log } = this.opts;
    await this.store.init();
    this.agentId = await this.store.agentId();
    config.endpoints.forEach((_ep, i) => {
      const endpoint = this.buildEndpoint(i);
      this.queues.set(
        endpoint.name,
        new EndpointQueue({ endpoint, store: this.store, stats: this.stats, log, ...this.opts.retry }),
      );
    });
    for (const q of this.queues.values()) await q.load();
    for (const m of config.metrics) {
      if (!m.aggregation) continue;
      const agg = new Aggregator({
        metric: m as MetricConfig & { aggregation: { bufferSeconds: number } },
        store: this.store,
        log,
        emit: (reports) => reports.forEach((r) => this.route(r)),
      });
      await agg.load();
      this.aggregators.set(m.name, agg);
    }
    await this.warnAboutOrphans();
    for (const q of this.queues.values()) q.start();
    for (const s of config.sources) {
      const hb = new Heartbeat({ name: s.name, config: s.heartbeat, submit: (b) => this.accept(b), log });
      hb.begin();
      this.heartbeats.push(hb);
    }
  }

  /**
   * State left by a config that had other metrics or endpoints is kept, not deleted: it is unsent
   * usage, and the operator may restore the config entry to send it.
   */
  private async warnAboutOrphans(): Promise<void> {
    for (const m of await this.store.names('aggregator')) {
      if (!this.aggregators.has(m)) {
        const bucket = await this.store.read<{ entries?: object }>(`aggregator/${m}.json`);
        if (bucket?.entries && Object.keys(bucket.entries).length > 0) {
          this.opts.log.error(
            { metric: m },
            'an unsent bucket for a metric no longer aggregated in the config is kept in the state dir',
          );
        }
      }
    }
    for (const e of await this.store.names('epqueue')) {
      if (!this.queues.has(e)) {
        const q = await this.store.read<{ items?: unknown[] }>(`epqueue/${e}.json`);
        if (q?.items?.length) {
          this.opts.log.error(
            { endpoint: e, queued: q.items.length },
            'unsent reports for an endpoint no longer in the config are kept in the state dir',
          );
        }
      }
    }
  }

  private route(r: StampedReport): void {
    for (const e of this.metrics.get(r.name)!.endpoints) this.queues.get(e.name)!.enqueue(r);
  }

  /**
   * Validates a report (ReportError → HTTP 400), applies the filters, adds it to its bucket or its
   * endpoint queues, and resolves once that is durable on disk.
   */
  async accept(body: unknown): Promise<void> {
    if (this.closing)
      throw new UnavailableError('the usage reporter is shutting down; send the report again');
    let r: Report;
    try {
      r = validateReport(body, this.metrics);
    } catch (e) {
      this.rejected.inc();
      throw e;
    }
    for (const f of this.filters) r = f(r);
    const agg = this.aggregators.get(r.name);
    if (agg) agg.add(r);
    else this.route({ ...r, id: r.id ?? randomUUID() });
    try {
      await this.store.commit();
    } catch (e) {
      // The report is in memory but not on disk, and its sender is told to send it again. Going
      // on would bill it twice; stopping drops the unwritten state, and the restart reloads
      // exactly what was answered 200.
      this.opts.log.fatal({ err: e }, 'cannot persist state; stopping');
      this.closing = true;
      this.opts.onPersistFailure?.(e as Error);
      throw new UnavailableError(`cannot persist the report: ${(e as Error).message}`);
    }
    this.accepted.inc({ metric: r.name });
  }

  status(): ReporterStatus {
    return buildStatus(this.stats, this.agentId, [...this.queues.values()], [...this.aggregators.values()]);
  }

  /**
   * The shutdown flush: stops the sources, flushes every open bucket into the queues, persists,
   * tries for up to `drainMs` to deliver what is queued, and stops. What is still queued stays on
   * disk for the next start.
   */
  async shutdown(drainMs: number): Promise<void> {
    this.closing = true;
    for (const hb of this.heartbeats) hb.stop();
    let flushed = 0;
    for (const a of this.aggregators.values()) flushed += a.flush();
    await this.store.commit();
    const queues = [...this.queues.values()];
    const drained = await Promise.all(queues.map((q) => q.drain(drainMs)));
    await Promise.all(queues.map((q) => q.stop(2000)));
    await this.store.commit();
    this.opts.log.info(
      { flushed, queued: Object.fromEntries(queues.map((q, i) => [q.name, drained[i] ? 0 : q.length])) },
      'flushed',
    );
  }
}
