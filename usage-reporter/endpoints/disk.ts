import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../lib/log.ts';
import type { DiskEndpointConfig } from '../config.ts';
import { writeFileAtomic } from '../durable-file.ts';
import type { StampedReport } from '../report.ts';
import { TransientError, type Endpoint } from './endpoint.ts';

export interface DiskEndpointOptions {
  name: string;
  config: DiskEndpointConfig;
  log: Logger;
  /** How often expired files are removed; ubbagent's one minute by default. */
  cleanupIntervalMs?: number;
}

/**
 * Writes each report to `<reportDir>/<id>.json` (atomically, so a reader never sees half a file;
 * a retry rewrites the same file) and deletes files older than `expireSeconds`.
 */
export class DiskEndpoint implements Endpoint {
  readonly name: string;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly opts: DiskEndpointOptions) {
    this.name = opts.name;
    this.timer = setInterval(() => void this.cleanup(), opts.cleanupIntervalMs ?? 60_000);
    this.timer.unref();
  }

  async send(r: StampedReport): Promise<void> {
    const body = {
      id: r.id,
      name: r.name,
      startTime: r.startTime,
      endTime: r.endTime,
      value: r.value,
      labels: r.labels,
    };
    try {
      await writeFileAtomic(join(this.opts.config.reportDir, `${r.id}.json`), `${JSON.stringify(body)}\n`);
    } catch (e) {
      throw new TransientError(`write ${this.opts.config.reportDir}: ${(e as Error).message}`);
    }
  }

  /** Deletes report files older than expireSeconds. */
  private async cleanup(): Promise<void> {
    const dir = this.opts.config.reportDir;
    const now = Date.now();
    try {
      for (const f of await readdir(dir)) {
        if (!f.endsWith('.json')) continue;
        const p = join(dir, f);
        const st = await stat(p).catch(() => undefined);
        if (st && now - st.mtimeMs >= this.opts.config.expireSeconds * 1000) {
          await unlink(p).catch(() => undefined);
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        this.opts.log.warn({ err: e, dir }, 'report cleanup failed');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}
