/**
 * Sends closed intervals' reports to the usage reporter, oldest first, so that each report is
 * billed exactly once and none is dropped while the reporter is down.
 */
import type { Logger } from '../../lib/log.ts';
import { UsageReporterError, type MetricReport } from '../../lib/usage-reporter-client.ts';
import type { IntervalRecord, StoredInterval, UsageLedger } from './ledger.ts';
import type { MeteringMetrics } from './metrics.ts';

/** What the poster needs of the reporter: `UsageReporterClient` (lib/usage-reporter-client.ts). */
export interface ReporterApi {
  report(report: MetricReport): Promise<void>;
  /** Any cheap call that succeeds only when the reporter serves; used before sending. */
  status(): Promise<unknown>;
}

export interface PostResult {
  /** Reports accepted in this pass. */
  posted: number;
  /** Intervals still holding reports to send (the reporter is down or failing). */
  pending: number;
}

export interface PostOptions {
  ledger: UsageLedger;
  reporter: ReporterApi;
  log: Logger;
  metrics: MeteringMetrics;
  /**
   * Metrics the reporter refused a report id for (aggregated there rather than passthrough). Kept
   * by the caller across passes; their reports go without an id.
   */
  idRefused: Set<string>;
}

/**
 * Sends what is pending. Each report goes with its ledger id, which the reporter makes the Service
 * Control operationId, so a resend is billed once. Before a report is sent its index is recorded as
 * in flight; after the reporter's 200 the record moves past it. A report still in flight when a pass
 * starts (the provider died or the reply was lost mid-send) is sent again under the same id. For a
 * metric the reporter aggregates, no id is possible and the reporter cannot recognise a resend, so
 * such a report is set aside as unconfirmed instead of being sent twice. A reporter that does not
 * answer its status probe, or answers 5xx (it did not persist the report), gets the same report again
 * next pass.
 */
export async function postPending(opts: PostOptions): Promise<PostResult> {
  const { ledger, reporter, log, metrics, idRefused } = opts;
  const intervals = await ledger.pending();
  let posted = 0;
  let reachable: boolean | undefined;
  for (let n = 0; n < intervals.length; n++) {
    let stored: StoredInterval = intervals[n]!;
    let rec: IntervalRecord = stored.record;
    if (rec.inFlight !== null && !rec.inFlightWithId) {
      const i = rec.inFlight;
      const r = rec.reports[i]!;
      log.error(
        { interval: rec.seq, reportId: r.id, report: r.report },
        'a usage report without id was interrupted mid-send and may have been billed; kept in the ledger as unconfirmed, not resent',
      );
      metrics.reportsUnconfirmed.inc({ metric: r.report.name });
      rec = { ...rec, inFlight: null, next: i + 1, unconfirmed: [...rec.unconfirmed, i] };
      stored = await ledger.updateInterval(stored, rec);
    } else if (rec.inFlight !== null) {
      // Sent with its id: sending it again is safe, and it is next anyway.
      rec = { ...rec, inFlight: null };
    }
    while (rec.next < rec.reports.length) {
      if (reachable === undefined) {
        try {
          await reporter.status();
          reachable = true;
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'usage reporter unreachable; usage kept in the ledger');
          reachable = false;
        }
      }
      if (!reachable) return { posted, pending: intervals.length - n };
      const i = rec.next;
      const r = rec.reports[i]!;
      const withId = !idRefused.has(r.report.name);
      stored = await ledger.updateInterval(stored, (rec = { ...rec, inFlight: i, inFlightWithId: withId }));
      try {
        await reporter.report(withId ? { ...r.report, id: r.id } : r.report);
      } catch (err) {
        if (err instanceof UsageReporterError && err.status >= 400 && err.status < 500) {
          if (withId) {
            // ubbagent's form has no id; a reporter aggregating this metric refuses one. Send it
            // without: a 4xx means nothing was taken.
            log.warn(
              { metric: r.report.name, err: err.message },
              'usage reporter refused a report id; sending this metric without ids (configure it as passthrough so resends are de-duplicated)',
            );
            idRefused.add(r.report.name);
            stored = await ledger.updateInterval(stored, (rec = { ...rec, inFlight: null }));
            continue;
          }
          log.error(
            { interval: rec.seq, report: r.report, err: err.message },
            'usage reporter refused a report',
          );
          metrics.reportsRejected.inc({ metric: r.report.name });
          rec = {
            ...rec,
            inFlight: null,
            next: i + 1,
            rejected: [...rec.rejected, { index: i, error: err.message }],
          };
          stored = await ledger.updateInterval(stored, rec);
          continue;
        }
        if (err instanceof UsageReporterError && err.status >= 500) {
          // The reporter answers 5xx only for a report it did not persist: safe to send again.
          log.warn({ err: err.message }, 'usage reporter did not take a report; retrying next interval');
          await ledger.updateInterval(stored, { ...rec, inFlight: null });
          return { posted, pending: intervals.length - n };
        }
        // No answer after the request went out: leave it in flight for the next pass to decide.
        log.warn({ err: (err as Error).message }, 'usage report send failed without an answer');
        return { posted, pending: intervals.length - n };
      }
      stored = await ledger.updateInterval(stored, (rec = { ...rec, inFlight: null, next: i + 1 }));
      metrics.reportsPosted.inc({ metric: r.report.name });
      posted++;
    }
  }
  return { posted, pending: 0 };
}
