/**
 * A value loaded on demand and kept for `ttlMs`. Callers that ask while it loads share the one
 * load; a failed load is not kept, so the next caller tries again.
 */
export class CachedValue<T> {
  private kept: { at: number; value: T } | undefined;
  private loading: Promise<T> | undefined;

  constructor(
    private readonly ttlMs: number,
    private readonly load: () => Promise<T>,
  ) {}

  get(): Promise<T> {
    if (this.kept && Date.now() - this.kept.at < this.ttlMs) return Promise.resolve(this.kept.value);
    this.loading ??= this.load()
      .then((value) => {
        this.kept = { at: Date.now(), value };
        return value;
      })
      .finally(() => (this.loading = undefined));
    return this.loading;
  }
}
