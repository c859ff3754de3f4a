import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';
import { sleep, systemClock, type Clock } from '../clock.ts';
import { apiStatus } from '../api-status.ts';

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';

export interface LeaseControllerOptions {
  coordination: CoordinationV1Api;
  nodeName: string;
  /** The node's current UID (the lease's owner); renewal waits until it is known. */
  nodeUid: () => string | undefined;
  log: Logger;
  clock?: Clock;
  /** Lease duration (default 40 s, the kubelet's). */
  durationSeconds?: number;
  /** Renewal interval (default a quarter of the duration: 10 s). */
  renewIntervalMs?: number;
  /** Conflicting updates retried per renewal (default 5). */
  maxUpdateRetries?: number;
}

/**
 * Keeps the node's Lease in kube-node-lease renewed: the node lifecycle controller reads it as the
 * node's heartbeat. The Lease is owned by the Node, so deleting the node removes it too; when the
 * node is re-created, the owner reference follows the new UID.
 * The lease is renewed while the provider runs even if a dependency is unhealthy: readiness is
 * said by the Ready condition, and a silent lease would make Kubernetes evict every pod after 5
 * minutes for what may be a short etcd or cloud outage.
 */
export class LeaseController {
  private readonly clock: Clock;
  private readonly duration: number;
  private readonly interval: number;
  private readonly maxRetries: number;
  private lease: V1Lease | undefined;
  private renewals = 0;

  constructor(private readonly opts: LeaseControllerOptions) {
    this.clock = opts.clock ?? systemClock;
    this.duration = opts.durationSeconds ?? 40;
    this.interval = opts.renewIntervalMs ?? this.duration * 250;
    this.maxRetries = opts.maxUpdateRetries ?? 5;
  }

  /** Successful renewals since start. */
  renewCount(): number {
    return this.renewals;
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let wait = this.interval;
      try {
        if (this.opts.nodeUid()) await this.renew();
        // The node is not registered yet: look again soon rather than a whole interval later.
        else wait = Math.min(this.interval, 250);
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message, node: this.opts.nodeName }, 'lease renewal failed');
        this.lease = undefined;
      }
      await sleep(this.clock, wait, signal);
    }
  }

  /** Renews once: update from the cached copy, re-reading on conflict, creating when absent. */
  async renew(): Promise<void> {
    const { coordination, nodeName } = this.opts;
    for (let attempt = 0; ; attempt++) {
      if (!this.lease) {
        const got = await this.getOrCreate();
        if (got === 'conflict' && attempt + 1 < this.maxRetries) continue;
        if (!got || got === 'conflict') return;
        this.lease = got.lease;
        if (got.created) return;
      }
      const body = this.withRenewal(this.lease);
      try {
        this.lease = await coordination.replaceNamespacedLease({
          name: nodeName,
          namespace: NODE_LEASE_NAMESPACE,
          body,
        });
        this.renewals++;
        return;
      } catch (err) {
        const status = apiStatus(err);
        this.lease = undefined;
        if ((status === 409 || status === 404) && attempt + 1 < this.maxRetries) continue;
        throw err;
      }
    }
  }

  /** The live lease, or a new one (already renewed); 'conflict' when another writer created it first. */
  private async getOrCreate(): Promise<{ lease: V1Lease; created: boolean } | 'conflict' | undefined> {
    const { coordination, nodeName } = this.opts;
    try {
      return {
        lease: await coordination.readNamespacedLease({ name: nodeName, namespace: NODE_LEASE_NAMESPACE }),
        created: false,
      };
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
    }
    const uid = this.opts.nodeUid();
    // Never create an unowned lease: it would outlive the node.
    if (!uid) return undefined;
    try {
      const created = await coordination.createNamespacedLease({
        namespace: NODE_LEASE_NAMESPACE,
        body: this.withRenewal({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: nodeName, namespace: NODE_LEASE_NAMESPACE },
        }),
      });
      this.renewals++;
      this.opts.log.info({ node: nodeName }, 'created the node lease');
      return { lease: created, created: true };
    } catch (err) {
      if (apiStatus(err) === 409) return 'conflict';
      throw err;
    }
  }

  private withRenewal(lease: V1Lease): V1Lease {
    const uid = this.opts.nodeUid();
    const owner = uid
      ? [{ apiVersion: 'v1', kind: 'Node', name: this.opts.nodeName, uid, blockOwnerDeletion: false }]
      : lease.metadata?.ownerReferences;
    return {
      ...lease,
      metadata: { ...lease.metadata, ownerReferences: owner },
      spec: {
        ...lease.spec,
        holderIdentity: this.opts.nodeName,
        leaseDurationSeconds: this.duration,
        renewTime: new V1MicroTime(this.clock.now()),
      },
    };
  }
}
