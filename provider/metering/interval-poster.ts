/**
 * Sends closed intervals' reports to the usage reporter, oldest first, so that each report is
 * accepted at most once and none is dropped while the reporter is merely down.
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

/**
 * Sends what is pending. Before each report its index is recorded as in flight; after the reporter's
 * 200 the record moves past it. A report still in flight when a pass starts (the provider died or
 * the reply was lost mid-send) may already be billed, and the reporter cannot recognise a resend,
 * so it is set aside as unconfirmed rather than sent twice. A reporter that does not answer its
 * status probe, or answers 5xx (it did not persist the report), gets the same report again next pass.
 */
export async function postPending(opts: {
  ledger: UsageLedger;
  reporter: ReporterApi;
  log: Logger;
  metrics: MeteringMetrics;
}): Promise<PostResult> {
  const { ledger, reporter, log, metrics } = opts;
  const intervals = await ledger.pending();
  let posted = 0;
  let reachable: boolean | undefined;
  for (let n = 0; n < intervals.length; n++) {
    let stored: StoredInterval = intervals[n]!;
    let rec: IntervalRecord = stored.record;
    if (rec.inFlight !== null) {
      const i = rec.inFlight;
      const r = rec.reports[i]!;
      log.error(
        { interval: rec.seq, reportId: r.id, report: r.report },
        'a usage report was interrupted mid-send and may have been billed; kept in the ledger as unconfirmed, not resent',
      );
      metrics.reportsUnconfirmed.inc({ metric: r.report.name });
      rec = { ...rec, inFlight: null, next: i + 1, unconfirmed: [...rec.unconfirmed, i] };
      stored = await ledger.updateInterval(stored, rec);
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
      stored = await ledger.updateInterval(stored, (rec = { ...rec, inFlight: i }));
      try {
        await reporter.report(r.report);
      } catch (err) {
        if (err instanceof UsageReporterError && err.status >= 400 && err.status < 500) {
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
        // No answer after the request went out: leave it in flight; the next pass sets it aside.
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
