import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { writeAtomic } from '../lib/oci/oci-layout.ts';

/** The file on the share recording when each cached image was last used by a pod. */
export const USAGE_FILE = 'kip-image-usage.json';

interface UsageDoc {
  version: 1;
  /** Normalised reference → last time a pod used it (ISO 8601). */
  images: Record<string, string>;
}

/**
 * When each cached image was last used, kept on the share itself so a new leader (another
 * replica, or this one after a restart) prunes by the same history. Only the leader writes it.
 */
export class UsageRecord {
  private images = new Map<string, number>();

  constructor(private readonly root: string) {}

  get file(): string {
    return path.join(this.root, USAGE_FILE);
  }

  /**
   * Reads the record from the share, merged with what this process recorded (the later use
   * wins); a missing or unreadable file counts as empty.
   */
  async load(): Promise<void> {
    try {
      const doc = JSON.parse(await fs.readFile(this.file, 'utf8')) as Partial<UsageDoc>;
      for (const [ref, at] of Object.entries(doc.images ?? {})) {
        const t = Date.parse(at);
        if (Number.isFinite(t)) this.touch(ref, t);
      }
    } catch {
      // First start, or a damaged file: images get their age from now on.
    }
  }

  /** Last use of `ref` in ms since the epoch, or undefined when never recorded. */
  lastUsed(ref: string): number | undefined {
    return this.images.get(ref);
  }

  touch(ref: string, at = Date.now()): void {
    const prev = this.images.get(ref);
    if (prev === undefined || at > prev) this.images.set(ref, at);
  }

  forget(ref: string): void {
    this.images.delete(ref);
  }

  entries(): [string, number][] {
    return [...this.images.entries()];
  }

  async save(): Promise<void> {
    const images: Record<string, string> = {};
    for (const [ref, t] of [...this.images.entries()].sort(([a], [b]) => a.localeCompare(b)))
      images[ref] = new Date(t).toISOString();
    const doc: UsageDoc = { version: 1, images };
    await fs.mkdir(this.root, { recursive: true });
    await writeAtomic(this.file, `${JSON.stringify(doc, null, 2)}\n`);
  }
}
