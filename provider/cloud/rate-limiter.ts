/** A per-window request allowance: at most `limit` calls per window of `windowMs` (default 60 s). */
export interface BucketLimit {
  limit: number;
  windowMs?: number;
  /**
   * The last `guardMs` of each window also count against the next one, so a call admitted just
   * before a boundary but arriving just after it still fits the server's count. Default: 5% of
   * the window, at most 1 s.
   */
  guardMs?: number;
}

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class Bucket {
  private readonly used = new Map<number, number>();
  private tail: Promise<void> = Promise.resolve();
  pausedUntil = 0;
  admitted = 0;
  waitedMs = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly guardMs: number,
  ) {}

  private count(w: number): number {
    return this.used.get(w) ?? 0;
  }

  /** How long until a call may go at `now`, 0 when it may go now. */
  delay(now: number): number {
    if (now < this.pausedUntil) return this.pausedUntil - now;
    const w = Math.floor(now / this.windowMs);
    const next = (w + 1) * this.windowMs;
    if (this.count(w) >= this.limit) return next - now;
    const inGuard = now >= next - this.guardMs;
    if (inGuard && this.count(w + 1) >= this.limit) return next + this.windowMs - now;
    return 0;
  }

  record(now: number): void {
    const w = Math.floor(now / this.windowMs);
    this.used.set(w, this.count(w) + 1);
    if (now >= (w + 1) * this.windowMs - this.guardMs) this.used.set(w + 1, this.count(w + 1) + 1);
    for (const k of this.used.keys()) if (k < w) this.used.delete(k);
    this.admitted++;
  }

  inWindow(now: number): number {
    return this.count(Math.floor(now / this.windowMs));
  }

  chain(step: () => Promise<void>): Promise<void> {
    const next = this.tail.then(step);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * Client-side limiter with one budget per quota bucket (Compute Engine counts reads and writes
 * separately). GCE counts requests in synchronized windows (per minute, refilled on the boundary),
 * so the limiter counts in the same windows of the local clock, with a guard band at each window's
 * end that absorbs clock skew and request latency. Callers wait in arrival order.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(opts: {
    buckets: Record<string, BucketLimit>;
    now?: () => number;
    sleep?: (ms: number) => Promise<void>;
  }) {
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? sleepReal;
    for (const [name, b] of Object.entries(opts.buckets)) {
      if (!(b.limit > 0)) throw new Error(`rate limit for ${name} must be positive`);
      const windowMs = b.windowMs ?? 60_000;
      this.buckets.set(name, new Bucket(b.limit, windowMs, b.guardMs ?? Math.min(1000, windowMs * 0.05)));
    }
  }

  private bucket(name: string): Bucket {
    const b = this.buckets.get(name);
    if (!b) throw new Error(`unknown quota bucket ${name}`);
    return b;
  }

  /** Waits until one call in `bucket` fits the quota, then counts it. */
  acquire(bucket: string): Promise<void> {
    const b = this.bucket(bucket);
    return b.chain(async () => {
      const start = this.now();
      for (;;) {
        const wait = b.delay(this.now());
        if (wait <= 0) break;
        await this.sleep(wait);
      }
      b.record(this.now());
      b.waitedMs += this.now() - start;
    });
  }

  /**
   * Holds the bucket for `ms`: the server said the quota is spent (403 rateLimitExceeded, 429),
   * so the next calls wait for its refill rather than spend retries.
   */
  pause(bucket: string, ms: number): void {
    const b = this.bucket(bucket);
    b.pausedUntil = Math.max(b.pausedUntil, this.now() + ms);
  }

  /** Per bucket: calls admitted, total time callers waited, and calls counted in the current window. */
  stats(): Record<string, { admitted: number; waitedMs: number; inWindow: number; limit: number }> {
    const now = this.now();
    return Object.fromEntries(
      [...this.buckets].map(([n, b]) => [
        n,
        { admitted: b.admitted, waitedMs: b.waitedMs, inWindow: b.inWindow(now), limit: b.limit },
      ]),
    );
  }
}
