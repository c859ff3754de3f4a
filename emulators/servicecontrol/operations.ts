import type { servicecontrol_v1 } from '@googleapis/servicecontrol';

type Operation = servicecontrol_v1.Schema$Operation;

/** A metric total over the recorded operations: int64 sums stay exact as decimal strings. */
export interface MetricTotal {
  int64Value?: string;
  doubleValue?: number;
  operations: number;
}

/** What one accepted report operation looked like, as recorded. */
export interface RecordedOperation {
  serviceName: string;
  receivedAt: string;
  operation: Operation;
}

/**
 * The operations the emulator has billed. Like the real service, an operation whose operationId
 * was already recorded for the same service is accepted but not billed again, so a client that
 * retries after a lost reply is charged once.
 */
export class OperationLog {
  private readonly byKey = new Map<string, RecordedOperation>();
  duplicates = 0;
  checks = 0;
  reports = 0;

  /** Records `op`; returns false when it duplicates an operation already billed. */
  record(serviceName: string, op: Operation): boolean {
    const key = `${serviceName}\u0000${op.operationId}`;
    if (this.byKey.has(key)) {
      this.duplicates++;
      return false;
    }
    this.byKey.set(key, { serviceName, receivedAt: new Date().toISOString(), operation: op });
    return true;
  }

  list(): RecordedOperation[] {
    return [...this.byKey.values()];
  }

  /** Sums every metric value of the billed operations, keyed by full metric name. */
  totals(): Record<string, MetricTotal> {
    const acc = new Map<string, { int?: bigint; dbl?: number; operations: number }>();
    for (const { operation } of this.byKey.values()) {
      for (const set of operation.metricValueSets ?? []) {
        const name = set.metricName ?? '';
        const t = acc.get(name) ?? { operations: 0 };
        t.operations++;
        for (const v of set.metricValues ?? []) {
          if (v.int64Value !== undefined && v.int64Value !== null) {
            t.int = (t.int ?? 0n) + BigInt(v.int64Value);
          }
          if (v.doubleValue !== undefined && v.doubleValue !== null) t.dbl = (t.dbl ?? 0) + v.doubleValue;
        }
        acc.set(name, t);
      }
    }
    const out: Record<string, MetricTotal> = {};
    for (const [name, t] of acc) {
      out[name] = {
        ...(t.int !== undefined ? { int64Value: t.int.toString() } : {}),
        ...(t.dbl !== undefined ? { doubleValue: t.dbl } : {}),
        operations: t.operations,
      };
    }
    return out;
  }

  clear(): void {
    this.byKey.clear();
    this.duplicates = 0;
    this.checks = 0;
    this.reports = 0;
  }
}
