import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from '../log.ts';
import { digestMismatch, downloadBlob, GrowingFile } from './blob-download.ts';
import { findCredentials, type RegistryCredential } from './credentials.ts';
import { ImagePullError, isAbort } from './errors.ts';
import { applyLayer, LayerFormatError } from './layer-unpack.ts';
import {
  chainId,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  sha256Digest,
  type Descriptor,
  type ImageConfig,
  type Platform,
} from './manifest.ts';
import { blobPath, exists, findRef, initLayout, LayoutIndex, writeAtomic } from './oci-layout.ts';
import { parseReference, type ImageReference } from './reference.ts';
import { RegistryClient, type RequestContext } from './registry-client.ts';
import { Semaphore, SharedTasks } from './shared-task.ts';

export { ImagePullError } from './errors.ts';
export type { ImagePullReason } from './errors.ts';
export type { ImageConfig } from './manifest.ts';

export interface ImageStoreOptions {
  /** The store's directory: an OCI image layout (blobs/, index.json) plus rootfs/<chainID>/ and tmp/. */
  root: string;
  /**
   * A read-only image cache consulted before the network: a directory of the store's layout
   * (an OCI image layout whose index.json names images by their full reference, optionally
   * with rootfs/<chainID>/ trees used in place) or a plain OCI image layout.
   */
  cacheDir?: string;
  /** `host:port` of registries reached over plain http. */
  insecureRegistries?: string[];
  /** Extra PEM CA certificates trusted for https registries. */
  caCerts?: string[];
  log?: Logger;
  /** The platform picked from image indexes (default linux/amd64). */
  platform?: Platform;
  /** Blobs downloaded at once per pull (default 3). */
  downloadConcurrency?: number;
  /** Attempts per registry request on connection errors, 429 and 5xx (default 3). */
  requestAttempts?: number;
}

/** The kubelet's imagePullPolicy. */
export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

export interface PullProgress {
  completedBytes: number;
  totalBytes: number;
}

export interface PullOptions {
  /** dockerconfigjson documents (the pod's imagePullSecrets). */
  dockerConfigs?: string[];
  signal?: AbortSignal;
  onProgress?: (p: PullProgress) => void;
  /**
   * IfNotPresent (default): an image this store or the cache already holds under this
   * reference is used without asking the registry. Always: the registry resolves the reference
   * (content already held is not downloaded again); if the registry cannot be reached, a held
   * copy is used. Never: only held images; otherwise NotFound.
   */
  pullPolicy?: PullPolicy;
}

export interface PulledImage {
  /** The reference as asked, normalised (docker.io/library/busybox:latest style). */
  reference: string;
  /** The digest the reference resolved to (an image index's digest when it names an index). */
  digest: string;
  /** What the kubelet reports as imageID: `<registry>/<repository>@<digest>`. */
  imageId: string;
  /** The image config's `config` section. */
  config: ImageConfig;
  /** Absolute path of the unpacked filesystem; read-only for callers, shared by every user of the image. */
  rootfs: string;
  /** Compressed size of the config and layers (what a cold pull downloads). */
  sizeBytes: number;
  /** Bytes this pull waited on from registries (0 when everything was held). */
  downloadedBytes: number;
  /** Where the reference was resolved: this store, the read-only cache, or the registry. */
  source: 'store' | 'cache' | 'registry';
}

interface Resolved {
  digest: string;
  desc: Descriptor;
  source: PulledImage['source'];
  /** The manifest bytes when they came from the registry (not yet stored). */
  body?: Buffer;
  contentType?: string;
}

function credentialKey(creds: RegistryCredential[]): string {
  return createHash('sha256')
    .update(creds.map((c) => `${c.username}\0${c.password}`).join('\0'))
    .digest('hex')
    .slice(0, 16);
}

/**
 * A content-addressed image store: pulls images over the OCI distribution API (or finds them in
 * a read-only cache), verifies every blob's sha256, and unpacks each distinct layer stack once
 * into rootfs/<chainID>, shared by every container and pod that uses it. Concurrent pulls of
 * the same image share one download. One process writes a store at a time.
 */
export class ImageStore {
  readonly root: string;
  readonly cacheDir?: string;
  private readonly client: RegistryClient;
  private readonly log?: Logger;
  private readonly platform: Platform;
  private readonly index: LayoutIndex;
  private readonly pulls = new SharedTasks<PulledImage, PullProgress>();
  private readonly blobs = new SharedTasks<string, number>();
  private readonly rootfses = new SharedTasks<string>();
  private readonly downloads: number;
  private ready?: Promise<void>;
  // Blob downloads in progress, readable while they grow, and a signal when one starts.
  private readonly growing = new Map<string, GrowingFile>();
  private readonly started = new EventEmitter().setMaxListeners(0);
  /** Blobs this store downloaded from registries since it was created (for tests and metrics). */
  downloadCount = 0;

  constructor(opts: ImageStoreOptions) {
    this.root = path.resolve(opts.root);
    this.cacheDir = opts.cacheDir ? path.resolve(opts.cacheDir) : undefined;
    this.log = opts.log;
    this.platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
    this.downloads = opts.downloadConcurrency ?? 3;
    this.client = new RegistryClient({
      insecureRegistries: opts.insecureRegistries,
      caCerts: opts.caCerts,
      log: opts.log,
      attempts: opts.requestAttempts,
    });
    this.index = new LayoutIndex(this.root);
  }

  /** Closes the registry connections. */
  async close(): Promise<void> {
    await this.client.close();
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      await initLayout(this.root);
      await fs.mkdir(path.join(this.root, 'rootfs'), { recursive: true });
      // Whatever is in tmp/ was left by an interrupted pull: never complete, never used.
      await fs.rm(path.join(this.root, 'tmp'), { recursive: true, force: true });
      await fs.mkdir(path.join(this.root, 'tmp'), { recursive: true });
    })();
    this.ready.catch(() => (this.ready = undefined));
    return this.ready;
  }

  /**
   * Pulls `ref` and returns its unpacked filesystem and config. Throws ImagePullError (or the
   * signal's reason when aborted). Concurrent calls for the same reference and credentials share
   * one pull; different references to the same content share blobs and the rootfs.
   */
  async pull(ref: string, opts: PullOptions = {}): Promise<PulledImage> {
    const parsed = parseReference(ref);
    const policy = opts.pullPolicy ?? 'IfNotPresent';
    const creds = findCredentials(opts.dockerConfigs ?? [], parsed.registry, parsed.repository);
    const key = `${parsed.normalized}|${policy}|${credentialKey(creds)}`;
    return this.pulls.run(
      key,
      async (signal, progress) => {
        const started = Date.now();
        try {
          await this.init();
          const image = await this.doPull(
            ref,
            parsed,
            policy,
            { image: ref, credentials: creds, signal },
            progress,
          );
          this.log?.info(
            { image: image.reference, digest: image.digest, source: image.source, ms: Date.now() - started },
            'image ready',
          );
          return image;
        } catch (err) {
          if (err instanceof ImagePullError || isAbort(err) || signal.aborted) throw err;
          throw new ImagePullError(
            'Unavailable',
            `Failed to pull image "${ref}": ${(err as Error).message}; retry, and check the cell's disk if it persists`,
            { cause: err },
          );
        }
      },
      { signal: opts.signal, onProgress: opts.onProgress },
    );
  }

  /** The path of blob `digest` in this store or the cache, if either holds it. */
  private async heldBlob(digest: string): Promise<{ path: string; inStore: boolean } | undefined> {
    const own = blobPath(this.root, digest);
    if (await exists(own)) return { path: own, inStore: true };
    if (this.cacheDir) {
      const cached = blobPath(this.cacheDir, digest);
      if (await exists(cached)) return { path: cached, inStore: false };
    }
    return undefined;
  }

  /** Finds `ref` in this store, then in the cache. */
  private async resolveHeld(ref: ImageReference): Promise<Resolved | undefined> {
    const places: [string, Resolved['source']][] = [[this.root, 'store']];
    if (this.cacheDir) places.push([this.cacheDir, 'cache']);
    for (const [dir, source] of places) {
      if (ref.digest) {
        if (await exists(blobPath(dir, ref.digest))) {
          const st = await fs.stat(blobPath(dir, ref.digest));
          return { digest: ref.digest, desc: { mediaType: '', digest: ref.digest, size: st.size }, source };
        }
        continue;
      }
      const desc = await findRef(dir, ref.normalized);
      if (desc && (await exists(blobPath(dir, desc.digest)))) return { digest: desc.digest, desc, source };
    }
    return undefined;
  }

  private async resolveRemote(ref: ImageReference, ctx: RequestContext): Promise<Resolved> {
    const reference = ref.digest ?? ref.tag!;
    const answer = await this.client.getManifest(ref, reference, ctx);
    const got = sha256Digest(answer.body);
    const expected = ref.digest ?? answer.digestHeader;
    if (expected && expected.startsWith('sha256:') && expected !== got) {
      throw digestMismatch(ctx.image, ref.registry, `manifest "${reference}"`, expected, got);
    }
    return {
      digest: got,
      desc: { mediaType: answer.contentType ?? '', digest: got, size: answer.body.length },
      source: 'registry',
      body: answer.body,
      contentType: answer.contentType,
    };
  }

  /** A manifest by digest: from the store or the cache, else from the registry (verified, then stored). */
  private async manifestBytes(
    ref: ImageReference,
    digest: string,
    ctx: RequestContext,
  ): Promise<{ body: Buffer; contentType?: string }> {
    const held = await this.heldBlob(digest);
    if (held) {
      const body = await fs.readFile(held.path);
      if (sha256Digest(body) === digest) return { body };
      if (held.inStore) await fs.rm(held.path, { force: true });
      this.log?.warn({ digest, path: held.path }, 'held manifest is corrupt; fetching it again');
    }
    const answer = await this.client.getManifest(ref, digest, ctx);
    const got = sha256Digest(answer.body);
    if (got !== digest) throw digestMismatch(ctx.image, ref.registry, `manifest ${digest}`, digest, got);
    await writeAtomic(blobPath(this.root, digest), answer.body);
    return { body: answer.body, contentType: answer.contentType };
  }

  private async doPull(
    asked: string,
    ref: ImageReference,
    policy: PullPolicy,
    ctx: RequestContext & { signal: AbortSignal },
    progress: (p: PullProgress) => void,
  ): Promise<PulledImage> {
    let top: Resolved | undefined;
    if (policy !== 'Always' || ref.digest) top = await this.resolveHeld(ref);
    if (!top && policy === 'Never') {
      throw new ImagePullError(
        'NotFound',
        `Failed to pull image "${asked}": the image is not present on the cell and the pull policy is Never; pre-load it into the image cache or change imagePullPolicy`,
      );
    }
    if (!top) {
      try {
        top = await this.resolveRemote(ref, ctx);
      } catch (err) {
        const held =
          err instanceof ImagePullError && err.reason === 'Unavailable'
            ? await this.resolveHeld(ref)
            : undefined;
        if (!held) throw err;
        this.log?.warn(
          { image: ref.normalized, err: (err as Error).message },
          'registry unreachable; using the held copy',
        );
        top = held;
      }
    }

    // The top-level document: an image index or a manifest.
    const topBytes = top.body
      ? { body: top.body, contentType: top.contentType }
      : await this.manifestBytes(ref, top.digest, ctx);
    let doc = parseManifest(topBytes.body, topBytes.contentType, asked);
    const topMediaType = doc.mediaType;
    let manifestDesc = top.desc;
    if (top.body) await writeAtomic(blobPath(this.root, top.digest), top.body);
    if (doc.kind === 'index') {
      const picked = selectPlatform(doc.manifests, this.platform);
      if (!picked) {
        const have = doc.manifests
          .map((m) =>
            m.platform
              ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}`
              : '?',
          )
          .join(', ');
        throw new ImagePullError(
          'NotFound',
          `Failed to pull image "${asked}": the image index from registry ${ref.registry} has no ${this.platform.os}/${this.platform.architecture} image (it has: ${have || 'none'}); use an image built for ${this.platform.os}/${this.platform.architecture}`,
        );
      }
      manifestDesc = picked;
      const child = await this.manifestBytes(ref, picked.digest, ctx);
      doc = parseManifest(child.body, picked.mediaType || child.contentType, asked);
      if (doc.kind !== 'manifest') {
        throw new ImagePullError(
          'UnsupportedMediaType',
          `Failed to pull image "${asked}": the image index entry ${picked.digest} is itself an index; push a flat image index`,
        );
      }
    }
    if (doc.kind !== 'manifest') throw new Error('unreachable');
    const manifest = doc;

    const total = manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
    let completed = 0;
    let downloaded = 0;
    const report = () => progress({ completedBytes: Math.min(completed, total), totalBytes: total });
    const count = (n: number, fromNetwork: boolean) => {
      completed += n;
      if (fromNetwork) downloaded += n;
      report();
    };

    // Config.
    const configPath = await this.ensureBlob(ref, manifest.config, ctx, 'image config', count);
    const configBody = await fs.readFile(configPath);
    if (sha256Digest(configBody) !== manifest.config.digest) {
      // Rotted since it was verified: drop it so the next pull fetches it again.
      if (configPath.startsWith(this.root)) await fs.rm(configPath, { force: true });
      throw digestMismatch(
        asked,
        ref.registry,
        'image config',
        manifest.config.digest,
        sha256Digest(configBody),
      );
    }
    const config = parseImageConfig(configBody, asked);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new ImagePullError(
        'UnsupportedMediaType',
        `Failed to pull image "${asked}": the manifest ${manifestDesc.digest} lists ${manifest.layers.length} layers but the image config names ${diffIds.length}; the image is malformed, push it again`,
      );
    }

    const chain = chainId(diffIds);
    const rootfs = await this.ensureRootfs(ref, manifest.layers, diffIds, chain, ctx, count);
    completed = total;
    report();

    if (top.source === 'registry') {
      await this.index.set(ref.normalized, {
        mediaType: topMediaType,
        digest: top.digest,
        size: topBytes.body.length,
      });
    }
    return {
      reference: ref.normalized,
      digest: top.digest,
      imageId: `${ref.name}@${top.digest}`,
      config: config.config ?? {},
      rootfs,
      sizeBytes: total,
      downloadedBytes: downloaded,
      source: top.source,
    };
  }

  /** A blob's path, downloading (verified) into the store when neither the store nor the cache holds it. */
  private async ensureBlob(
    ref: ImageReference,
    desc: Descriptor,
    ctx: RequestContext & { signal: AbortSignal },
    what: string,
    onBytes: (n: number, fromNetwork: boolean) => void,
  ): Promise<string> {
    const held = await this.heldBlob(desc.digest);
    if (held) {
      onBytes(desc.size, false);
      return held.path;
    }
    let seen = 0;
    return this.blobs
      .run(
        desc.digest,
        async (signal, progress) => {
          const again = await this.heldBlob(desc.digest);
          if (again) return again.path;
          const dest = blobPath(this.root, desc.digest);
          let bytes = 0;
          const growing = new GrowingFile();
          this.growing.set(desc.digest, growing);
          this.started.emit(desc.digest);
          try {
            await downloadBlob(
              this.client,
              ref,
              desc,
              dest,
              path.join(this.root, 'tmp'),
              { ...ctx, signal },
              (n) => progress((bytes += n)),
              `${what} ${desc.digest}`,
              growing,
            );
          } finally {
            this.growing.delete(desc.digest);
          }
          this.downloadCount++;
          return dest;
        },
        {
          signal: ctx.signal,
          onProgress: (total) => {
            onBytes(total - seen, true);
            seen = total;
          },
        },
      )
      .then((p) => {
        if (seen < desc.size) onBytes(desc.size - seen, false);
        return p;
      });
  }

  /**
   * What to unpack layer `digest` from: its bytes as they arrive when its download is running (or
   * starts first), else the finished blob's path.
   */
  private async layerSource(
    digest: string,
    done: Promise<string>,
    signal: AbortSignal,
  ): Promise<string | AsyncIterable<Buffer>> {
    const running = this.growing.get(digest);
    if (running) return running.follow(signal);
    const stopWaiting = new AbortController();
    try {
      const first = await Promise.race([
        done.then((p) => ({ path: p })),
        once(this.started, digest, { signal: stopWaiting.signal }).then(
          () => ({ growing: this.growing.get(digest) }),
          () => ({ growing: undefined }),
        ),
      ]);
      if ('path' in first) return first.path;
      return first.growing ? first.growing.follow(signal) : await done;
    } finally {
      stopWaiting.abort();
    }
  }

  /** rootfs/<chainID>: from the store, else from the cache (used in place), else built from the layers. */
  private async ensureRootfs(
    ref: ImageReference,
    layers: Descriptor[],
    diffIds: string[],
    chain: string,
    ctx: RequestContext & { signal: AbortSignal },
    onBytes: (n: number, fromNetwork: boolean) => void,
  ): Promise<string> {
    const hex = chain.slice('sha256:'.length);
    const own = path.join(this.root, 'rootfs', hex);
    if (await exists(own)) return own;
    if (this.cacheDir) {
      const cached = path.join(this.cacheDir, 'rootfs', hex);
      if (await exists(cached)) return cached;
    }
    return this.rootfses.run(
      chain,
      async (signal) => {
        if (await exists(own)) return own;
        const work = await fs.mkdtemp(path.join(this.root, 'tmp', `rootfs-${hex.slice(0, 12)}-`));
        const stop = new AbortController();
        const onAbort = () => stop.abort(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        const sub = { ...ctx, signal: stop.signal };
        const limit = new Semaphore(this.downloads);
        try {
          await fs.chmod(work, 0o755);
          const paths = layers.map((l, i) =>
            limit.use(() => this.ensureBlob(ref, l, sub, `layer ${i + 1}/${layers.length}`, onBytes)),
          );
          for (const p of paths) p.catch(() => undefined);
          for (let i = 0; i < layers.length; i++) {
            const layer = layers[i]!;
            // Unpacked while it downloads when it is still on its way; verified once complete.
            const source = await this.layerSource(layer.digest, paths[i]!, stop.signal);
            const applied = await applyLayer(work, source, { log: this.log, signal: stop.signal }).catch(
              async (err: unknown) => {
                // A failed download is the error to report, not what it did to the reader.
                if (typeof source !== 'string') await paths[i];
                if (err instanceof ImagePullError) throw err;
                if (err instanceof LayerFormatError) {
                  throw new ImagePullError(
                    'UnsupportedMediaType',
                    `Failed to pull image "${ctx.image}": layer ${i + 1}/${layers.length} (${layer.digest}) cannot be unpacked safely: ${err.message}; the image is malformed or hostile`,
                  );
                }
                const code = String((err as { code?: unknown }).code ?? '');
                if (code.startsWith('Z_') || /invalid|unexpected end|zstd/i.test(String(err))) {
                  throw new ImagePullError(
                    'UnsupportedMediaType',
                    `Failed to pull image "${ctx.image}": layer ${i + 1}/${layers.length} (${layer.digest}) is not a readable tar archive (${String(err)}); push the image again`,
                  );
                }
                throw err;
              },
            );
            const blob = await paths[i]!;
            if (applied.digest !== layer.digest) {
              // A held blob rotted after it was verified: drop it so the next pull fetches it again.
              if (blob.startsWith(this.root)) await fs.rm(blob, { force: true });
              throw digestMismatch(
                ctx.image,
                ref.registry,
                `layer ${layer.digest}`,
                layer.digest,
                applied.digest,
              );
            }
            if (applied.diffId !== diffIds[i]) {
              throw digestMismatch(
                ctx.image,
                ref.registry,
                `uncompressed layer ${i + 1}/${layers.length}`,
                diffIds[i]!,
                applied.diffId,
              );
            }
          }
          try {
            await fs.rename(work, own);
          } catch (err) {
            // Another process finished the same rootfs first; theirs is as good as ours.
            if (!(await exists(own))) throw err;
            await fs.rm(work, { recursive: true, force: true });
          }
          return own;
        } catch (err) {
          stop.abort(err);
          await fs.rm(work, { recursive: true, force: true });
          throw err;
        } finally {
          signal.removeEventListener('abort', onAbort);
        }
      },
      { signal: ctx.signal },
    );
  }
}
