/**
 * The provider's metering against a real etcd, the usage reporter and the Service Control
 * emulator: how fast cell starts and stops are recorded (10 concurrent callers, as the cell
 * manager's workers), how long closing an interval takes with many cells running, and how long
 * sending one interval's reports takes. Also checks the billed total against the cells' runtime.
 *
 *   npx tsx bench/metering.ts [--cells 2000]
 */
import { createLogger } from '../lib/log.ts';
import { UsageMeter } from '../provider/metering/usage-meter.ts';
import type { CellStartedUsage } from '../provider/pods/types.ts';
import { StateStore } from '../provider/state/store.ts';
import { startEtcd } from '../provider/testing/etcd.ts';
import { EmulatorHandle, ReporterHandle, ReporterHome } from '../usage-reporter/test-harness.ts';
import { providerReporterConfig } from '../test/metering/reporter-config.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const FAMILIES = [
  { machineType: 'e2-standard-2', vcpus: 2, memoryMiB: 8192, gpus: 0 },
  { machineType: 'n2-standard-4', vcpus: 4, memoryMiB: 16384, gpus: 0 },
  { machineType: 'c3-standard-8', vcpus: 8, memoryMiB: 32768, gpus: 0 },
  { machineType: 'g2-standard-4', vcpus: 4, memoryMiB: 16384, gpus: 1 },
];

async function inParallel<T>(items: T[], workers: number, fn: (t: T) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
  return performance.now() - t0;
}

const n = arg('cells', 2000);
const log = createLogger('bench-metering', 'silent');
const etcd = await startEtcd();
const emu = await EmulatorHandle.start();
const home = new ReporterHome();
let reporter: ReporterHandle | undefined;
let store: StateStore | undefined;
try {
  home.writeConfig(providerReporterConfig(emu.rootUrl));
  reporter = await ReporterHandle.start(home);
  store = await StateStore.open({ endpoints: [etcd.endpoint], prefix: '/kip-bench/', log });
  const meter = new UsageMeter({ ns: store.ns, reporterUrl: reporter.url, intervalSeconds: 3600, log });

  const now = Date.now();
  const cells: CellStartedUsage[] = Array.from({ length: n }, (_, i) => ({
    cellName: `kip-bench-${i}`,
    podUid: `uid-${i}`,
    namespace: 'default',
    podName: `pod-${i}`,
    zone: 'us-central1-a',
    spot: Math.floor(i / FAMILIES.length) % 2 === 1,
    at: new Date(now - 60_000),
    ...FAMILIES[i % FAMILIES.length]!,
  }));
  const startMs = await inParallel(cells, 10, (c) => meter.cellStarted(c));
  const startsPerSecond = Math.round((n / startMs) * 1000);
  console.log(`cellStarted: ${n} cells in ${Math.round(startMs)} ms (${startsPerSecond}/s, 10 callers)`);

  let t0 = performance.now();
  const first = await meter.flush();
  const flushRunningMs = performance.now() - t0;
  console.log(
    `flush with ${n} cells running: ${Math.round(flushRunningMs)} ms (${first.recorded} reports recorded, ${first.posted} sent)`,
  );

  const stopAt = Date.now();
  const stopMs = await inParallel(cells, 10, (c) =>
    meter.cellStopped({ cellName: c.cellName, at: new Date(stopAt) }),
  );
  const stopsPerSecond = Math.round((n / stopMs) * 1000);
  console.log(`cellStopped: ${n} cells in ${Math.round(stopMs)} ms (${stopsPerSecond}/s, 10 callers)`);

  t0 = performance.now();
  const last = await meter.flush();
  const flushSettleMs = performance.now() - t0;
  console.log(
    `final flush settling ${n} cells: ${Math.round(flushSettleMs)} ms (${last.posted} reports sent)`,
  );

  await reporter.settled(60_000);
  const billed = Number(await emu.total('cell_seconds'));
  const ran = (n * (stopAt - (now - 60_000))) / 1000;
  const groups = FAMILIES.length * 2;
  console.log(
    `billed ${billed} cell-seconds for ${ran.toFixed(1)} s of runtime (difference ${(billed - ran).toFixed(2)}; at most 0.5 per label group, ${groups} groups)`,
  );
  console.log(
    JSON.stringify({
      bench: 'metering',
      cells: n,
      cellStartsPerSecond: startsPerSecond,
      cellStopsPerSecond: stopsPerSecond,
      flushRunningMs: Math.round(flushRunningMs),
      flushSettleMs: Math.round(flushSettleMs),
      billedCellSeconds: billed,
      runtimeSeconds: Math.round(ran * 10) / 10,
    }),
  );
  await meter.stop();
} finally {
  store?.close();
  await reporter?.terminate();
  await emu.stop();
  home.remove();
  await etcd.stop();
}
