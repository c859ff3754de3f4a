import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../lib/log.ts';

export interface LeaderElectionOptions {
  coordination: CoordinationV1Api;
  namespace: string;
  leaseName: string;
  identity: string;
  log: Logger;
  /** How long a leader holds the Lease without renewing (whole seconds in the Lease). */
  leaseDurationMs: number;
  /** Called when this replica becomes the leader, with a signal aborted when it stops being one. */
  onStartedLeading: (signal: AbortSignal) => void;
  /** Called when leadership is lost (or given up at stop). */
  onStoppedLeading?: () => void;
}

function apiStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * Leader election over a coordination.k8s.io Lease, in client-go's manner: the holder renews every
 * third of the duration; another replica takes the Lease over only once it has seen the same
 * renewTime for a whole duration on its own clock (so clock skew between replicas does not matter).
 * A leader that cannot renew for two thirds of the duration steps down before anyone can take over,
 * so two replicas never write the cache at once.
 */
export class LeaderElector {
  private leading?: AbortController;
  private lastRenew = 0;
  private observed?: { renewTime: string; holder: string; at: number };
  private stopped = false;
  private wake?: AbortController;
  private loop?: Promise<void>;

  constructor(private readonly opts: LeaderElectionOptions) {}

  isLeader(): boolean {
    return this.leading !== undefined;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops campaigning; a leader releases the Lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.abort();
    await this.loop;
    if (this.leading) {
      this.stepDown('stopping');
      await this.release().catch((err: unknown) =>
        this.opts.log.warn({ err: (err as Error).message }, 'could not release the lease'),
      );
    }
  }

  private get durationSeconds(): number {
    return Math.max(1, Math.ceil(this.opts.leaseDurationMs / 1000));
  }

  private async run(): Promise<void> {
    const period = Math.max(100, Math.floor(this.opts.leaseDurationMs / 3));
    while (!this.stopped) {
      try {
        const held = await this.tryAcquireOrRenew();
        if (held) {
          this.lastRenew = Date.now();
          if (!this.leading) {
            this.leading = new AbortController();
            this.opts.log.info(
              { lease: this.opts.leaseName, identity: this.opts.identity },
              'became the leader',
            );
            this.opts.onStartedLeading(this.leading.signal);
          }
        } else if (this.leading) {
          this.stepDown('another replica holds the lease');
        }
      } catch (err) {
        this.opts.log.warn(
          { err: (err as Error).message, lease: this.opts.leaseName },
          'lease update failed',
        );
      }
      if (this.leading && Date.now() - this.lastRenew > (this.opts.leaseDurationMs * 2) / 3)
        this.stepDown('could not renew the lease in time');
      this.wake = new AbortController();
      await sleep(period, undefined, { signal: this.wake.signal }).catch(() => undefined);
    }
  }

  private stepDown(why: string): void {
    const c = this.leading;
    if (!c) return;
    this.leading = undefined;
    this.opts.log.warn({ lease: this.opts.leaseName, why }, 'stopped leading');
    c.abort(new Error(`no longer the leader: ${why}`));
    this.opts.onStoppedLeading?.();
  }

  private spec(prev?: V1Lease): V1Lease['spec'] {
    const now = new V1MicroTime(Date.now());
    const same = prev?.spec?.holderIdentity === this.opts.identity;
    return {
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: this.durationSeconds,
      acquireTime: same && prev?.spec?.acquireTime ? prev.spec.acquireTime : now,
      renewTime: now,
      leaseTransitions: (prev?.spec?.leaseTransitions ?? 0) + (same || !prev ? 0 : 1),
    };
  }

  /** True when this replica holds the Lease after the call. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { coordination, namespace, leaseName, identity } = this.opts;
    let lease: V1Lease;
    try {
      lease = await coordination.readNamespacedLease({ name: leaseName, namespace });
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
      try {
        await coordination.createNamespacedLease({
          namespace,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: leaseName, namespace },
            spec: this.spec(),
          },
        });
        return true;
      } catch (e) {
        if (apiStatus(e) === 409) return false;
        throw e;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const renewTime = String(lease.spec?.renewTime ?? '');
    if (holder && holder !== identity) {
      if (!this.observed || this.observed.renewTime !== renewTime || this.observed.holder !== holder)
        this.observed = { renewTime, holder, at: Date.now() };
      const duration = (lease.spec?.leaseDurationSeconds ?? this.durationSeconds) * 1000;
      if (Date.now() - this.observed.at < duration) return false;
      this.opts.log.info({ lease: leaseName, previous: holder }, 'the lease expired; taking it over');
    }
    try {
      await coordination.replaceNamespacedLease({
        name: leaseName,
        namespace,
        body: { ...lease, spec: this.spec(lease) },
      });
      return true;
    } catch (err) {
      // Another replica wrote first (resourceVersion moved): not ours this round.
      if (apiStatus(err) === 409) return false;
      throw err;
    }
  }

  private async release(): Promise<void> {
    const { coordination, namespace, leaseName, identity } = this.opts;
    const lease = await coordination.readNamespacedLease({ name: leaseName, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    await coordination.replaceNamespacedLease({
      name: leaseName,
      namespace,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } },
    });
  }
}
