// Figures for the image cache: a cell store's pull of a 64 MB image from the registry (cold)
// against the same pull answered by a cache the controller's ImageStore filled, and the time
// pruning takes to remove it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ImageStore } from '../lib/oci/image-store.ts';
import { prune } from '../image-cache/pruner.ts';
import { UsageRecord } from '../image-cache/usage-record.ts';
import { buildImage, pushImage } from '../test/support/images.ts';
import { startRegistry } from '../test/support/registry.ts';

const SIZE_MB = Number(process.env.SIZE_MB ?? 64);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await fn();
  return [v, performance.now() - t];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kip-bench-image-cache-'));
  const registry = await startRegistry();
  try {
    const layout = await buildImage({ name: 'bench/cache', tag: '1', paddingMB: SIZE_MB });
    const ref = await pushImage(layout, '1', registry.host);
    const insecureRegistries = [registry.host];

    const cache = new ImageStore({ root: path.join(dir, 'share'), insecureRegistries });
    const [filled, fillMs] = await timed(() => cache.pull(ref));
    await cache.close();

    const cold = new ImageStore({ root: path.join(dir, 'cold'), insecureRegistries });
    const [, coldMs] = await timed(() => cold.pull(ref));
    await cold.close();

    const cell = new ImageStore({
      root: path.join(dir, 'cell'),
      cacheDir: path.join(dir, 'share'),
      insecureRegistries,
    });
    const [hit, cacheMs] = await timed(() => cell.pull(ref));
    await cell.close();

    const usage = new UsageRecord(path.join(dir, 'share'));
    usage.touch(hit.reference, 0);
    const [pruned, pruneMs] = await timed(() =>
      prune({ root: path.join(dir, 'share'), usage, inUse: new Set(), maxAgeMs: 1 }),
    );

    const mb = filled.sizeBytes / 1e6;
    console.log(`image: ${mb.toFixed(1)} MB compressed`);
    console.log(`controller fill (registry → share): ${fillMs.toFixed(0)} ms`);
    console.log(
      `cell pull from the registry (cold): ${coldMs.toFixed(0)} ms, ${(mb / (coldMs / 1000)).toFixed(1)} MB/s`,
    );
    console.log(
      `cell pull from the cache: ${cacheMs.toFixed(0)} ms, ${cell.downloadCount} blobs downloaded (source ${hit.source})`,
    );
    console.log(
      `prune of the image: ${pruneMs.toFixed(0)} ms, ${pruned.blobsDeleted} blobs and ${pruned.rootfsDeleted} trees deleted`,
    );
    console.log(
      JSON.stringify({
        imageMB: Number(mb.toFixed(1)),
        fillMs: Math.round(fillMs),
        coldPullMs: Math.round(coldMs),
        cachePullMs: Math.round(cacheMs),
        cacheDownloads: cell.downloadCount,
        pruneMs: Math.round(pruneMs),
      }),
    );
  } finally {
    await registry.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
