import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ImagePullError } from './errors.ts';
import type { Descriptor } from './manifest.ts';
import type { ImageReference } from './reference.ts';
import type { RegistryClient, RequestContext } from './registry-client.ts';

/** A refusal worded for `kubectl describe pod`: which blob, what was expected, what came. */
export function digestMismatch(
  image: string,
  registry: string,
  what: string,
  expected: string,
  got: string,
  detail = '',
): ImagePullError {
  return new ImagePullError(
    'DigestMismatch',
    `Failed to pull image "${image}": the ${what} from registry ${registry} has digest ${got}${detail}, not the ${expected} the image names; the download was refused and discarded. The blob is corrupt in the registry or was altered on the way: push the image again, or check proxies between the cell and the registry`,
  );
}

/**
 * Downloads blob `desc` to `dest`, verifying its sha256 and size on the way. The bytes go to a
 * temporary file in `tmpDir` (same filesystem as `dest`), which becomes `dest` by rename only once
 * verified and flushed; on any failure it is removed, so `dest` is either absent or complete.
 * A blob longer than its descriptor says is cut off as soon as it overruns.
 */
export async function downloadBlob(
  client: RegistryClient,
  ref: ImageReference,
  desc: Descriptor,
  dest: string,
  tmpDir: string,
  ctx: RequestContext,
  onBytes?: (n: number) => void,
  what = `blob ${desc.digest}`,
  growing?: GrowingFile,
): Promise<void> {
  const tmp = path.join(tmpDir, `blob-${desc.digest.slice(7, 19)}-${randomBytes(4).toString('hex')}`);
  const hash = createHash('sha256');
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      received += chunk.length;
      if (received > desc.size) {
        cb(
          digestMismatch(
            ctx.image,
            ref.registry,
            what,
            desc.digest,
            'unknown',
            ` (more than the ${desc.size} bytes named)`,
          ),
        );
        return;
      }
      hash.update(chunk);
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
  });
  try {
    const { body } = await client.openBlob(ref, desc.digest, ctx);
    const fh = await fs.open(tmp, 'wx', 0o644);
    growing?.opened(tmp);
    let offset = 0;
    const written = (cb: (err?: Error | null) => void) =>
      [
        ({ bytesWritten }: { bytesWritten: number }) => {
          offset += bytesWritten;
          growing?.advance(offset);
          cb();
        },
        (err: Error) => cb(err),
      ] as const;
    // Network chunks are small: while one write is in flight the next ones gather into one writev.
    const out = new Writable({
      highWaterMark: 4 * 1024 * 1024,
      write(chunk: Buffer, _enc, cb) {
        fh.write(chunk, 0, chunk.length, offset).then(...written(cb));
      },
      writev(chunks, cb) {
        fh.writev(
          chunks.map((c) => c.chunk as Buffer),
          offset,
        ).then(...written(cb));
      },
    });
    try {
      await pipeline(body, meter, out, { signal: ctx.signal });
      await fh.sync();
    } finally {
      await fh.close();
    }
    const got = `sha256:${hash.digest('hex')}`;
    if (got !== desc.digest || received !== desc.size) {
      throw digestMismatch(
        ctx.image,
        ref.registry,
        what,
        desc.digest,
        got,
        received !== desc.size ? ` (${received} bytes, ${desc.size} named)` : '',
      );
    }
    await fs.rename(tmp, dest);
    growing?.finish(dest);
  } catch (err) {
    const final = wrapDownloadError(err, ctx, ref, what, tmpDir);
    growing?.fail(final);
    await fs.rm(tmp, { force: true });
    throw final;
  }
}

function wrapDownloadError(
  err: unknown,
  ctx: RequestContext,
  ref: ImageReference,
  what: string,
  tmpDir: string,
): unknown {
  if (err instanceof ImagePullError || ctx.signal?.aborted) return err;
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOSPC') {
    return new ImagePullError(
      'Unavailable',
      `Failed to pull image "${ctx.image}": no space left on the device holding ${tmpDir} while downloading the ${what}; free disk space or give the cell a larger disk`,
      { cause: err },
    );
  }
  return new ImagePullError(
    'Unavailable',
    `Failed to pull image "${ctx.image}": downloading the ${what} from registry ${ref.registry} failed (${e.code ? `${e.code}: ` : ''}${e.message}); retry`,
    { cause: err },
  );
}

/**
 * A blob being downloaded, readable while it grows: a layer can be unpacked as its bytes arrive
 * instead of after the whole blob is in. Readers see only bytes already written, and fail with
 * the download's error if it fails (the digest is checked at the end, so a reader's result must
 * be thrown away unless the download succeeds).
 */
export class GrowingFile {
  private path?: string;
  private written = 0;
  private state: 'pending' | 'open' | 'done' | 'failed' = 'pending';
  private error?: unknown;
  private readonly listeners = new Set<() => void>();

  opened(p: string): void {
    this.path = p;
    this.state = 'open';
    this.notify();
  }

  advance(written: number): void {
    this.written = written;
    this.notify();
  }

  finish(finalPath: string): void {
    this.path = finalPath;
    this.state = 'done';
    this.notify();
  }

  fail(err: unknown): void {
    if (this.state === 'done') return;
    this.error = err;
    this.state = 'failed';
    this.notify();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  private changed(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        this.listeners.delete(done);
        signal?.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = () => {
        this.listeners.delete(done);
        reject(signal!.reason);
      };
      if (signal?.aborted) return reject(signal.reason);
      this.listeners.add(done);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  private async open(): Promise<fs.FileHandle> {
    try {
      return await fs.open(this.path!, 'r');
    } catch (err) {
      // Renamed into place between the look and the open.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && this.state === 'done')
        return fs.open(this.path!, 'r');
      if ((this.state as string) === 'failed') throw this.error;
      throw err;
    }
  }

  /** The blob's bytes from the start, as they are written; ends when the download is complete. */
  async *follow(signal?: AbortSignal): AsyncGenerator<Buffer> {
    while (this.state === 'pending') await this.changed(signal);
    if (this.state === 'failed') throw this.error;
    const fh = await this.open();
    let pos = 0;
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (pos < this.written) {
          const n = Math.min(this.written - pos, 1024 * 1024);
          const buf = Buffer.allocUnsafe(n);
          const { bytesRead } = await fh.read(buf, 0, n, pos);
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
          continue;
        }
        const state = this.state as string;
        if (state === 'failed') throw this.error;
        if (state === 'done') return;
        await this.changed(signal);
      }
    } finally {
      await fh.close();
    }
  }
}
