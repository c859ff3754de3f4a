import type { Namespace } from 'etcd3';

/**
 * A cell's lifecycle, in order. A record only moves forward; any state may jump ahead to
 * `terminating` or `deleting` (a pod can be deleted at any time).
 * - requested: the record exists, the VM insert has not been sent yet
 * - creating: `instances.insert` sent (its requestId makes a retry after a crash safe)
 * - booting: the VM runs, its agent does not answer yet
 * - ready: the agent answers, no pod dispatched
 * - dispatched: the pod was sent to the agent
 * - terminating: the pod is being stopped with its grace period
 * - deleting: the VM delete was sent; the record goes once the VM is gone
 */
export const CELL_STATES = [
  'requested',
  'creating',
  'booting',
  'ready',
  'dispatched',
  'terminating',
  'deleting',
] as const;
export type CellState = (typeof CELL_STATES)[number];

/** What the provider remembers about one pod's cell. Kubernetes stays the source of truth for pods. */
export interface CellRecord {
  podUid: string;
  namespace: string;
  podName: string;
  /** The VM's name, derived from the pod UID (`cellNameForPod`), so a retry never makes a second VM. */
  cellName: string;
  state: CellState;
  machineType?: string;
  zone?: string;
  spot?: boolean;
  /** The cell's IP address once known (the pod's IP). */
  address?: string;
  /** Why the cell is in its state, for status messages (`ZONE_RESOURCE_POOL_EXHAUSTED in us-central1-a`). */
  message?: string;
  createdAt: string;
  updatedAt: string;
  /** When the current state was entered. */
  stateSince: string;
}

/** A record with the etcd mod revision it was read at; updates are compare-and-swap on it. */
export interface StoredCell {
  record: CellRecord;
  revision: string;
}

/** Someone else changed or removed the record since it was read; re-read and decide again. */
export class CellConflictError extends Error {
  constructor(
    readonly podUid: string,
    /** The record as it is now, or null if it is gone. */
    readonly current: StoredCell | null,
  ) {
    super(`cell record for pod ${podUid} changed since it was read; re-read it and retry`);
    this.name = 'CellConflictError';
  }
}

/** A record already exists for the pod: adopt it instead of creating a second cell. */
export class CellExistsError extends Error {
  constructor(readonly current: StoredCell) {
    super(
      `a cell record for pod ${current.record.podUid} already exists (${current.record.cellName}); adopt it`,
    );
    this.name = 'CellExistsError';
  }
}

/** The requested state change would move a cell backwards. */
export class InvalidCellTransitionError extends Error {
  constructor(
    readonly podUid: string,
    readonly from: CellState,
    readonly to: CellState,
  ) {
    super(`cell for pod ${podUid} cannot go from ${from} back to ${to}`);
    this.name = 'InvalidCellTransitionError';
  }
}

/** Whether a cell may move from `from` to `to`. */
export function canTransition(from: CellState, to: CellState): boolean {
  return CELL_STATES.indexOf(to) >= CELL_STATES.indexOf(from);
}

/**
 * The cell's VM name: the cluster id and the pod UID's hex digits, cut to GCE's 63-character limit.
 * Deterministic, so the same pod always maps to the same VM.
 */
export function cellNameForPod(clusterId: string, podUid: string): string {
  const hex = podUid.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length < 16) throw new Error(`pod UID "${podUid}" is too short to name a cell`);
  return `${clusterId}-${hex.slice(0, Math.max(16, 62 - clusterId.length))}`;
}

export type NewCell = Omit<CellRecord, 'createdAt' | 'updatedAt' | 'stateSince' | 'state'> & {
  state?: CellState;
};

/** Fields a caller may change on a record. */
export type CellChanges = Partial<Omit<CellRecord, 'podUid' | 'createdAt' | 'updatedAt' | 'stateSince'>>;

/** Cell records under `cells/<pod UID>`, with compare-and-swap updates. */
export class CellStore {
  private readonly cells: Namespace;

  constructor(
    ns: Namespace,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.cells = ns.namespace('cells/');
  }

  async get(podUid: string): Promise<StoredCell | null> {
    const { kvs } = await this.cells.get(podUid).exec();
    const kv = kvs[0];
    return kv ? { record: JSON.parse(kv.value.toString()) as CellRecord, revision: kv.mod_revision } : null;
  }

  /** Creates the pod's record; throws CellExistsError (carrying the existing one) if there is one. */
  async create(cell: NewCell): Promise<StoredCell> {
    const at = this.now().toISOString();
    const record: CellRecord = {
      ...cell,
      state: cell.state ?? 'requested',
      createdAt: at,
      updatedAt: at,
      stateSince: at,
    };
    const r = await this.cells
      .if(cell.podUid, 'Create', '==', 0)
      .then(this.cells.put(cell.podUid).value(JSON.stringify(record)))
      .else(this.cells.get(cell.podUid))
      .commit();
    if (!r.succeeded) {
      const kv = r.responses[0]!.response_range!.kvs[0]!;
      throw new CellExistsError({
        record: JSON.parse(kv.value.toString()) as CellRecord,
        revision: kv.mod_revision,
      });
    }
    return { record, revision: r.header.revision };
  }

  /**
   * Applies `changes` if the record is still at `revision`; throws CellConflictError (with the
   * current record) otherwise, and InvalidCellTransitionError for a backwards state change.
   */
  async update(current: StoredCell, changes: CellChanges): Promise<StoredCell> {
    const { record } = current;
    if (changes.state && !canTransition(record.state, changes.state)) {
      throw new InvalidCellTransitionError(record.podUid, record.state, changes.state);
    }
    const at = this.now().toISOString();
    const next: CellRecord = {
      ...record,
      ...changes,
      podUid: record.podUid,
      updatedAt: at,
      stateSince: changes.state && changes.state !== record.state ? at : record.stateSince,
    };
    const r = await this.cells
      .if(record.podUid, 'Mod', '==', current.revision)
      .then(this.cells.put(record.podUid).value(JSON.stringify(next)))
      .else(this.cells.get(record.podUid))
      .commit();
    if (!r.succeeded)
      throw new CellConflictError(record.podUid, this.fromRange(r.responses[0]?.response_range?.kvs[0]));
    return { record: next, revision: r.header.revision };
  }

  /**
   * Reads, applies `change` and writes with CAS, re-reading on conflicts (up to `attempts` times).
   * `change` returns the fields to set, or null to leave the record as it is. With `known` (a
   * record the caller read or wrote last) the first attempt skips the read.
   */
  async mutate(
    podUid: string,
    change: (r: CellRecord) => CellChanges | null,
    attempts = 5,
    known?: StoredCell,
  ): Promise<StoredCell | null> {
    // `known` (the caller's last write) saves the read; a conflict hands back the current record.
    let current = known ?? (await this.get(podUid));
    for (let i = 0; ; i++) {
      if (!current) return null;
      const changes = change(current.record);
      if (!changes) return current;
      try {
        return await this.update(current, changes);
      } catch (err) {
        if (!(err instanceof CellConflictError) || i + 1 >= attempts) throw err;
        current = err.current;
      }
    }
  }

  /** Deletes the record if it is still at `revision`; throws CellConflictError otherwise. */
  async delete(current: StoredCell): Promise<void> {
    const uid = current.record.podUid;
    const r = await this.cells
      .if(uid, 'Mod', '==', current.revision)
      .then(this.cells.delete().key(uid))
      .else(this.cells.get(uid))
      .commit();
    if (!r.succeeded)
      throw new CellConflictError(uid, this.fromRange(r.responses[0]?.response_range?.kvs[0]));
  }

  async list(): Promise<StoredCell[]> {
    const { kvs } = await this.cells.getAll().exec();
    return kvs.map((kv) => ({
      record: JSON.parse(kv.value.toString()) as CellRecord,
      revision: kv.mod_revision,
    }));
  }

  /** How many records are in each state (every state listed, zeros included). */
  async countByState(): Promise<Record<CellState, number>> {
    const counts = Object.fromEntries(CELL_STATES.map((s) => [s, 0])) as Record<CellState, number>;
    for (const { record } of await this.list()) counts[record.state]++;
    return counts;
  }

  private fromRange(kv: { value: Buffer; mod_revision: string } | undefined): StoredCell | null {
    return kv ? { record: JSON.parse(kv.value.toString()) as CellRecord, revision: kv.mod_revision } : null;
  }
}
