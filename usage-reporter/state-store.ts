import { randomUUID } from 'node:crypto';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncDir, readJsonFile, writeFileAtomic } from './durable-file.ts';

/**
 * The agent's state directory, ubbagent's layout: `agentid.json`, `aggregator/<metric>.json`,
 * `epqueue/<endpoint>.json`.
 *
 * Callers change their in-memory state, mark the file dirty with a snapshot function, and await
 * `commit()`. Commits are grouped: every change marked before a write starts goes into that
 * write, so concurrent reports share one fsync round instead of queueing for one each.
 */
export class StateStore {
  private dirty = new Map<string, () => unknown>();
  private inFlight: Promise<void> = Promise.resolve();
  private next: Promise<void> | null = null;

  constructor(
    readonly dir: string,
    /** Told how long each write round took (seconds), for the write-latency metric. */
    private readonly onRound?: (seconds: number) => void,
  ) {}

  /** Creates the layout and removes temporary files a crash left mid-write (their renames never happened). */
  async init(): Promise<void> {
    for (const sub of ['', 'aggregator', 'epqueue']) {
      const dir = join(this.dir, sub);
      await mkdir(dir, { recursive: true });
      for (const f of await readdir(dir)) {
        if (f.startsWith('.') && f.endsWith('.tmp')) await unlink(join(dir, f)).catch(() => undefined);
      }
    }
  }

  /** Reads a state file; a damaged one stops the start with a message naming it, rather than being ignored. */
  async read<T>(rel: string): Promise<T | undefined> {
    const path = join(this.dir, rel);
    try {
      return await readJsonFile<T>(path);
    } catch (e) {
      throw new Error(
        `state file ${path} cannot be read (${(e as Error).message}); it holds unsent usage: repair it, or move it aside to start without it`,
        { cause: e },
      );
    }
  }

  /** The names (without .json) of the state files in `sub`, e.g. the metrics with a bucket on disk. */
  async names(sub: 'aggregator' | 'epqueue'): Promise<string[]> {
    const files = await readdir(join(this.dir, sub));
    return files.filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => f.slice(0, -5));
  }

  /** Marks `rel` to be rewritten with `snapshot()` at the next commit. */
  markDirty(rel: string, snapshot: () => unknown): void {
    this.dirty.set(rel, snapshot);
  }

  /** Resolves once every change marked before this call is durable on disk. */
  commit(): Promise<void> {
    if (this.next) return this.next;
    const next: Promise<void> = this.inFlight
      .catch(() => undefined)
      .then(() => {
        // From here on, new changes need another round.
        if (this.next === next) this.next = null;
        const batch = this.dirty;
        this.dirty = new Map();
        return this.write(batch);
      });
    this.next = next;
    this.inFlight = next;
    return next;
  }

  /**
   * Writes queues before aggregator buckets: a bucket flushed into the queues is removed from its
   * bucket file only after the queues holding it are durable (a crash in between re-flushes it
   * under the same id, which the endpoints de-duplicate).
   */
  private async write(batch: Map<string, () => unknown>): Promise<void> {
    if (batch.size === 0) return;
    // Serialise every file now, in one synchronous step, so the round is one consistent cut of
    // the in-memory state even if it changes while the files are being written.
    const started = performance.now();
    const texts = new Map([...batch].map(([k, f]) => [k, JSON.stringify(f())]));
    const phases = [
      [...batch.keys()].filter((k) => !k.startsWith('aggregator/')),
      [...batch.keys()].filter((k) => k.startsWith('aggregator/')),
    ];
    try {
      for (const keys of phases) {
        if (keys.length === 0) continue;
        await Promise.all(keys.map((k) => writeFileAtomic(join(this.dir, k), texts.get(k)!, false)));
        const dirs = new Set(keys.map((k) => dirname(join(this.dir, k))));
        await Promise.all([...dirs].map((d) => fsyncDir(d)));
      }
      this.onRound?.((performance.now() - started) / 1000);
    } catch (e) {
      // Keep the changes for the next round; newer snapshots of the same file win.
      for (const [k, f] of batch) if (!this.dirty.has(k)) this.dirty.set(k, f);
      throw e;
    }
  }

  /** The agent's id (`goog-ubb-agent-id` label), created once and kept across restarts. */
  async agentId(): Promise<string> {
    const existing = await this.read<{ id?: string }>('agentid.json');
    if (existing?.id) return existing.id;
    const id = randomUUID();
    await writeFileAtomic(join(this.dir, 'agentid.json'), JSON.stringify({ id }));
    return id;
  }
}
