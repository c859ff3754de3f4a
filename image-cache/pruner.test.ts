import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ImageStore } from '../lib/oci/image-store.ts';
import { readIndex, REF_NAME_ANNOTATION } from '../lib/oci/oci-layout.ts';
import { buildImage, pushImage } from '../test/support/images.ts';
import { startRegistry, type StartedRegistry } from '../test/support/registry.ts';
import { prune } from './pruner.ts';
import { UsageRecord } from './usage-record.ts';

describe('pruner', function () {
  this.timeout(60_000);
  let registry: StartedRegistry;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'kip-pruner-test-'));
    registry = await startRegistry();
  });
  after(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never removes an image in use however old its record; removes old unused ones and what only they need', async () => {
    const root = path.join(dir, 'share');
    const [a, b, c] = await Promise.all(
      ['old-used', 'old-unused', 'recent'].map((n) =>
        buildImage({ name: `kip/${n}`, tag: '1', files: { [`/${n}`]: n } }),
      ),
    );
    const refs = await Promise.all([a!, b!, c!].map((l) => pushImage(l, '1', registry.host)));
    const store = new ImageStore({ root, insecureRegistries: [registry.host] });
    const pulled = [];
    for (const r of refs) pulled.push(await store.pull(r));
    await store.close();
    const [used, unused, recent] = pulled.map((p) => p.reference) as [string, string, string];

    const now = Date.now();
    const usage = new UsageRecord(root);
    usage.touch(used, now - 10 * 86_400_000);
    usage.touch(unused, now - 10 * 86_400_000);
    usage.touch(recent, now - 3_600_000);
    const res = await prune({ root, usage, inUse: new Set([used]), maxAgeMs: 86_400_000, now });
    assert.deepEqual(res.removed, [unused]);
    assert.equal(res.rootfsDeleted, 1);
    assert.ok(res.blobsDeleted >= 3, `blobs deleted: ${res.blobsDeleted}`);
    const names = (await readIndex(root)).map((d) => d.annotations?.[REF_NAME_ANNOTATION]).sort();
    assert.deepEqual(names, [used, recent].sort());
    await fs.access(pulled[0]!.rootfs);
    await fs.access(pulled[2]!.rootfs);
    await assert.rejects(fs.access(pulled[1]!.rootfs));

    // The record on the share: the in-use image's use is now, the removed one forgotten.
    const reread = new UsageRecord(root);
    await reread.load();
    assert.equal(reread.lastUsed(used), now);
    assert.equal(reread.lastUsed(unused), undefined);

    // What is left is whole: a cell pulls both from it with nothing downloaded.
    const cell = new ImageStore({
      root: path.join(dir, 'cell'),
      cacheDir: root,
      insecureRegistries: [registry.host],
    });
    try {
      for (const r of [refs[0]!, refs[2]!]) assert.equal((await cell.pull(r)).source, 'cache');
      assert.equal(cell.downloadCount, 0);
    } finally {
      await cell.close();
    }
  });
});
