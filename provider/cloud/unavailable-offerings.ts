import type { CapacityType } from './cloud-provider.ts';

/**
 * Remembers (zone, series, capacity type) offerings that recently failed for lack of capacity or
 * quota, so the selector skips them for a while instead of failing on them again. Entries expire
 * after `ttlMs` (default 3 minutes), when GCE may have capacity again.
 */
export class UnavailableOfferings {
  private readonly until = new Map<string, { expires: number; reason: string }>();
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(opts: { ttlMs?: number; now?: () => number } = {}) {
    this.ttlMs = opts.ttlMs ?? 180_000;
    this.now = opts.now ?? Date.now;
  }

  private static key(zone: string, family: string, capacityType: CapacityType): string {
    return `${zone}/${family}/${capacityType}`;
  }

  /** Marks an offering unavailable for the TTL. */
  mark(zone: string, family: string, capacityType: CapacityType, reason: string): void {
    this.until.set(UnavailableOfferings.key(zone, family, capacityType), {
      expires: this.now() + this.ttlMs,
      reason,
    });
  }

  /** Whether the offering failed within the TTL. Usable as the selector's UnavailableCheck. */
  isUnavailable = (zone: string, family: string, capacityType: CapacityType): boolean => {
    const k = UnavailableOfferings.key(zone, family, capacityType);
    const e = this.until.get(k);
    if (!e) return false;
    if (e.expires <= this.now()) {
      this.until.delete(k);
      return false;
    }
    return true;
  };

  /** The offerings currently marked, for metrics and the cell's events. */
  entries(): Array<{ offering: string; reason: string; expiresInMs: number }> {
    const now = this.now();
    return [...this.until]
      .filter(([, e]) => e.expires > now)
      .map(([offering, e]) => ({ offering, reason: e.reason, expiresInMs: e.expires - now }));
  }
}
