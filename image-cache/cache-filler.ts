import type { CoreV1Api, KubeConfig, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.ts';
import { ImagePullError, ImageStore } from '../lib/oci/image-store.ts';
import { readIndex, REF_NAME_ANNOTATION } from '../lib/oci/oci-layout.ts';
import { parseReference } from '../lib/oci/reference.ts';
import { Informer } from '../provider/informer.ts';
import { WorkQueue } from '../provider/workqueue.ts';
import { CacheLock } from './cache-lock.ts';
import type { ImageCacheMetrics } from './metrics.ts';
import { prune, type PruneResult } from './pruner.ts';
import { podImages, pullSecretConfigs } from './pull-secrets.ts';
import { UsageRecord } from './usage-record.ts';

export interface CacheControllerOptions {
  kc: KubeConfig;
  core: CoreV1Api;
  /** The cache root: the mounted share, laid out as an ImageStore root. */
  root: string;
  log: Logger;
  metrics: ImageCacheMetrics;
  insecureRegistries?: string[];
  caCerts?: string[];
  pruneAfterMs: number;
  pruneIntervalMs: number;
}

function isActive(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase !== 'Succeeded' && phase !== 'Failed';
}

function normalized(image: string): string | undefined {
  try {
    return parseReference(image).normalized;
  } catch {
    return undefined;
  }
}

/**
 * Watches every pod in the cluster and keeps the images they use in the cache: each pod key goes
 * through a work queue whose handler pulls the pod's images into an ImageStore rooted at the share
 * (with the pod's imagePullSecrets). The informer runs on every replica, so a new leader starts
 * with a warm view; only while `leading` does anything get written.
 */
export class CacheController {
  readonly store: ImageStore;
  readonly usage: UsageRecord;
  private readonly informer: Informer<V1Pod>;
  private queue?: WorkQueue<string>;
  private leading?: AbortSignal;
  private readonly lock = new CacheLock();
  private pruneTimer?: NodeJS.Timeout;
  private workers?: Promise<void>;
  private lastPrune?: Promise<unknown>;

  constructor(private readonly opts: CacheControllerOptions) {
    this.store = new ImageStore({
      root: opts.root,
      insecureRegistries: opts.insecureRegistries,
      caCerts: opts.caCerts,
      log: opts.log,
    });
    this.usage = new UsageRecord(opts.root);
    this.informer = new Informer<V1Pod>({
      kc: opts.kc,
      name: 'pods',
      path: '/api/v1/pods',
      list: () => opts.core.listPodForAllNamespaces(),
      log: opts.log,
    });
    this.informer.onChange((key, event) => {
      if (event !== 'delete') this.queue?.add(key);
    });
  }

  /** Starts watching pods (every replica does, leader or not). */
  async start(): Promise<void> {
    this.informer.start();
    await this.informer.ready;
  }

  /** Normalised references of the images active pods use now. */
  imagesInUse(): Set<string> {
    const out = new Set<string>();
    for (const pod of this.informer.list()) {
      if (!isActive(pod)) continue;
      for (const img of podImages(pod)) {
        const n = normalized(img);
        if (n) out.add(n);
      }
    }
    return out;
  }

  /** Called when this replica becomes the leader: fill the cache for every pod, prune on a timer. */
  lead(signal: AbortSignal): void {
    this.leading = signal;
    this.opts.metrics.leader.set(1);
    const queue = new WorkQueue<string>({ name: 'imageCache', log: this.opts.log });
    this.queue = queue;
    void this.usage.load().then(() => {
      for (const pod of this.informer.list()) queue.add(`${pod.metadata?.namespace}/${pod.metadata?.name}`);
    });
    this.workers = queue.run(2, (key) => this.sync(key, signal));
    const tick = () => {
      this.lastPrune = this.pruneNow().catch((err: unknown) =>
        this.opts.log.warn({ err: (err as Error).message }, 'pruning failed; retried at the next interval'),
      );
    };
    this.pruneTimer = setInterval(tick, this.opts.pruneIntervalMs);
    signal.addEventListener('abort', () => this.follow(), { once: true });
  }

  /** Stops writing (leadership lost or stopping); pulls under way are aborted. */
  private follow(): void {
    this.opts.metrics.leader.set(0);
    clearInterval(this.pruneTimer);
    this.queue?.shutDown();
    this.queue = undefined;
    this.leading = undefined;
  }

  /** Pulls a pod's images into the cache. */
  private async sync(key: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const pod = this.informer.get(key);
    if (!pod || !isActive(pod)) return;
    const images = podImages(pod);
    if (images.length === 0) return;
    const dockerConfigs = await pullSecretConfigs(this.opts.core, pod, this.opts.log);
    let retry: Error | undefined;
    for (const image of images) {
      if (signal.aborted) return;
      try {
        const got = await this.lock.shared(() =>
          this.store.pull(image, { dockerConfigs, signal, pullPolicy: 'IfNotPresent' }),
        );
        this.usage.touch(got.reference);
        this.opts.metrics.pulls.inc({ result: got.source === 'registry' ? 'pulled' : 'cached' });
        this.opts.metrics.downloadedBytes.inc(got.downloadedBytes);
        if (got.source === 'registry')
          this.opts.log.info({ pod: key, image: got.reference, bytes: got.downloadedBytes }, 'image cached');
      } catch (err) {
        if (signal.aborted) return;
        const reason = err instanceof ImagePullError ? err.reason : 'Unavailable';
        this.opts.metrics.pulls.inc({ result: reason });
        this.opts.log.warn(
          { pod: key, image, reason, err: (err as Error).message },
          'could not cache the image',
        );
        // Registry trouble passes; a wrong name or missing credentials waits for the pod to change.
        if (reason === 'Unavailable') retry = err as Error;
      }
    }
    await this.usage
      .save()
      .catch((err: unknown) =>
        this.opts.log.warn({ err: (err as Error).message }, 'could not write the usage record'),
      );
    await this.refreshGauges();
    if (retry) throw retry;
  }

  /** Prunes now (the leader's timer calls it; tests too). Throws when not the leader. */
  async pruneNow(): Promise<PruneResult> {
    if (!this.leading || this.leading.aborted) throw new Error('only the leader prunes the cache');
    const inUse = this.imagesInUse();
    const result = await this.lock.exclusive(() =>
      prune({
        root: this.opts.root,
        usage: this.usage,
        inUse,
        maxAgeMs: this.opts.pruneAfterMs,
        log: this.opts.log,
      }),
    );
    this.opts.metrics.prunedImages.inc(result.removed.length);
    await this.refreshGauges();
    return result;
  }

  private async refreshGauges(): Promise<void> {
    const index = await readIndex(this.opts.root);
    this.opts.metrics.cachedImages.set(index.filter((d) => d.annotations?.[REF_NAME_ANNOTATION]).length);
    this.opts.metrics.imagesInUse.set(this.imagesInUse().size);
  }

  async stop(): Promise<void> {
    clearInterval(this.pruneTimer);
    this.queue?.shutDown();
    await this.workers;
    await this.lastPrune;
    await this.informer.stop();
    await this.store.close();
  }
}
