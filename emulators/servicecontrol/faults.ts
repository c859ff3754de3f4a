/** One injected fault: which calls it hits, how often, and what the client sees instead. */
export interface Fault {
  /** `check`, `report`, or both when absent. */
  method?: 'check' | 'report';
  /** HTTP status answered instead of the normal reply (e.g. 503); absent means answer normally. */
  status?: number;
  /** Hit only the next `count` matching calls; absent means every matching call. */
  count?: number;
  /** Chance (0..1) that a matching call is hit; default 1. */
  probability?: number;
  /** Wait this long before answering, to make clients time out. */
  delayMs?: number;
  /** Record (bill) the report's operations first, then answer with the fault: a reply lost on the way back. */
  afterRecord?: boolean;
}

export const faultSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    method: { type: 'string', enum: ['check', 'report'] },
    status: { type: 'integer', minimum: 400, maximum: 599 },
    count: { type: 'integer', minimum: 1 },
    probability: { type: 'number', minimum: 0, maximum: 1 },
    delayMs: { type: 'integer', minimum: 0 },
    afterRecord: { type: 'boolean' },
  },
} as const;

/** The faults currently armed; each call asks which one (if any) applies to it. */
export class FaultSet {
  private faults: Array<Fault & { used: number }> = [];
  hits = 0;

  set(faults: Fault[]): void {
    this.faults = faults.map((f) => ({ ...f, used: 0 }));
  }

  /** The faults still armed, with how many times each has fired. */
  list(): Array<Fault & { used: number }> {
    return this.faults.map((f) => ({ ...f }));
  }

  /** Picks the first armed fault matching `method` and uses it up; undefined when the call goes through. */
  take(method: 'check' | 'report'): Fault | undefined {
    for (const f of this.faults) {
      if (f.method && f.method !== method) continue;
      if (f.count !== undefined && f.used >= f.count) continue;
      if (Math.random() >= (f.probability ?? 1)) continue;
      f.used++;
      this.hits++;
      return f;
    }
    return undefined;
  }
}
