import type { Faults, Quotas } from './config.ts';
import { backendError, type GceError, rateLimited } from './errors.ts';

export type CallKind = 'read' | 'write';

/**
 * What stands between a Compute API call and its handler: the per-minute request quotas (read and
 * write buckets, refilled at synchronized window boundaries as GCE does) and injected faults.
 */
export class RequestGate {
  private window = -1;
  private readonly used: Record<CallKind, number> = { read: 0, write: 0 };

  constructor(
    private readonly quotas: () => Quotas,
    private readonly faults: () => Faults,
    private readonly projectNumber: string,
    private readonly random: () => number = Math.random,
  ) {}

  /** Throws the GceError the call must fail with before it takes effect, if any. */
  admit(method: string, kind: CallKind): void {
    const q = this.quotas();
    const w = Math.floor(Date.now() / q.windowMs);
    if (w !== this.window) {
      this.window = w;
      this.used.read = 0;
      this.used.write = 0;
    }
    const limit = kind === 'read' ? q.readRequestsPerMinute : q.writeRequestsPerMinute;
    if (limit > 0 && this.used[kind] >= limit) {
      throw kind === 'read'
        ? rateLimited(
            403,
            'compute.googleapis.com/read_requests',
            'ReadRequestsPerMinutePerProject',
            this.projectNumber,
            this.faults().rateLimitErrorInfo,
          )
        : rateLimited(
            403,
            'compute.googleapis.com/write_requests',
            'WriteRequestsPerMinutePerProject',
            this.projectNumber,
            this.faults().rateLimitErrorInfo,
          );
    }
    this.used[kind]++;
    const f = this.faults();
    if (f.errorRate > 0 && this.applies(f, method) && this.random() < f.errorRate) {
      const pick = f.errorKinds[Math.floor(this.random() * f.errorKinds.length)] ?? '503';
      throw this.injected(pick, f.rateLimitErrorInfo);
    }
  }

  /** True when a mutating call that took effect should still answer 503 (the response is "lost"). */
  loseResponse(method: string, kind: CallKind): boolean {
    const f = this.faults();
    return (
      kind === 'write' &&
      f.lostResponseRate > 0 &&
      this.applies(f, method) &&
      this.random() < f.lostResponseRate
    );
  }

  /** Seconds until the request buckets refill (for the Retry-After header). */
  retryAfterSeconds(): number {
    const q = this.quotas();
    return Math.max(1, Math.ceil((q.windowMs - (Date.now() % q.windowMs)) / 1000));
  }

  private applies(f: Faults, method: string): boolean {
    return f.methods.length === 0 || f.methods.includes(method);
  }

  private injected(kind: string, info: boolean): GceError {
    if (kind === 'rateLimitExceeded') {
      return rateLimited(
        403,
        'compute.googleapis.com/default_requests',
        'defaultPerMinutePerProject',
        this.projectNumber,
        info,
      );
    }
    if (kind === '429') {
      return rateLimited(
        429,
        'compute.googleapis.com/default_requests',
        'defaultPerMinutePerProject',
        this.projectNumber,
        info,
      );
    }
    return backendError();
  }
}
