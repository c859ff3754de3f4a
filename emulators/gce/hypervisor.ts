import { AddressPool, blockOf, type AddressBlock } from './address-pool.ts';

/** What a cell needs to boot: its identity, address, disk and the agent config from metadata. */
export interface CellBoot {
  zone: string;
  name: string;
  ip: string;
  /** The boot disk's directory: the agent's --data-dir. */
  dataDir: string;
  /** The instance metadata item `kip-cell-agent-config`, when present. */
  agentConfig?: string;
}

/** What the host knows about a booted cell. */
export interface CellInfo {
  netns?: string;
  pid?: number;
  logFile?: string;
  /** `running` while its process lives; `exited` after; `idle` when it has no process. */
  state: 'running' | 'exited' | 'idle';
  exitCode?: number | null;
  command?: string[];
}

/** Boots and stops the machines behind RUNNING instances. */
export interface Hypervisor {
  readonly kind: 'none' | 'netns';
  /** The block instance addresses come from; the gateway is the bridge's own address. */
  readonly block: AddressBlock;
  readonly pool: AddressPool;
  readonly bridge?: string;
  boot(cell: CellBoot): Promise<CellInfo>;
  stop(zone: string, name: string): Promise<void>;
  info(zone: string, name: string): CellInfo | undefined;
  close(): Promise<void>;
}

/** Boots nothing: instances only get addresses (scale tests, provider logic tests). */
export class NoHypervisor implements Hypervisor {
  readonly kind = 'none' as const;
  readonly block = blockOf('198.18.0.0/15');
  readonly pool = new AddressPool(this.block);

  async boot(): Promise<CellInfo> {
    return { state: 'idle' };
  }

  async stop(): Promise<void> {}

  info(): CellInfo | undefined {
    return undefined;
  }

  async close(): Promise<void> {}
}
