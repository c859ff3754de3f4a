import type { ContainerStats, CpuStats, MemoryStats, PodStats } from '../lib/cell-agent-api.ts';
import { readCgroupNumber, readCgroupTable } from './cgroups.ts';
import type { PodRunner } from './pod-runner.ts';

interface Sample {
  atNs: bigint;
  usageNs: number;
}

/**
 * Reads per-container CPU and memory from cgroup v1 (cpuacct, memory) and turns them into the
 * kubelet summary's PodStats. usageNanoCores is the rate between this read and the previous one
 * of the same container instance.
 */
export class StatsCollector {
  private readonly last = new Map<string, Sample>();

  containerStats(
    runcId: string,
    startTime: string,
    name: string,
    cgroups: { memory?: string; cpuacct?: string },
  ): ContainerStats | undefined {
    const usageNs = readCgroupNumber(cgroups.cpuacct, 'cpuacct.usage');
    const usage = readCgroupNumber(cgroups.memory, 'memory.usage_in_bytes');
    if (usageNs === undefined || usage === undefined) return undefined;
    const atNs = process.hrtime.bigint();
    const time = new Date().toISOString();
    const prev = this.last.get(runcId);
    // Reads closer together than a second would give a noisy rate: keep the older sample as the base.
    if (!prev || atNs - prev.atNs >= 1_000_000_000n) this.last.set(runcId, { atNs, usageNs });
    const cpu: CpuStats = { time, usageCoreNanoSeconds: usageNs };
    if (prev && atNs > prev.atNs)
      cpu.usageNanoCores = Math.max(
        0,
        Math.round(((usageNs - prev.usageNs) / Number(atNs - prev.atNs)) * 1e9),
      );
    const st = readCgroupTable(cgroups.memory, 'memory.stat');
    const inactiveFile = st.get('total_inactive_file') ?? 0;
    const limit = readCgroupNumber(cgroups.memory, 'memory.limit_in_bytes');
    const workingSet = Math.max(0, usage - inactiveFile);
    const memory: MemoryStats = {
      time,
      usageBytes: usage,
      workingSetBytes: workingSet,
      rssBytes: st.get('total_rss') ?? 0,
      pageFaults: st.get('total_pgfault') ?? 0,
      majorPageFaults: st.get('total_pgmajfault') ?? 0,
      // An unlimited cgroup reports a huge page-rounded number; only a real limit has an available figure.
      ...(limit !== undefined && limit < 2 ** 60 ? { availableBytes: Math.max(0, limit - workingSet) } : {}),
    };
    return { name, startTime, cpu, memory };
  }

  /** PodStats for the pod's running containers. */
  podStats(pod: PodRunner): PodStats {
    const time = new Date().toISOString();
    const containers: ContainerStats[] = [];
    for (const r of pod.containers()) {
      const inst = r.current;
      if (!inst || inst.done) continue;
      const s = this.containerStats(inst.runcId, inst.startedAt, r.name, inst.cgroups);
      if (s) containers.push(s);
    }
    const live = new Set(pod.containers().map((r) => r.current?.runcId));
    for (const id of this.last.keys()) if (!live.has(id)) this.last.delete(id);
    const sum = (f: (c: ContainerStats) => number | undefined) =>
      containers.reduce((a, c) => a + (f(c) ?? 0), 0);
    const m = pod.pod.metadata!;
    return {
      podRef: { name: m.name!, namespace: m.namespace ?? 'default', uid: m.uid! },
      startTime: pod.status().startTime ?? time,
      containers,
      cpu: {
        time,
        usageNanoCores: sum((c) => c.cpu.usageNanoCores),
        usageCoreNanoSeconds: sum((c) => c.cpu.usageCoreNanoSeconds),
      },
      memory: {
        time,
        usageBytes: sum((c) => c.memory.usageBytes),
        workingSetBytes: sum((c) => c.memory.workingSetBytes),
        rssBytes: sum((c) => c.memory.rssBytes),
        pageFaults: sum((c) => c.memory.pageFaults),
        majorPageFaults: sum((c) => c.memory.majorPageFaults),
      },
    };
  }
}
