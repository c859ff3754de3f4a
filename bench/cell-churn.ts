/**
 * Cell churn under Compute Engine's default request quotas, against the emulator (hypervisor
 * none: instances are bookkept, nothing boots). Cells are created and deleted as fast as the
 * quotas let the provider go, with the observer listing every 5 s as in production. Prints the
 * Compute API calls per cell lifecycle (from the emulator's own call counts) and the cells per
 * minute sustained, against Kip's ~85 cells/min and per-VM polling every 10 s.
 *
 *   npx tsx bench/cell-churn.ts [--windows 2] [--window-ms 60000] [--reads 1500] [--writes 1500] [--concurrency 64]
 */
import { randomUUID } from 'node:crypto';
import { GceCloudProvider } from '../provider/cloud/gce-cloud-provider.ts';
import { InstanceObserver } from '../provider/cloud/instance-observer.ts';
import { startGceEmulator } from '../test/support/gce.ts';

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const windows = flag('windows', 2);
const windowMs = flag('window-ms', 60_000);
const reads = flag('reads', 1500);
const writes = flag('writes', 1500);
const concurrency = flag('concurrency', 64);
// The provider keeps 2% of each quota in hand for clock and latency skew at window edges.
const headroom = 0.98;

const emu = await startGceEmulator({
  hypervisor: 'none',
  config: { quotas: { readRequestsPerMinute: reads, writeRequestsPerMinute: writes, windowMs } },
});
const provider = new GceCloudProvider({
  project: emu.project,
  zones: emu.zones,
  network: 'default',
  clusterId: `churn-${process.pid}`,
  endpoint: { host: emu.host, port: emu.port },
  readRequestsPerMinute: Math.floor(reads * headroom),
  writeRequestsPerMinute: Math.floor(writes * headroom),
  quotaWindowMs: windowMs,
});
const observer = new InstanceObserver({ provider, intervalMs: 5000 });

try {
  await provider.instanceTypes();
  await provider.ensureFirewall();
  observer.start();
  await emu.admin.resetCalls();
  // Start on a window boundary so the measured span covers whole quota windows.
  await new Promise((r) => setTimeout(r, windowMs - (Date.now() % windowMs) + 50));
  const start = Date.now();
  const end = start + windows * windowMs;
  let done = 0; // lifecycles finished inside the measured windows
  let completed = 0; // all lifecycles, including those in flight when the windows ended
  let failed = 0;
  const worker = async () => {
    while (Date.now() < end) {
      const uid = randomUUID();
      try {
        const cell = await provider.create({
          cellId: `c-${uid.slice(0, 8)}`,
          pod: { namespace: 'bench', name: `p-${uid.slice(0, 8)}`, uid },
          request: { cpuMillis: 250, memoryBytes: 512 * 2 ** 20, gpus: 0, spot: false },
          placement: { networkTags: [] },
          bootstrap: '{}',
        });
        await provider.delete(cell);
        completed++;
        if (Date.now() <= end) done++;
      } catch (e) {
        failed++;
        console.error(`lifecycle failed: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = Math.min(Date.now(), end) - start;
  observer.stop();
  const calls = await emu.admin.calls();
  const by = (m: string) => calls.byMethod[`compute.${m}`]?.total ?? 0;
  const lifecycleCalls = by('instances.insert') + by('zoneOperations.wait') + by('instances.delete');
  const refused = Object.values(calls.byMethod).reduce(
    (n, m) => n + (m.codes['403'] ?? 0) + (m.codes['429'] ?? 0),
    0,
  );
  // A shortened window with proportionally smaller quotas gives the same rate per real minute.
  const perMinute = (done / elapsed) * 60_000;
  const r = (x: number) => Math.round(x * 100) / 100;
  console.log(
    `cell churn: ${windows} quota windows of ${windowMs / 1000}s, quotas ${reads} reads + ${writes} writes per window, ${concurrency} lifecycles in flight`,
  );
  console.log(
    `  lifecycles completed: ${done} in ${r(elapsed / 1000)} s (${completed} with those in flight at the end; failed ${failed})`,
  );
  console.log(`  cells per minute sustained: ${r(perMinute)} (Kip: ~85; ${r(perMinute / 85)}x)`);
  console.log(
    `  Compute API calls per lifecycle: ${r(lifecycleCalls / Math.max(completed, 1))} (insert ${r(by('instances.insert') / Math.max(completed, 1))}, wait ${r(by('zoneOperations.wait') / Math.max(completed, 1))}, delete ${r(by('instances.delete') / Math.max(completed, 1))}); with listing ${r(calls.total / Math.max(completed, 1))}`,
  );
  console.log(
    `  listings: ${by('instances.list')} list calls (${emu.zones.length} zones every 5 s, independent of cell count)`,
  );
  console.log(`  calls refused over quota: ${refused}`);
  console.log(
    `  by method: ${JSON.stringify(Object.fromEntries(Object.entries(calls.byMethod).map(([k, v]) => [k, v.codes])))}`,
  );
  console.log(
    JSON.stringify({
      bench: 'cell-churn',
      windowMs,
      windows,
      readQuota: reads,
      writeQuota: writes,
      lifecycles: done,
      failed,
      cellsPerMinute: r(perMinute),
      vsKip: r(perMinute / 85),
      callsPerLifecycle: r(lifecycleCalls / Math.max(completed, 1)),
      callsPerLifecycleWithListing: r(calls.total / Math.max(completed, 1)),
      refusedOverQuota: refused,
    }),
  );
} finally {
  observer.stop();
  await provider.close();
  await emu.stop();
}
