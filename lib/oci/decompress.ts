import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { Decompress } from 'fzstd';

export type Compression = 'gzip' | 'zstd' | 'none';

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/**
 * How a stream starting with `head` is compressed (gzip, zstd, or none). Layers are sniffed rather
 * than trusted by media type because some tools label uncompressed tars as gzip.
 */
export function compressionOf(head: Buffer): Compression {
  if (GZIP_MAGIC.every((b, i) => head[i] === b)) return 'gzip';
  if (ZSTD_MAGIC.every((b, i) => head[i] === b)) return 'zstd';
  return 'none';
}

/** Reads the first `n` bytes of `source` (fewer if it ends) and returns them with the whole stream, replayed. */
export async function peek(
  source: AsyncIterable<Buffer>,
  n: number,
): Promise<{ head: Buffer; stream: AsyncIterable<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (size < n) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    seen.push(r.value);
    size += r.value.length;
  }
  async function* replay(): AsyncGenerator<Buffer> {
    let finished = ended;
    try {
      yield* seen;
      while (!finished) {
        const r = await it.next();
        if (r.done) finished = true;
        else yield r.value;
      }
    } finally {
      // Stopped early: let the source close its file.
      if (!finished) await it.return?.();
    }
  }
  return { head: Buffer.concat(seen).subarray(0, n), stream: replay() };
}

/** Zstandard in pure JavaScript, for Node versions whose zlib lacks it. */
class FzstdDecompress extends Transform {
  private readonly d = new Decompress((chunk) => {
    // fzstd keeps its window separately, but copy anyway: a pushed chunk must never change later.
    if (chunk.length > 0) this.push(Buffer.from(chunk));
  });

  // fzstd re-joins input split inside a block, so small pushes cost it dearly (about 2.5x at
  // 64 KiB against 1 MiB): input is gathered into large pushes.
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < 1024 * 1024) return cb();
    try {
      this.d.push(this.drainPending());
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.d.push(this.drainPending(), true);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private drainPending(): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    return all;
  }
}

type ZstdFactory = () => Transform;

/** Node's own zstd (zlib.createZstdDecompress, Node >= 22.15) when present. */
function nativeZstd(): ZstdFactory | undefined {
  const create = (zlib as unknown as { createZstdDecompress?: ZstdFactory }).createZstdDecompress;
  return typeof create === 'function' ? () => create() : undefined;
}

/** Which zstd implementation this process uses: `zlib` (native) or `fzstd` (JavaScript). */
export const zstdImplementation: 'zlib' | 'fzstd' = nativeZstd() ? 'zlib' : 'fzstd';

/** A stream that decompresses `compression` (gzip, zstd, or a pass-through for none). */
export function decompressor(compression: Compression): Transform {
  switch (compression) {
    case 'gzip':
      // Large chunks: fewer, bigger writes into the tar parser.
      return zlib.createGunzip({ chunkSize: 256 * 1024 });
    case 'zstd':
      return nativeZstd()?.() ?? new FzstdDecompress();
    case 'none':
      return new PassThrough();
  }
}
