/**
 * Image pull throughput of lib/oci's ImageStore from the real docker-registry on loopback: a cold
 * pull (download, sha256 verification, gzip and tar unpacking) of a ~50 MB image, the same with
 * zstd layers, a pull held by the store, and a cold pull served by a read-only cache directory.
 * MB/s counts the compressed bytes the pull fetched; CPU is this process's user+system time
 * (wall time depends on what else the machine runs, CPU time much less).
 *
 *   npx tsx bench/image-pull.ts [--mb 48] [--runs 3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageStore } from '../lib/oci/image-store.ts';
import { zstdImplementation } from '../lib/oci/decompress.ts';
import { buildImage, pushImage } from '../test/support/images.ts';
import { startRegistry } from '../test/support/registry.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const mb = arg('mb', 48);
  const runs = arg('runs', 3);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'kip-bench-pull-'));
  const reg = await startRegistry();
  try {
    const layout = await buildImage({ name: 'bench/big', tag: 'v1', paddingMB: mb, cmd: ['true'] });
    const gzRef = await pushImage(layout, 'v1', reg.host);
    const zstdRef = await pushImage(layout, 'v1', reg.host, undefined, {
      repository: 'bench/big-zstd',
      compression: 'zstd',
    });

    const cold = async (ref: string, extra: { cacheDir?: string } = {}) => {
      const times: number[] = [];
      const cpu: number[] = [];
      let size = 0;
      for (let i = 0; i < runs; i++) {
        const store = new ImageStore({
          root: mkdtempSync(path.join(tmp, 'store-')),
          insecureRegistries: [reg.host],
          ...extra,
        });
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        const img = await store.pull(ref);
        times.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu.push((c.user + c.system) / 1000);
        size = img.sizeBytes;
        await store.close();
        rmSync(store.root, { recursive: true, force: true });
      }
      const ms = median(times);
      return {
        ms: round(ms, 0),
        cpuMs: round(median(cpu), 0),
        sizeMB: round(size / 1e6),
        mbPerSec: round(size / 1e6 / (ms / 1000)),
      };
    };

    const gz = await cold(gzRef);
    console.log(
      `cold pull, gzip layers: ${gz.sizeMB} MB in ${gz.ms} ms = ${gz.mbPerSec} MB/s, ${gz.cpuMs} ms CPU in this process (median of ${runs})`,
    );
    const zs = await cold(zstdRef);
    console.log(
      `cold pull, zstd layers (${zstdImplementation}): ${zs.sizeMB} MB in ${zs.ms} ms = ${zs.mbPerSec} MB/s, ${zs.cpuMs} ms CPU`,
    );

    const store = new ImageStore({ root: path.join(tmp, 'held'), insecureRegistries: [reg.host] });
    await store.pull(gzRef);
    const heldTimes: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await store.pull(gzRef);
      heldTimes.push(performance.now() - t0);
    }
    const held = round(median(heldTimes), 2);
    console.log(`pull of an image the store holds: ${held} ms`);
    await store.close();

    // A cache directory holding blobs only (a plain OCI layout): the rootfs is unpacked locally.
    const blobsOnly = path.join(tmp, 'blobs-cache');
    const filler = new ImageStore({ root: blobsOnly, insecureRegistries: [reg.host] });
    await filler.pull(gzRef);
    await filler.close();
    rmSync(path.join(blobsOnly, 'rootfs'), { recursive: true, force: true });
    const fromCache = await cold(gzRef, { cacheDir: blobsOnly });
    console.log(
      `cold pull from a blob cache (no network): ${fromCache.ms} ms = ${fromCache.mbPerSec} MB/s unpacked, ${fromCache.cpuMs} ms CPU`,
    );

    console.log(
      JSON.stringify({
        bench: 'image-pull',
        imageMB: gz.sizeMB,
        coldGzipMs: gz.ms,
        coldGzipMBps: gz.mbPerSec,
        coldGzipCpuMs: gz.cpuMs,
        coldZstdMs: zs.ms,
        coldZstdMBps: zs.mbPerSec,
        coldZstdCpuMs: zs.cpuMs,
        zstd: zstdImplementation,
        heldMs: held,
        blobCacheMs: fromCache.ms,
        blobCacheMBps: fromCache.mbPerSec,
        blobCacheCpuMs: fromCache.cpuMs,
      }),
    );
  } finally {
    await reg.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
