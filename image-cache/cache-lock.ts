/**
 * Pulls share the cache; pruning needs it alone (it deletes blobs no index entry names, which a
 * running pull may have written but not indexed yet). A small readers-writer lock, writer first.
 */
export class CacheLock {
  private readers = 0;
  private writer = false;
  private waiting: (() => void)[] = [];
  private writersWaiting = 0;

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writer || this.writersWaiting > 0) await new Promise<void>((r) => this.waiting.push(r));
    this.readers++;
    try {
      return await fn();
    } finally {
      this.readers--;
      this.wakeAll();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.writersWaiting++;
    while (this.writer || this.readers > 0) await new Promise<void>((r) => this.waiting.push(r));
    this.writersWaiting--;
    this.writer = true;
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.wakeAll();
    }
  }

  private wakeAll(): void {
    for (const w of this.waiting.splice(0)) w();
  }
}
