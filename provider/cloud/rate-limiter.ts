/** A per-window request allowance: at most `limit` calls in any `windowMs` (default 60 s). */
export interface BucketLimit {
  limit: number;
  windowMs?: number;
}

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class Bucket {
  private readonly stamps: number[] = [];
  private head = 0;
  private tail: Promise<void> = Promise.resolve();
  pausedUntil = 0;
  admitted = 0;
  waitedMs = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
  ) {}

  /** Admissions in the window ending now. */
  inWindow(now: number): number {
    while (this.head < this.stamps.length && this.stamps[this.head]! <= now - this.windowMs) this.head++;
    if (this.head > 4096) {
      this.stamps.splice(0, this.head);
      this.head = 0;
    }
    return this.stamps.length - this.head;
  }

  /** How long until a call may go, 0 when it may go now. */
  delay(now: number): number {
    const paused = this.pausedUntil - now;
    if (this.inWindow(now) < this.limit) return Math.max(0, paused);
    const oldest = this.stamps[this.head]!;
    return Math.max(paused, oldest + this.windowMs - now + 1);
  }

  chain(step: () => Promise<void>): Promise<void> {
    const next = this.tail.then(step);
    this.tail = next.catch(() => undefined);
    return next;
  }

  record(now: number): void {
    this.stamps.push(now);
    this.admitted++;
  }
}

/**
 * Client-side limiter with one sliding window per quota bucket (Compute Engine counts reads,
 * writes and operation reads separately, per minute). Never admitting more than `limit` in any
 * window keeps Kip inside a quota whether the server counts in fixed or sliding minutes.
 * Callers wait in arrival order.
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
      this.buckets.set(name, new Bucket(b.limit, b.windowMs ?? 60_000));
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

  /** Per bucket: calls admitted, total time callers waited, and calls in the current window. */
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
