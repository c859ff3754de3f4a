import type { Namespace } from 'etcd3';
import type { Logger } from '../../lib/log.ts';

/** The layout of the provider's etcd keys this code reads and writes. */
export const CURRENT_SCHEMA_VERSION = 1;

/** The key holding the stored schema version, under the provider's prefix. */
export const SCHEMA_KEY = 'schema/version';

/** One forward step: rewrites keys laid out for `from` into the layout of `from + 1`. */
export interface Migration {
  from: number;
  description: string;
  apply(ns: Namespace): Promise<void>;
}

/** The provider's migrations, in order. Version 1 is the first layout, so there are none yet. */
export const MIGRATIONS: readonly Migration[] = [];

/** The stored state is newer than this code understands; starting would risk corrupting it. */
export class SchemaTooNewError extends Error {
  constructor(
    readonly stored: number,
    readonly supported: number,
  ) {
    super(
      `etcd state schema version ${stored} is newer than this provider supports (${supported}); ` +
        `run a provider release that supports version ${stored} (downgrades are not supported)`,
    );
    this.name = 'SchemaTooNewError';
  }
}

/**
 * Brings the stored schema to `target`: a fresh store is stamped with it, an older one is migrated
 * one version at a time (each step recorded before the next, so an interrupted run resumes), and a
 * newer one is refused. Migrations go forward only.
 */
export async function migrateSchema(
  ns: Namespace,
  migrations: readonly Migration[],
  target: number,
  log: Logger,
): Promise<number> {
  const raw = await ns.get(SCHEMA_KEY).string();
  if (raw === null) {
    const empty = (await ns.getAll().limit(1).keys()).length === 0;
    // Keys without a version stamp predate versioning: treat them as version 0 and migrate.
    const start = empty ? target : 0;
    const created = await ns
      .if(SCHEMA_KEY, 'Create', '==', 0)
      .then(ns.put(SCHEMA_KEY).value(String(start)))
      .commit();
    if (!created.succeeded) return migrateSchema(ns, migrations, target, log);
    if (empty) {
      log.info({ schemaVersion: target }, 'initialised etcd state');
      return target;
    }
    return migrateSchema(ns, migrations, target, log);
  }
  let version = Number(raw);
  if (!Number.isInteger(version) || version < 0) {
    throw new Error(
      `etcd key ${SCHEMA_KEY} holds "${raw}", not a schema version; restore the state from a backup`,
    );
  }
  if (version > target) throw new SchemaTooNewError(version, target);
  while (version < target) {
    const step = migrations.find((m) => m.from === version);
    if (!step) throw new Error(`no migration from etcd state schema version ${version} to ${version + 1}`);
    log.info({ from: version, to: version + 1, migration: step.description }, 'migrating etcd state');
    await step.apply(ns);
    const next = version + 1;
    const r = await ns
      .if(SCHEMA_KEY, 'Value', '==', String(version))
      .then(ns.put(SCHEMA_KEY).value(String(next)))
      .commit();
    if (!r.succeeded) return migrateSchema(ns, migrations, target, log);
    version = next;
  }
  return version;
}
