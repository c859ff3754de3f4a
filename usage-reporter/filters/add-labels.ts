import type { AddLabelsConfig } from '../config.ts';
import type { Report } from '../report.ts';

/** A step every report passes through before aggregation. */
export type ReportFilter = (r: Report) => Report;

/**
 * ubbagent's addLabels: sets the configured labels on every report (replacing a label of the same
 * name). With omitEmpty, a configured label whose value is empty (e.g. an unset variable) is skipped.
 */
export function addLabelsFilter(cfg: AddLabelsConfig): ReportFilter {
  const add = Object.entries(cfg.labels).filter(([, v]) => !(cfg.omitEmpty && v === ''));
  return (r) => ({ ...r, labels: { ...r.labels, ...Object.fromEntries(add) } });
}
