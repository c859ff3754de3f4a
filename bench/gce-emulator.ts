// Figures for the Compute Engine emulator: how many cell lifecycles per minute it sustains through
// @google-cloud/compute (hypervisor none, no simulated delays), the Compute API calls each took,
// the emulator's memory with many instances, and the netns boot latency from insert to a cell
// process answering at its networkIP.
import { readFileSync } from 'node:fs';
import { InstancesClient, ZoneOperationsClient, type protos } from '@google-cloud/compute';
import { cellInstance, startGceEmulator, waitZoneOperation, type GceEmulator } from '../test/support/gce.ts';
import { pct } from './percentile.ts';

type Operation = protos.google.cloud.compute.v1.IOperation;
const CELLS = Number(process.env.CELLS ?? 400);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 40);
const BOOTS = Number(process.env.BOOTS ?? 8);
const ZONE = 'us-central1-a';
const ZERO = { operationPendingMs: 0, provisioningMs: 0, stagingMs: 0, deleteMs: 0, otherMs: 0 };

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function clients(emu: GceEmulator) {
  const instances = new InstancesClient(emu.clientOptions);
  const ops = new ZoneOperationsClient(emu.clientOptions);
  const wait = async (op: Operation) => {
    const done = await waitZoneOperation(ops, emu.project, ZONE, op);
    if (done.error) throw new Error(JSON.stringify(done.error));
  };
  const insert = async (name: string) => {
    const [lro] = await instances.insert({
      project: emu.project,
      zone: ZONE,
      instanceResource: cellInstance(ZONE, name, { labels: { 'kip-cluster': 'bench' } }),
    });
    await wait(lro.latestResponse as Operation);
  };
  const remove = async (name: string) => {
    const [lro] = await instances.delete({ project: emu.project, zone: ZONE, instance: name });
    await wait(lro.latestResponse as Operation);
  };
  return { instances, insert, remove };
}

async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function churn() {
  const emu = await startGceEmulator({ config: { delays: ZERO } });
  try {
    const { instances, insert, remove } = clients(emu);
    await insert('warm-up');
    await remove('warm-up');
    await emu.admin.resetCalls();
    const lifecycle: number[] = [];
    const t0 = Date.now();
    await pool(CELLS, CONCURRENCY, async (i) => {
      const s = Date.now();
      await insert(`cell-${i}`);
      await remove(`cell-${i}`);
      lifecycle.push(Date.now() - s);
    });
    const seconds = (Date.now() - t0) / 1000;
    const calls = await emu.admin.calls();
    // Memory with many live instances: fill, measure, list them all once.
    await pool(CELLS, CONCURRENCY, (i) => insert(`live-${i}`));
    const rss = rssMB(emu.proc.ready.pid as number);
    const l0 = Date.now();
    const [all] = await instances.list({
      project: emu.project,
      zone: ZONE,
      filter: 'labels.kip-cluster = bench',
    });
    const listMs = Date.now() - l0;
    return {
      cellsPerMinute: Math.round((CELLS / seconds) * 60),
      callsPerCell: calls.total / CELLS,
      lifecycleP50Ms: pct(lifecycle, 50),
      lifecycleP95Ms: pct(lifecycle, 95),
      rssMBWithInstances: Math.round(rss),
      liveInstances: all.length,
      listAllMs: listMs,
    };
  } finally {
    await emu.stop();
  }
}

async function boots() {
  const emu = await startGceEmulator({
    hypervisor: 'netns',
    config: {
      delays: ZERO,
      hypervisor: { bootCommand: ['busybox', 'httpd', '-f', '-p', '{ip}:8080', '-h', '{cellDir}'] },
    },
  });
  try {
    const { instances, insert, remove } = clients(emu);
    const boot: number[] = [];
    const teardown: number[] = [];
    for (let i = 0; i < BOOTS; i++) {
      const t0 = Date.now();
      await insert(`boot-${i}`);
      // As the provider does: probe the address once the instance is RUNNING.
      let [vm] = await instances.get({ project: emu.project, zone: ZONE, instance: `boot-${i}` });
      while (vm.status !== 'RUNNING') {
        await new Promise((r) => setTimeout(r, 5));
        [vm] = await instances.get({ project: emu.project, zone: ZONE, instance: `boot-${i}` });
      }
      const ip = vm.networkInterfaces![0]!.networkIP!;
      for (;;) {
        const ok = await fetch(`http://${ip}:8080/agent.log`).then(
          (r) => r.status < 500,
          () => false,
        );
        if (ok) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      boot.push(Date.now() - t0);
      const t1 = Date.now();
      await remove(`boot-${i}`);
      teardown.push(Date.now() - t1);
    }
    return { bootP50Ms: pct(boot, 50), bootMaxMs: Math.max(...boot), teardownP50Ms: pct(teardown, 50) };
  } finally {
    await emu.stop();
  }
}

async function main(): Promise<void> {
  const c = await churn();
  console.log(
    `cell lifecycles (insert+wait, delete+wait), ${CELLS} cells, ${CONCURRENCY} at a time: ${c.cellsPerMinute} per minute`,
  );
  console.log(`Compute API calls per cell lifecycle: ${c.callsPerCell.toFixed(2)}`);
  console.log(`lifecycle latency p50 ${c.lifecycleP50Ms} ms, p95 ${c.lifecycleP95Ms} ms`);
  console.log(
    `emulator RSS with ${c.liveInstances} live instances: ${c.rssMBWithInstances} MB; one filtered list of all: ${c.listAllMs} ms`,
  );
  const b = await boots();
  console.log(
    `netns boot, insert to a process answering at the networkIP: p50 ${b.bootP50Ms} ms, max ${b.bootMaxMs} ms (${BOOTS} cells)`,
  );
  console.log(`netns teardown (delete+wait): p50 ${b.teardownP50Ms} ms`);
  console.log(JSON.stringify({ bench: 'gce-emulator', cells: CELLS, concurrency: CONCURRENCY, ...c, ...b }));
}

void main();
