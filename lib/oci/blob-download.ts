import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
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
    const out = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    await pipeline(body, meter, out, { signal: ctx.signal });
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
    const fh = await fs.open(tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    if (err instanceof ImagePullError || ctx.signal?.aborted) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSPC') {
      throw new ImagePullError(
        'Unavailable',
        `Failed to pull image "${ctx.image}": no space left on the device holding ${tmpDir} while downloading the ${what}; free disk space or give the cell a larger disk`,
        { cause: err },
      );
    }
    throw new ImagePullError(
      'Unavailable',
      `Failed to pull image "${ctx.image}": downloading the ${what} from registry ${ref.registry} failed (${e.code ? `${e.code}: ` : ''}${e.message}); retry`,
      { cause: err },
    );
  }
}
