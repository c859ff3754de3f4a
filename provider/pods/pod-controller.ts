/**
 * The pod controller, in virtual-kubelet's shape: the Kubernetes side of the pod path. Three work
 * queues, named by the direction data flows:
 * - syncFromKubernetes: informer changes → createPod / deletePod on the provider;
 * - syncStatusFromProvider: the provider's status pushes → the pod's status subresource;
 * - deleteFromKubernetes: once the provider has stopped the pod and deleted its VM, the final
 *   delete with gracePeriodSeconds=0 and a UID precondition (never deleting a newer pod of the
 *   same name).
 * At start, cells whose pods are gone from Kubernetes are deleted (dangling pods).
 */
import { PatchStrategy, setHeaderOptions, type CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';
import { apiStatus } from '../api-status.ts';
import { objectKey, type Informer } from '../informer.ts';
import { WorkQueue, type WorkQueueMetrics } from '../workqueue.ts';
import { isTerminalPhase } from './pod-status.ts';
import { PodNotFoundError, type PodLifecycleHandler, type PodNotifier } from './types.ts';

export interface PodControllerOptions {
  /** Pods with `spec.nodeName=<node>`. */
  informer: Informer<V1Pod>;
  core: CoreV1Api;
  provider: PodLifecycleHandler & PodNotifier;
  log: Logger;
  metrics?: WorkQueueMetrics;
  /** Workers per queue. Default 10 (a deletion holds its worker through the grace period). */
  workers?: number;
  /** Told once per pod, when its first Running status is written: seconds since its creation. */
  onRunning?: (seconds: number) => void;
}

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** How long a Pending status waits before it is written, so that a quick successor replaces it. */
export const PENDING_STATUS_DELAY_MS = 250;

export class PodController {
  readonly syncFromKubernetes: WorkQueue<string>;
  readonly syncStatusFromProvider: WorkQueue<string>;
  readonly deleteFromKubernetes: WorkQueue<string>;
  /** The provider's latest view of each pod, by `namespace/name`. */
  private readonly fromProvider = new Map<string, V1Pod>();
  /** The status last written per pod UID, to skip writes that change nothing. */
  private readonly written = new Map<string, string>();
  /** Pods whose start duration was reported (once per pod). */
  private readonly reportedRunning = new Set<string>();

  constructor(private readonly o: PodControllerOptions) {
    const q = (name: string) =>
      new WorkQueue<string>({ name, log: o.log, ...(o.metrics ? { metrics: o.metrics } : {}) });
    this.syncFromKubernetes = q('syncFromKubernetes');
    this.syncStatusFromProvider = q('syncStatusFromProvider');
    this.deleteFromKubernetes = q('deleteFromKubernetes');
  }

  /** Runs until `signal` aborts: deletes dangling cells, then works the three queues. */
  async run(signal: AbortSignal): Promise<void> {
    const { informer, provider, log } = this.o;
    provider.notifyPods((pod) => {
      const key = objectKey(pod);
      this.fromProvider.set(key, pod);
      // Waiting statuses (VM being created, booting, agent starting) follow each other quickly; a
      // short delay writes only the latest. Running and terminal statuses are written at once.
      if (pod.status?.phase === 'Pending') this.syncStatusFromProvider.addAfter(key, PENDING_STATUS_DELAY_MS);
      else this.syncStatusFromProvider.add(key);
    });
    await informer.ready;
    await this.deleteDanglingPods();
    informer.onChange((key) => this.syncFromKubernetes.add(key));
    for (const pod of informer.list()) this.syncFromKubernetes.add(objectKey(pod));
    const workers = this.o.workers ?? 10;
    const stop = () => {
      this.syncFromKubernetes.shutDown();
      this.syncStatusFromProvider.shutDown();
      this.deleteFromKubernetes.shutDown();
    };
    if (signal.aborted) stop();
    signal.addEventListener('abort', stop, { once: true });
    log.info({ workers }, 'pod controller running');
    await Promise.all([
      this.syncFromKubernetes.run(workers, (k) => this.syncPod(k)),
      this.syncStatusFromProvider.run(workers, (k) => this.syncStatus(k)),
      this.deleteFromKubernetes.run(workers, (k) => this.finalDelete(k)),
    ]);
  }

  /** Cells whose pod (by UID) is no longer in Kubernetes: stop and delete them. */
  private async deleteDanglingPods(): Promise<void> {
    const live = new Set(this.o.informer.list().map((p) => p.metadata!.uid));
    for (const pod of await this.o.provider.getPods()) {
      if (live.has(pod.metadata!.uid)) continue;
      this.o.log.info(
        { pod: `${pod.metadata!.namespace}/${pod.metadata!.name}` },
        'deleting the cell of a pod gone from Kubernetes',
      );
      // Only a force delete removes a pod before its kubelet stopped it: the user chose no grace
      // period, so the containers get one second. Not awaited one by one: a slow VM delete must
      // not hold up the rest of the start.
      const gone: V1Pod = { ...pod, metadata: { ...pod.metadata, deletionGracePeriodSeconds: 1 } };
      void this.o.provider.deletePod(gone, AbortSignal.timeout(600_000)).catch((err: unknown) => {
        if (!(err instanceof PodNotFoundError))
          this.o.log.warn(
            { pod: pod.metadata!.name, err: (err as Error).message },
            'deleting a dangling cell failed',
          );
      });
    }
  }

  private async syncPod(key: string): Promise<void> {
    const { informer, provider } = this.o;
    const pod = informer.get(key);
    const signal = AbortSignal.timeout(900_000);
    if (!pod) {
      // Gone from Kubernetes without passing through a graceful delete (force delete): clean up.
      const last = informer.lastKnown(key);
      if (last) {
        try {
          await provider.deletePod(last, signal);
        } catch (err) {
          if (!(err instanceof PodNotFoundError)) throw err;
        }
        informer.forgetDeleted(key);
      }
      this.fromProvider.delete(key);
      return;
    }
    if (pod.metadata?.deletionTimestamp) {
      try {
        await provider.deletePod(pod, signal);
      } catch (err) {
        if (!(err instanceof PodNotFoundError)) throw err;
      }
      this.deleteFromKubernetes.add(key);
      return;
    }
    if (isTerminalPhase(pod.status?.phase)) {
      // Finished: its status stays, its VM goes (a restart may find the cell still there).
      try {
        await provider.deletePod(pod, signal);
      } catch (err) {
        if (!(err instanceof PodNotFoundError)) throw err;
      }
      return;
    }
    const known = await provider.getPod(pod.metadata!.namespace!, pod.metadata!.name!);
    if (known && known.metadata?.uid === pod.metadata?.uid) await provider.updatePod(pod, signal);
    else await provider.createPod(pod, signal);
  }

  private async syncStatus(key: string): Promise<void> {
    const fromProvider = this.fromProvider.get(key);
    const current = this.o.informer.get(key);
    if (!fromProvider || !current || current.metadata?.uid !== fromProvider.metadata?.uid) return;
    // A terminal status in Kubernetes is final; nothing the provider says later replaces it.
    if (isTerminalPhase(current.status?.phase)) return;
    const body = JSON.stringify(fromProvider.status);
    const uid = current.metadata!.uid!;
    if (this.written.get(uid) === body) return;
    try {
      await this.o.core.patchNamespacedPodStatus(
        {
          name: current.metadata!.name!,
          namespace: current.metadata!.namespace!,
          body: { status: JSON.parse(body) as unknown },
        },
        MERGE_PATCH,
      );
      if (
        fromProvider.status?.phase === 'Running' &&
        !this.reportedRunning.has(uid) &&
        current.metadata?.creationTimestamp
      ) {
        this.reportedRunning.add(uid);
        this.o.onRunning?.((Date.now() - new Date(current.metadata.creationTimestamp).getTime()) / 1000);
      }
      this.written.set(uid, body);
      if (this.written.size > 50_000) this.written.delete(this.written.keys().next().value!);
    } catch (err) {
      if (apiStatus(err) === 404) return;
      throw err;
    }
  }

  private async finalDelete(key: string): Promise<void> {
    const pod = this.o.informer.get(key);
    if (!pod?.metadata?.deletionTimestamp) return;
    try {
      await this.o.core.deleteNamespacedPod({
        name: pod.metadata.name!,
        namespace: pod.metadata.namespace!,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid! } },
      });
      this.written.delete(pod.metadata.uid!);
      this.reportedRunning.delete(pod.metadata.uid!);
      this.o.log.info({ pod: key }, 'pod deleted');
    } catch (err) {
      // 404: already gone; 409: the UID precondition failed, a new pod of the same name is not ours to delete.
      const code = apiStatus(err);
      if (code === 404 || code === 409) return;
      throw err;
    }
  }
}
