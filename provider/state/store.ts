import { Etcd3, type Namespace } from 'etcd3';
import type { Logger } from '../../lib/log.ts';
import { CURRENT_SCHEMA_VERSION, migrateSchema, type Migration, MIGRATIONS } from './schema.ts';

/** etcd could not be reached or answered with an error; the operation may be retried. */
export class StateUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StateUnavailableError';
  }
}

export interface StateStoreOptions {
  /** etcd client URLs (`http://127.0.0.1:2379`). */
  endpoints: string[];
  /** Every key the provider writes starts with it (`/kip/`). */
  prefix: string;
  log: Logger;
  /** Deadline for each etcd call, so a stuck etcd fails calls instead of hanging them. */
  callTimeoutMs?: number;
  /** The migrations to apply; the default is the provider's own list. */
  migrations?: readonly Migration[];
  /** The schema version this code writes; the default is the provider's. */
  schemaVersion?: number;
}

/**
 * The provider's handle on its etcd state: one client, one key prefix, the schema version checked
 * and migrated forward at open. Identity, the CA and cell records build on `ns`.
 */
export class StateStore {
  private constructor(
    private readonly client: Etcd3,
    /** The namespace every state key lives under. */
    readonly ns: Namespace,
    private readonly callTimeoutMs: number,
  ) {}

  /**
   * Connects, waits until etcd answers (up to `waitMs`), then brings the stored schema up to the
   * current version. Throws SchemaTooNewError when the stored state is newer than this code.
   */
  static async open(opts: StateStoreOptions, waitMs = 30_000): Promise<StateStore> {
    const callTimeoutMs = opts.callTimeoutMs ?? 5000;
    const client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: 3000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    });
    const store = new StateStore(client, client.namespace(opts.prefix), callTimeoutMs);
    try {
      const deadline = Date.now() + waitMs;
      for (;;) {
        try {
          await store.ping();
          break;
        } catch (err) {
          if (Date.now() >= deadline) throw err;
          opts.log.warn({ err: (err as Error).message, endpoints: opts.endpoints }, 'waiting for etcd');
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      await migrateSchema(
        store.ns,
        opts.migrations ?? MIGRATIONS,
        opts.schemaVersion ?? CURRENT_SCHEMA_VERSION,
        opts.log,
      );
      return store;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Resolves when etcd answers a status call within the call timeout; the node's health uses it. */
  async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.client.maintenance.status(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new StateUnavailableError(`etcd did not answer within ${this.callTimeoutMs} ms`)),
            this.callTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      if (err instanceof StateUnavailableError) throw err;
      throw new StateUnavailableError(`etcd unavailable: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.client.close();
  }
}
