import type { Logger } from '../../lib/log.ts';
import type { CellInstance, CloudProvider } from './cloud-provider.ts';

export interface InstanceObserverOptions {
  provider: Pick<CloudProvider, 'list'>;
  /** Time between listings. Default 5 s. */
  intervalMs?: number;
  /** Called with every successful listing (the orphan collector hooks in here). */
  onObserve?: (instances: CellInstance[]) => Promise<void> | void;
  log?: Logger;
}

/**
 * Observes the cluster's VMs with one listing per interval (one label-filtered list per zone),
 * never a get per VM: a thousand booting cells cost the same quota as one. Callers read the
 * latest snapshot or wait for a VM to reach a state.
 */
export class InstanceObserver {
  private timer: NodeJS.Timeout | undefined;
  private latest: CellInstance[] = [];
  private at = 0;
  private running: Promise<CellInstance[]> | undefined;
  private scheduled: NodeJS.Timeout | undefined;
  private startedAt = 0;
  /** Set by stop(): no listing is scheduled after it (before start(), requests still list). */
  private halted = false;
  private waiters = new Set<() => void>();
  private stopped = true;
  listings = 0;
  failures = 0;

  constructor(private readonly opts: InstanceObserverOptions) {}

  /**
   * Asks for a listing soon: at once if none ran in the last `minGapMs`, else when that gap has
   * passed; requests in between share it. Each listing costs in proportion to the cluster's VMs,
   * so a VM created every few milliseconds must not bring a listing each.
   */
  requestRefresh(minGapMs = 1000): void {
    if (this.running || this.scheduled || this.halted) return;
    const wait = Math.max(0, this.startedAt + minGapMs - Date.now());
    this.scheduled = setTimeout(() => {
      this.scheduled = undefined;
      void this.refresh().catch((e: unknown) =>
        this.opts.log?.warn({ err: (e as Error).message }, 'listing cell VMs failed'),
      );
    }, wait);
  }

  /** Lists now (joining a listing already under way) and returns it. */
  refresh(): Promise<CellInstance[]> {
    this.running ??= (async () => {
      this.startedAt = Date.now();
      try {
        const list = await this.opts.provider.list();
        this.latest = list;
        this.at = Date.now();
        this.listings++;
        await this.opts.onObserve?.(list);
        for (const w of [...this.waiters]) w();
        return list;
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Starts listing every interval; a failed listing is logged and the next one tries again. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.halted = false;
    const tick = async () => {
      try {
        await this.refresh();
      } catch (e) {
        this.failures++;
        this.opts.log?.warn({ err: (e as Error).message }, 'listing cell VMs failed');
      }
      if (!this.stopped) this.timer = setTimeout(() => void tick(), this.opts.intervalMs ?? 5000);
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    this.halted = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.scheduled) clearTimeout(this.scheduled);
    this.scheduled = undefined;
    for (const w of [...this.waiters]) w();
  }

  /** The latest listing and when it was taken (0: never). */
  snapshot(): { instances: CellInstance[]; at: number } {
    return { instances: this.latest, at: this.at };
  }

  /**
   * Resolves with the VM once a listing shows it satisfying `ready` (e.g. RUNNING with an IP);
   * rejects after `timeoutMs` or when the observer stops.
   */
  waitFor(name: string, ready: (c: CellInstance) => boolean, timeoutMs: number): Promise<CellInstance> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const c = this.latest.find((i) => i.name === name);
        if (c && ready(c)) return done(() => resolve(c));
        if (this.stopped) return done(() => reject(new Error(`observer stopped while waiting for ${name}`)));
      };
      const t = setTimeout(
        () => done(() => reject(new Error(`${name} not ready after ${timeoutMs} ms`))),
        timeoutMs,
      );
      const done = (f: () => void) => {
        clearTimeout(t);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }
}
