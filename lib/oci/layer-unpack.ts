import { execFile } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';
import type { Logger } from '../log.ts';
import { compressionOf, decompressor, peek } from './decompress.ts';

const execFileP = promisify(execFile);

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const SMALL_FILE = 1024 * 1024;
const MAX_SYMLINK_HOPS = 40;

/** A layer that cannot be applied safely (an entry escaping the root, a hard link to nowhere...). */
export class LayerFormatError extends Error {
  override name = 'LayerFormatError';
}

/** What applying a layer saw: the digests of its compressed and uncompressed streams. */
export interface AppliedLayer {
  /** sha256 of the blob as stored (compressed). */
  digest: string;
  /** sha256 of the uncompressed tar: the layer's DiffID. */
  diffId: string;
  entries: number;
}

class HashTap extends Transform {
  readonly hash: Hash = createHash('sha256');
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    cb(null, chunk);
  }
}

/** Normalises a tar entry name to a root-relative POSIX path; '' is the root itself. */
function entryPath(name: string): string {
  const norm = path.posix.normalize(`/${name}`);
  return norm === '/' ? '' : norm.slice(1).replace(/\/$/, '');
}

/**
 * Writes one layer's entries onto a root directory, never following a symlink out of it:
 * symlinks met on the way to an entry resolve inside the root, as they would in the container.
 */
class RootfsWriter {
  // Root-relative directory -> its absolute real path, for directories already resolved.
  private readonly dirs = new Map<string, string>();
  // Entries written by the current layer (an opaque marker must keep them, whatever the order).
  private readonly touched = new Set<string>();
  private readonly dirTimes: { abs: string; mtime: Date }[] = [];
  private skippedXattrs = 0;

  constructor(
    private readonly root: string,
    private readonly log?: Logger,
  ) {}

  /**
   * The real absolute path of directory `rel`, following symlinks within the root. Missing
   * directories are created (0755) when `create`; otherwise undefined is returned.
   */
  private async resolveDir(rel: string, create: boolean, hops = 0): Promise<string | undefined> {
    if (rel === '') return this.root;
    const cached = this.dirs.get(rel);
    if (cached) return cached;
    const parentRel = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
    const parent = await this.resolveDir(parentRel, create, hops);
    if (parent === undefined) return undefined;
    const candidate = path.join(parent, path.posix.basename(rel));
    let st;
    try {
      st = await fs.lstat(candidate);
    } catch {
      if (!create) return undefined;
      await fs.mkdir(candidate, { mode: 0o755 });
      this.dirs.set(rel, candidate);
      return candidate;
    }
    if (st.isDirectory()) {
      this.dirs.set(rel, candidate);
      return candidate;
    }
    if (st.isSymbolicLink()) {
      if (hops >= MAX_SYMLINK_HOPS)
        throw new LayerFormatError(`too many levels of symbolic links at /${rel}`);
      const target = await fs.readlink(candidate);
      const parentInRoot = path.relative(this.root, parent);
      // Resolve against the root: an absolute target or `..` never leaves it.
      const within = entryPath(target.startsWith('/') ? target : path.posix.join(parentInRoot, target));
      const real = await this.resolveDir(within, create, hops + 1);
      if (real !== undefined) this.dirs.set(rel, real);
      return real;
    }
    if (!create) return undefined;
    // A file where the layer needs a directory: the layer's view wins.
    await this.remove(candidate);
    await fs.mkdir(candidate, { mode: 0o755 });
    this.dirs.set(rel, candidate);
    return candidate;
  }

  /** Removes `abs` (a directory recursively), if it exists. */
  private async remove(abs: string, known?: Stats): Promise<void> {
    const st = known ?? (await this.lstatOrUndefined(abs));
    if (!st) return;
    await fs.rm(abs, { recursive: true, force: true });
    // Resolved directories may lead through what was removed (a directory, or a symlink some
    // cached path went through): forget them all. Removing a plain file changes none.
    if (st.isDirectory() || st.isSymbolicLink()) this.dirs.clear();
  }

  private async lstatOrUndefined(abs: string) {
    try {
      return await fs.lstat(abs);
    } catch {
      return undefined;
    }
  }

  /** Applies one tar entry. */
  async apply(header: tar.Header, stream: AsyncIterable<Buffer>): Promise<void> {
    // entryPath clamps `..` at the root, so no name reaches outside it.
    const rel = entryPath(header.name);
    const base = path.posix.basename(rel);
    const dirRel = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
    const pax = (header as { pax?: Record<string, string> }).pax;
    if (pax && Object.keys(pax).some((k) => k.startsWith('SCHILY.xattr.'))) this.skippedXattrs++;

    if (base === OPAQUE_MARKER) {
      const dir = await this.resolveDir(dirRel, true);
      await this.clearLower(dirRel, dir!);
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const victimRel = path.posix.join(dirRel, base.slice(WHITEOUT_PREFIX.length));
      if (this.touched.has(victimRel)) return;
      const dir = await this.resolveDir(dirRel, false);
      if (dir !== undefined) await this.remove(path.join(dir, base.slice(WHITEOUT_PREFIX.length)));
      return;
    }

    const dir = rel === '' ? this.root : await this.resolveDir(dirRel, true);
    const target = rel === '' ? this.root : path.join(dir!, base);
    this.touched.add(rel);
    const existing = rel === '' ? await fs.lstat(this.root) : await this.lstatOrUndefined(target);
    const mode = (header.mode ?? 0o644) & 0o7777;
    const uid = Number(pax?.uid ?? header.uid ?? 0);
    const gid = Number(pax?.gid ?? header.gid ?? 0);
    const mtime = header.mtime ?? new Date(0);

    if (header.type === 'directory') {
      if (existing && !existing.isDirectory()) await this.remove(target, existing);
      if (!existing || !existing.isDirectory()) await fs.mkdir(target, { mode: 0o755 });
      this.dirs.set(rel, target);
      await this.own(target, uid, gid, mode);
      this.dirTimes.push({ abs: target, mtime });
      return;
    }
    if (existing) await this.remove(target, existing);

    switch (header.type) {
      case 'file':
      case 'contiguous-file':
      case undefined:
      case null: {
        if ((header.size ?? 0) <= SMALL_FILE) {
          const chunks: Buffer[] = [];
          for await (const c of stream) chunks.push(c);
          await fs.writeFile(target, Buffer.concat(chunks), { mode: 0o600 });
        } else {
          const fh = await fs.open(target, 'wx', 0o600);
          try {
            for await (const c of stream) await fh.write(c);
          } finally {
            await fh.close();
          }
        }
        await this.own(target, uid, gid, mode);
        await fs.utimes(target, mtime, mtime);
        return;
      }
      case 'symlink':
        await fs.symlink(header.linkname ?? '', target);
        await fs.lchown(target, uid, gid).catch(() => undefined);
        await fs.lutimes(target, mtime, mtime).catch(() => undefined);
        return;
      case 'link': {
        const srcRel = entryPath(header.linkname ?? '');
        const srcDirRel = path.posix.dirname(srcRel) === '.' ? '' : path.posix.dirname(srcRel);
        const srcDir = await this.resolveDir(srcDirRel, false);
        const src = srcDir === undefined ? undefined : path.join(srcDir, path.posix.basename(srcRel));
        if (!src || !(await this.lstatOrUndefined(src))) {
          throw new LayerFormatError(`hard link "${header.name}" points to missing "${header.linkname}"`);
        }
        await fs.link(src, target);
        return;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        const args =
          header.type === 'fifo'
            ? [target, 'p']
            : [
                target,
                header.type === 'block-device' ? 'b' : 'c',
                String(header.devmajor ?? 0),
                String(header.devminor ?? 0),
              ];
        try {
          await execFileP('mknod', args);
          await this.own(target, uid, gid, mode);
        } catch (err) {
          // Only root can make device nodes; the runtime provides /dev anyway.
          this.log?.warn({ entry: header.name, err: String(err) }, 'skipped a device node the layer holds');
        }
        return;
      }
      default:
        this.log?.warn({ entry: header.name, type: header.type }, 'skipped a tar entry of unknown type');
    }
  }

  private async own(abs: string, uid: number, gid: number, mode: number): Promise<void> {
    // chown first: it clears setuid/setgid bits, which chmod then restores.
    await fs.lchown(abs, uid, gid).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPERM') throw err;
    });
    await fs.chmod(abs, mode);
  }

  /** An opaque directory: hide everything lower layers put in it, keep what this layer wrote. */
  private async clearLower(dirRel: string, dirAbs: string): Promise<void> {
    const keep = (rel: string) => {
      if (this.touched.has(rel)) return true;
      const prefix = `${rel}/`;
      for (const t of this.touched) if (t.startsWith(prefix)) return true;
      return false;
    };
    for (const name of await fs.readdir(dirAbs)) {
      const rel = path.posix.join(dirRel, name);
      const abs = path.join(dirAbs, name);
      if (!keep(rel)) await this.remove(abs);
      else if ((await fs.lstat(abs)).isDirectory()) await this.clearLower(rel, abs);
    }
  }

  /** Directory times last: writing children changes them. */
  async finish(): Promise<void> {
    for (const { abs, mtime } of this.dirTimes.reverse())
      await fs.utimes(abs, mtime, mtime).catch(() => undefined);
    if (this.skippedXattrs > 0) {
      this.log?.debug({ entries: this.skippedXattrs }, 'extended attributes in the layer were not applied');
    }
  }
}

/**
 * Applies a layer blob (a file path, or its bytes as they arrive; gzip, zstd or plain tar, sniffed)
 * onto `root`, honouring
 * whiteouts (`.wh.<name>` removes `<name>` of lower layers) and opaque directories
 * (`.wh..wh..opq` hides everything lower layers put in that directory). Returns the digests of
 * the compressed and uncompressed streams, for the caller to check against the manifest and
 * the image config. Ownership, modes (setuid included) and times are kept; extended attributes
 * are not. Names with `..` and symlinks resolve inside `root`, as in the container. Throws
 * LayerFormatError for a hard link to nothing or a symlink loop.
 */
export async function applyLayer(
  root: string,
  blob: string | AsyncIterable<Buffer>,
  opts: { log?: Logger; signal?: AbortSignal } = {},
): Promise<AppliedLayer> {
  const source = typeof blob === 'string' ? createReadStream(blob, { highWaterMark: 1024 * 1024 }) : blob;
  const { head, stream } = await peek(source, 4);
  const compression = compressionOf(head);
  const compressedTap = new HashTap();
  const tarTap = new HashTap();
  const extract = tar.extract();
  const writer = new RootfsWriter(root, opts.log);
  let entries = 0;
  const stop = new AbortController();
  const onAbort = () => stop.abort(opts.signal!.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  // tar-stream is a streamx stream: fed by hand, with backpressure, rather than through node's pipeline.
  const feeding = pipeline(
    Readable.from(stream, { objectMode: false }),
    compressedTap,
    decompressor(compression),
    tarTap,
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        if (!extract.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              extract.off('drain', done);
              extract.off('close', done);
              resolve();
            };
            extract.on('drain', done);
            extract.on('close', done);
          });
        }
        if (extract.destroyed) throw new Error('tar parser stopped');
      }
      extract.end(undefined);
    },
    { signal: stop.signal },
  );
  const consuming = (async () => {
    for await (const entry of extract) {
      await writer.apply(entry.header, entry as AsyncIterable<Buffer>);
      // Drain what the writer did not read (directories, links, skipped entries).
      entry.resume();
      entries++;
    }
  })();
  feeding.catch((err: unknown) => extract.destroy(err as Error));
  consuming.catch(() => stop.abort(new Error('layer unpack failed')));
  try {
    const [f, c] = await Promise.allSettled([feeding, consuming]);
    if (c.status === 'rejected') throw c.reason;
    if (f.status === 'rejected') throw f.reason;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  await writer.finish();
  return {
    digest: `sha256:${compressedTap.hash.digest('hex')}`,
    diffId: `sha256:${tarTap.hash.digest('hex')}`,
    entries,
  };
}
