// What the cell agent benchmarks share: a cell network namespace, a registry the cell reaches
// through a forwarded port, the real agent in the cell, and its resident memory.
import { readFileSync } from 'node:fs';
import { startRegistry } from '../test/support/registry.ts';
import { createCellNetwork, forwardTcp, startAgent, type TestAgent } from '../test/cell-agent/support.ts';

/** Resident memory of a process, MB (from /proc). */
export function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export interface AgentSite {
  agent: TestAgent;
  /** The agent process's pid. */
  pid: number;
  /** The registry as the benchmark pushes to it (host:port on the host). */
  registryHost: string;
  /** The same registry as pods in the cell name it in their images. */
  cellRegistryHost: string;
  stop(): Promise<void>;
}

export async function startAgentSite(): Promise<AgentSite> {
  const cell = createCellNetwork();
  const registry = await startRegistry();
  const fwd = await forwardTcp(cell.hostIP, registry.host);
  const agent = await startAgent(cell, { insecureRegistries: [fwd.host] });
  return {
    agent,
    pid: agent.proc.ready.pid as number,
    registryHost: registry.host,
    cellRegistryHost: fwd.host,
    async stop() {
      await agent.stop();
      fwd.close();
      await registry.stop();
      cell.remove();
    },
  };
}
