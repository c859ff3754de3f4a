import type { Namespace } from 'etcd3';
import type { CellRecord, StoredCell } from './cells.ts';

/**
 * A standby cell's lifecycle: `creating` (record written before the insert, so a restart finds the
 * VM), `booting` (the VM runs, its agent does not answer yet), `ready` (claimable). A claimed cell
 * has no standby record any more: it is the pod's cell record.
 */
export type StandbyState = 'creating' | 'booting' | 'ready';

export interface StandbyRecord {
  /** The VM name (`standbyInstanceName`); the cell's certificate is issued for it. */
  name: string;
  machineType: string;
  spot: boolean;
  state: StandbyState;
  zone?: string;
  address?: string;
  createdAt: string;
  updatedAt: string;
}

export interface StoredStandby {
  record: StandbyRecord;
  revision: string;
}

/**
 * Standby cell records under `standby/<VM name>`, beside the pod cell records under `cells/`. The
 * claim moves a record from one to the other in one transaction, so two pods never get one cell.
 */
export class StandbyStore {
  private readonly standby: Namespace;

  /** `ns` is the provider's namespace, the same one the CellStore is built on. */
  constructor(
    private readonly ns: Namespace,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.standby = ns.namespace('standby/');
  }

  async list(): Promise<StoredStandby[]> {
    const { kvs } = await this.standby.getAll().exec();
    return kvs.map((kv) => ({
      record: JSON.parse(kv.value.toString()) as StandbyRecord,
      revision: kv.mod_revision,
    }));
  }

  async get(name: string): Promise<StoredStandby | null> {
    const { kvs } = await this.standby.get(name).exec();
    const kv = kvs[0];
    return kv
      ? { record: JSON.parse(kv.value.toString()) as StandbyRecord, revision: kv.mod_revision }
      : null;
  }

  async create(r: Pick<StandbyRecord, 'name' | 'machineType' | 'spot'>): Promise<StoredStandby> {
    const at = this.now().toISOString();
    const record: StandbyRecord = { ...r, state: 'creating', createdAt: at, updatedAt: at };
    const res = await this.standby
      .if(r.name, 'Create', '==', 0)
      .then(this.standby.put(r.name).value(JSON.stringify(record)))
      .commit();
    if (!res.succeeded) throw new Error(`standby record ${r.name} already exists`);
    return { record, revision: res.header.revision };
  }

  /** Applies changes if the record is unchanged since read; false when it changed or went (claimed). */
  async update(cur: StoredStandby, changes: Partial<StandbyRecord>): Promise<boolean> {
    const next = { ...cur.record, ...changes, updatedAt: this.now().toISOString() };
    const res = await this.standby
      .if(cur.record.name, 'Mod', '==', cur.revision)
      .then(this.standby.put(cur.record.name).value(JSON.stringify(next)))
      .commit();
    return res.succeeded;
  }

  /** Deletes the record if unchanged since read; false otherwise. */
  async delete(cur: StoredStandby): Promise<boolean> {
    const res = await this.standby
      .if(cur.record.name, 'Mod', '==', cur.revision)
      .then(this.standby.delete().key(cur.record.name))
      .commit();
    return res.succeeded;
  }

  /**
   * Hands a ready standby cell to a pod in one transaction: the standby record goes and the pod's
   * cell record (state `ready`, the VM's name, zone and address) appears, only if the standby
   * record is unchanged and the pod has no cell record yet. Null when either condition failed.
   */
  async claim(
    cur: StoredStandby,
    pod: { podUid: string; namespace: string; podName: string },
  ): Promise<StoredCell | null> {
    const s = cur.record;
    if (s.state !== 'ready' || !s.address) return null;
    const at = this.now().toISOString();
    const record: CellRecord = {
      ...pod,
      cellName: s.name,
      state: 'ready',
      machineType: s.machineType,
      ...(s.zone ? { zone: s.zone } : {}),
      spot: s.spot,
      address: s.address,
      createdAt: at,
      updatedAt: at,
      stateSince: at,
    };
    const res = await this.ns
      .if(`standby/${s.name}`, 'Mod', '==', cur.revision)
      .and(`cells/${pod.podUid}`, 'Create', '==', 0)
      .then(
        this.ns.delete().key(`standby/${s.name}`),
        this.ns.put(`cells/${pod.podUid}`).value(JSON.stringify(record)),
      )
      .commit();
    return res.succeeded ? { record, revision: res.header.revision } : null;
  }
}
