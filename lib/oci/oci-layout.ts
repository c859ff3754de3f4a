import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { MediaType, type Descriptor } from './manifest.ts';

/** The annotation naming an image in an OCI layout's index.json. */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

/** Where the blob `sha256:<hex>` lives in the OCI layout at `dir`. */
export function blobPath(dir: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  return path.join(dir, 'blobs', alg!, hex!);
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

/** The manifests listed in `<dir>/index.json`; none when the file is missing or unreadable. */
export async function readIndex(dir: string): Promise<Descriptor[]> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, 'index.json'), 'utf8');
  } catch {
    return [];
  }
  try {
    const doc = JSON.parse(text) as { manifests?: Descriptor[] };
    return Array.isArray(doc.manifests) ? doc.manifests : [];
  } catch {
    return [];
  }
}

/** The descriptor index.json names `refName`, if any. */
export async function findRef(dir: string, refName: string): Promise<Descriptor | undefined> {
  const all = await readIndex(dir);
  return all.find((d) => d.annotations?.[REF_NAME_ANNOTATION] === refName);
}

/** Writes `data` to `dest` through a temporary file in the same directory and a rename, so readers never see a partial file. */
export async function writeAtomic(dest: string, data: Buffer | string): Promise<void> {
  const tmp = `${dest}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/** Creates the skeleton of an OCI image layout at `dir` (oci-layout, index.json, blobs/sha256). */
export async function initLayout(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const marker = path.join(dir, 'oci-layout');
  if (!(await exists(marker))) await writeAtomic(marker, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  if (!(await exists(path.join(dir, 'index.json')))) await writeIndex(dir, []);
}

async function writeIndex(dir: string, manifests: Descriptor[]): Promise<void> {
  const doc = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
  await writeAtomic(path.join(dir, 'index.json'), `${JSON.stringify(doc, null, 2)}\n`);
}

/** Serialises updates of one layout's index.json within this process. */
export class LayoutIndex {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly dir: string) {}

  /** Points `refName` at `desc`, replacing what it named before. */
  set(refName: string, desc: Descriptor): Promise<void> {
    const next = this.chain.then(async () => {
      const all = (await readIndex(this.dir)).filter((d) => d.annotations?.[REF_NAME_ANNOTATION] !== refName);
      all.push({
        mediaType: desc.mediaType,
        digest: desc.digest,
        size: desc.size,
        annotations: { [REF_NAME_ANNOTATION]: refName },
      });
      await writeIndex(this.dir, all);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }
}
