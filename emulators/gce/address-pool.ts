/** IPv4 helpers and a pool that hands out cell addresses from one block. */

export function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** An address block: `base/prefix` with the gateway (the bridge's address) at base+1. */
export interface AddressBlock {
  cidr: string;
  prefix: number;
  gateway: string;
}

export function blockOf(cidr: string): AddressBlock {
  const [base, prefix] = cidr.split('/') as [string, string];
  return { cidr, prefix: Number(prefix), gateway: intToIp(ipToInt(base) + 1) };
}

/**
 * Hands out addresses in a block, lowest free first after the gateway, never the network or
 * broadcast address; released addresses are reused only after the rest of the block, so a stale
 * client never reaches a new cell at an old cell's address soon after a delete.
 */
export class AddressPool {
  private readonly first: number;
  private readonly last: number;
  private next: number;
  private readonly inUse = new Set<number>();

  constructor(readonly block: AddressBlock) {
    const base = ipToInt(block.cidr.split('/')[0]!);
    const size = 2 ** (32 - block.prefix);
    this.first = ipToInt(block.gateway) + 1;
    this.last = base + size - 2;
    this.next = this.first;
  }

  allocate(): string {
    const span = this.last - this.first + 1;
    for (let i = 0; i < span; i++) {
      const candidate = this.first + ((this.next - this.first + i) % span);
      if (!this.inUse.has(candidate)) {
        this.inUse.add(candidate);
        this.next = candidate + 1 > this.last ? this.first : candidate + 1;
        return intToIp(candidate);
      }
    }
    throw new Error(`address block ${this.block.cidr} is exhausted`);
  }

  release(ip: string): void {
    this.inUse.delete(ipToInt(ip));
  }

  get used(): number {
    return this.inUse.size;
  }
}
