import type { Logger } from '../../lib/log.ts';
import type { CellInstance, CellRef, CloudProvider } from './cloud-provider.ts';

export interface OrphanCollectorOptions {
  provider: Pick<CloudProvider, 'delete'>;
  /**
   * Reads the cell records once per listing and answers, for each VM, whether one still claims
   * it (the VM's labels carry the cell id and pod identity). One read per listing, not one per VM:
   * a cluster with thousands of cells lists them every few seconds.
   */
  claims: () => Promise<(vm: CellInstance) => boolean>;
  /** Listings in a row a VM must be seen without a record before it is deleted. Default 2. */
  threshold?: number;
  log?: Logger;
}

/**
 * Deletes VMs this cluster owns (they carry its label; the listing already filters on it) that no
 * cell record claims. A VM must be seen unclaimed in consecutive listings before it goes, so a
 * cell whose record is being written as the listing runs is never deleted.
 */
export class OrphanCollector {
  private readonly seen = new Map<string, number>();
  private readonly threshold: number;
  deleted = 0;

  constructor(private readonly opts: OrphanCollectorOptions) {
    this.threshold = opts.threshold ?? 2;
  }

  /** Feeds one listing; deletes the VMs that reached the threshold and returns them. */
  async observe(instances: CellInstance[]): Promise<CellRef[]> {
    const gone: CellRef[] = [];
    const current = new Set<string>();
    const claimed = await this.opts.claims();
    for (const vm of instances) {
      const key = `${vm.zone}/${vm.name}`;
      if (vm.status === 'STOPPING' || vm.status === 'TERMINATED') continue;
      if (claimed(vm)) continue;
      current.add(key);
      const n = (this.seen.get(key) ?? 0) + 1;
      this.seen.set(key, n);
      if (n < this.threshold) continue;
      try {
        await this.opts.provider.delete({ name: vm.name, zone: vm.zone });
        this.deleted++;
        gone.push({ name: vm.name, zone: vm.zone });
        this.opts.log?.info(
          { vm: vm.name, zone: vm.zone, cell: vm.cellId, pod: vm.pod },
          'deleted orphaned cell VM',
        );
      } catch (e) {
        this.opts.log?.warn(
          { vm: vm.name, err: (e as Error).message },
          'deleting orphaned cell VM failed; will retry',
        );
      }
    }
    // A VM claimed again, or gone, starts over.
    for (const key of [...this.seen.keys()]) if (!current.has(key)) this.seen.delete(key);
    for (const g of gone) this.seen.delete(`${g.zone}/${g.name}`);
    return gone;
  }
}
