import { Counter, Gauge, type Registry } from 'prom-client';
import { createMetricsRegistry } from '../lib/metrics.ts';

/** The controller's Prometheus metrics, served on /metrics. */
export interface ImageCacheMetrics {
  registry: Registry;
  /** 1 while this replica holds the Lease (and writes the cache). */
  leader: Gauge;
  /** Images the cache's index.json names. */
  cachedImages: Gauge;
  /** Images pods use now (distinct normalised references). */
  imagesInUse: Gauge;
  /** Pulls into the cache by result: `cached` (already there), `pulled`, or the ImagePullError reason. */
  pulls: Counter<'result'>;
  /** Bytes downloaded from registries into the cache. */
  downloadedBytes: Counter;
  /** Images removed by pruning. */
  prunedImages: Counter;
}

export function createImageCacheMetrics(): ImageCacheMetrics {
  const registry = createMetricsRegistry('kip_image_cache');
  const registers = [registry];
  return {
    registry,
    leader: new Gauge({
      name: 'kip_image_cache_leader',
      help: '1 while this replica is the leader',
      registers,
    }),
    cachedImages: new Gauge({ name: 'kip_image_cache_images', help: 'Images held in the cache', registers }),
    imagesInUse: new Gauge({
      name: 'kip_image_cache_images_in_use',
      help: 'Distinct images pods use now',
      registers,
    }),
    pulls: new Counter({
      name: 'kip_image_cache_pulls_total',
      help: 'Pulls into the cache, by result',
      labelNames: ['result'] as const,
      registers,
    }),
    downloadedBytes: new Counter({
      name: 'kip_image_cache_downloaded_bytes_total',
      help: 'Bytes downloaded from registries into the cache',
      registers,
    }),
    prunedImages: new Counter({
      name: 'kip_image_cache_pruned_images_total',
      help: 'Images removed by pruning',
      registers,
    }),
  };
}
