import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from '../lib/log.ts';
import { chainId, MediaType, SHA256_DIGEST_RE, type Descriptor } from '../lib/oci/manifest.ts';
import { blobPath, readIndex, REF_NAME_ANNOTATION, writeAtomic } from '../lib/oci/oci-layout.ts';
import type { UsageRecord } from './usage-record.ts';

export interface PruneResult {
  /** References removed from index.json. */
  removed: string[];
  /** Blobs and unpacked trees deleted because no remaining image needs them. */
  blobsDeleted: number;
  rootfsDeleted: number;
  /** References still cached. */
  kept: number;
}

export interface PruneOptions {
  root: string;
  usage: UsageRecord;
  /** Normalised references some pod uses now: never pruned, whatever the record says. */
  inUse: Set<string>;
  /** Images unused for at least this long are removed. */
  maxAgeMs: number;
  now?: number;
  log?: Logger;
}

async function readJson(file: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Blobs (hex) and rootfs trees (hex) that the images in `manifests` need. */
async function reachable(
  root: string,
  manifests: Descriptor[],
): Promise<{ blobs: Set<string>; rootfs: Set<string> }> {
  const blobs = new Set<string>();
  const rootfs = new Set<string>();
  const visit = async (digest: string, depth: number): Promise<void> => {
    if (!SHA256_DIGEST_RE.test(digest) || blobs.has(digest.slice(7)) || depth > 2) return;
    blobs.add(digest.slice(7));
    const doc = await readJson(blobPath(root, digest));
    if (!doc) return;
    if (Array.isArray(doc.manifests)) {
      for (const m of doc.manifests as Descriptor[]) await visit(m.digest, depth + 1);
      return;
    }
    const config = doc.config as Descriptor | undefined;
    const layers = (doc.layers as Descriptor[] | undefined) ?? [];
    for (const l of layers) if (SHA256_DIGEST_RE.test(l.digest)) blobs.add(l.digest.slice(7));
    if (config && SHA256_DIGEST_RE.test(config.digest)) {
      blobs.add(config.digest.slice(7));
      const cfg = await readJson(blobPath(root, config.digest));
      const ids = (cfg?.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
      if (Array.isArray(ids) && ids.every((d) => typeof d === 'string'))
        rootfs.add(chainId(ids as string[]).slice(7));
    }
  };
  for (const m of manifests) await visit(m.digest, 0);
  return { blobs, rootfs };
}

/**
 * Removes from the cache the images no pod has used for `maxAgeMs`, then deletes the blobs and
 * unpacked trees no remaining image refers to. An image in `inUse` is never removed; an image
 * the record does not know yet starts its age now. The caller must hold the cache's write lock:
 * a pull running meanwhile could lose blobs it has written but not yet indexed.
 */
export async function prune(opts: PruneOptions): Promise<PruneResult> {
  const now = opts.now ?? Date.now();
  const { root, usage, inUse } = opts;
  const all = await readIndex(root);
  const keep: Descriptor[] = [];
  const removed: string[] = [];
  for (const d of all) {
    const ref = d.annotations?.[REF_NAME_ANNOTATION];
    if (!ref) {
      keep.push(d);
      continue;
    }
    if (inUse.has(ref)) {
      usage.touch(ref, now);
      keep.push(d);
      continue;
    }
    const last = usage.lastUsed(ref);
    if (last === undefined) {
      usage.touch(ref, now);
      keep.push(d);
    } else if (now - last >= opts.maxAgeMs) {
      removed.push(ref);
    } else {
      keep.push(d);
    }
  }
  // Records of images no longer cached are dropped, so the file does not grow forever.
  const cached = new Set(keep.map((d) => d.annotations?.[REF_NAME_ANNOTATION]));
  for (const [ref] of usage.entries()) if (!cached.has(ref) && !inUse.has(ref)) usage.forget(ref);
  if (removed.length > 0) {
    const doc = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: keep };
    await writeAtomic(path.join(root, 'index.json'), `${JSON.stringify(doc, null, 2)}\n`);
  }
  await usage.save();

  const need = await reachable(root, keep);
  let blobsDeleted = 0;
  let rootfsDeleted = 0;
  const blobDir = path.join(root, 'blobs', 'sha256');
  for (const hex of await fs.readdir(blobDir).catch(() => [] as string[])) {
    if (need.blobs.has(hex)) continue;
    await fs.rm(path.join(blobDir, hex), { force: true });
    blobsDeleted++;
  }
  const rootfsDir = path.join(root, 'rootfs');
  for (const hex of await fs.readdir(rootfsDir).catch(() => [] as string[])) {
    if (need.rootfs.has(hex)) continue;
    // Renamed away first, so a cell never sees a half-deleted tree under its name.
    const doomed = path.join(rootfsDir, `.deleting-${hex}-${process.pid}`);
    if (hex.startsWith('.deleting-')) {
      await fs.rm(path.join(rootfsDir, hex), { recursive: true, force: true });
      continue;
    }
    await fs.rename(path.join(rootfsDir, hex), doomed);
    await makeWritable(doomed);
    await fs.rm(doomed, { recursive: true, force: true });
    rootfsDeleted++;
  }
  if (removed.length) opts.log?.info({ removed, blobsDeleted, rootfsDeleted }, 'pruned unused images');
  return { removed, blobsDeleted, rootfsDeleted, kept: cached.size };
}

/** Unpacked layers can hold read-only directories, which rm cannot empty as a non-root user. */
async function makeWritable(dir: string): Promise<void> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  await fs.chmod(dir, 0o700).catch(() => undefined);
  for (const e of entries) if (e.isDirectory()) await makeWritable(path.join(dir, e.name));
}
