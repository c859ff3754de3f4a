import type { MetricConfig } from './config.ts';

/** A value as the reporter keeps it: int64 as a decimal string so sums stay exact. */
export interface Value {
  int64Value?: string;
  doubleValue?: number;
}

/** A validated report: times normalised to UTC RFC 3339, labels always present. */
export interface Report {
  name: string;
  startTime: string;
  endTime: string;
  value: Value;
  labels: Record<string, string>;
  /** The client's idempotency key (passthrough metrics only), used as the operationId. */
  id?: string;
}

/** A report ready for the endpoints, with the id that becomes its Service Control operationId. */
export interface StampedReport extends Report {
  id: string;
}

const REPORT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A report the agent refuses; the message names the field (answered as HTTP 400). */
export class ReportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReportError';
  }
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i;

function time(v: unknown, field: string): string {
  if (typeof v !== 'string' || !RFC3339.test(v) || Number.isNaN(Date.parse(v))) {
    throw new ReportError(`${field} must be an RFC 3339 time such as 2026-01-01T00:00:00Z`);
  }
  return new Date(v).toISOString();
}

/** Checks a `POST /report` body against the configured metrics. */
export function validateReport(body: unknown, metrics: ReadonlyMap<string, MetricConfig>): Report {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new ReportError('body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) {
    if (!['name', 'startTime', 'endTime', 'value', 'labels', 'id'].includes(k)) {
      throw new ReportError(`${k} is not a known field`);
    }
  }
  if (typeof b.name !== 'string' || b.name === '') throw new ReportError('name is required');
  const metric = metrics.get(b.name);
  if (!metric) throw new ReportError(`name: unknown metric "${b.name}"`);
  const startTime = time(b.startTime, 'startTime');
  const endTime = time(b.endTime, 'endTime');
  if (Date.parse(startTime) > Date.parse(endTime)) {
    throw new ReportError(`startTime ${startTime} is after endTime ${endTime}`);
  }
  const v = b.value as Record<string, unknown> | undefined;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ReportError('value is required');
  const keys = Object.keys(v);
  const want = metric.type === 'int' ? 'int64Value' : 'doubleValue';
  if (keys.length !== 1 || keys[0] !== want) {
    throw new ReportError(`value must be {"${want}": ...} for ${metric.type} metric "${metric.name}"`);
  }
  let value: Value;
  if (want === 'int64Value') {
    const raw = v.int64Value;
    const ok =
      (typeof raw === 'number' && Number.isSafeInteger(raw)) ||
      (typeof raw === 'string' && /^-?\d{1,19}$/.test(raw));
    if (!ok) throw new ReportError('value.int64Value must be an integer');
    const n = BigInt(raw as number | string);
    // Service Control bills DELTA metrics only; a negative delta cannot be billed.
    if (n < 0n) throw new ReportError('value.int64Value must not be negative');
    if (n > 9223372036854775807n) throw new ReportError('value.int64Value does not fit in int64');
    value = { int64Value: n.toString() };
  } else {
    const raw = v.doubleValue;
    if (typeof raw !== 'number' || !Number.isFinite(raw))
      throw new ReportError('value.doubleValue must be a number');
    if (raw < 0) throw new ReportError('value.doubleValue must not be negative');
    value = { doubleValue: raw };
  }
  const labels: Record<string, string> = {};
  if (b.labels !== undefined && b.labels !== null) {
    if (typeof b.labels !== 'object' || Array.isArray(b.labels))
      throw new ReportError('labels must be an object');
    for (const [k, lv] of Object.entries(b.labels as Record<string, unknown>)) {
      if (typeof lv !== 'string') throw new ReportError(`labels.${k} must be a string`);
      labels[k] = lv;
    }
  }
  if (b.id !== undefined) {
    if (typeof b.id !== 'string' || !REPORT_ID.test(b.id)) {
      throw new ReportError('id must be 1-128 characters from A-Z a-z 0-9 . _ : -');
    }
    // A sum cannot forget one of its parts, so only a report sent on its own can be de-duplicated.
    if (metric.aggregation) {
      throw new ReportError(`id is accepted only for passthrough metrics; "${metric.name}" is aggregated`);
    }
    return { name: metric.name, startTime, endTime, value, labels, id: b.id };
  }
  return { name: metric.name, startTime, endTime, value, labels };
}

/** The sum of two values of the same metric. */
export function addValues(a: Value, b: Value): Value {
  if (a.int64Value !== undefined)
    return { int64Value: (BigInt(a.int64Value) + BigInt(b.int64Value ?? 0)).toString() };
  return { doubleValue: (a.doubleValue ?? 0) + (b.doubleValue ?? 0) };
}

/** A stable key for a label set, independent of key order. */
export function labelKey(labels: Record<string, string>): string {
  return JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  );
}
