/**
 * Metering end to end: the provider's UsageMeter on a real etcd, posting to the real usage reporter,
 * which bills the Service Control emulator (both child processes, as a user runs them).
 */
import assert from 'node:assert/strict';
import { createLogger } from '../../lib/log.ts';
import { UsageReporterClient, type MetricReport } from '../../lib/usage-reporter-client.ts';
import { UsageLedger } from '../../provider/metering/ledger.ts';
import { UsageMeter } from '../../provider/metering/usage-meter.ts';
import type { ReporterApi } from '../../provider/metering/interval-poster.ts';
import type { CellStartedUsage } from '../../provider/pods/types.ts';
import { StateStore } from '../../provider/state/store.ts';
import { startEtcd, type TestEtcd } from '../../provider/testing/etcd.ts';
import {
  EmulatorHandle,
  ReporterHandle,
  ReporterHome,
  SERVICE,
  waitFor,
} from '../../usage-reporter/test-harness.ts';
import { providerReporterConfig } from './reporter-config.ts';

const log = createLogger('metering-test', process.env.TEST_LOG_LEVEL ?? 'silent');
type Shape = Pick<CellStartedUsage, 'machineType' | 'spot' | 'vcpus' | 'memoryMiB' | 'gpus'>;
const E2: Shape = { machineType: 'e2-standard-2', spot: false, vcpus: 2, memoryMiB: 8192, gpus: 0 };
const N2_SPOT: Shape = { machineType: 'n2-standard-4', spot: true, vcpus: 4, memoryMiB: 16384, gpus: 0 };
const A2: Shape = { machineType: 'a2-highgpu-1g', spot: false, vcpus: 12, memoryMiB: 87040, gpus: 1 };

let cellN = 0;
function started(shape: Shape, at: number): CellStartedUsage {
  const n = cellN++;
  return {
    cellName: `kip-test-${process.pid}-${n}`,
    podUid: `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`,
    namespace: 'default',
    podName: `pod-${n}`,
    zone: 'us-central1-a',
    at: new Date(at),
    ...shape,
  };
}

/** What a cell should cost: its runtime in seconds times each resource. */
function expected(cells: { shape: Shape; seconds: number }[]): Record<string, number> {
  const out: Record<string, number> = {};
  const add = (k: string, v: number) => (out[k] = (out[k] ?? 0) + v);
  for (const { shape, seconds } of cells) {
    const g = `${shape.machineType.split('-')[0]},${shape.spot}`;
    add(`cell_seconds{${g}}`, seconds);
    add(`vcpu_seconds{${g}}`, seconds * shape.vcpus);
    add(`memory_gib_seconds{${g}}`, (seconds * shape.memoryMiB) / 1024);
    if (shape.gpus) add(`gpu_seconds{${g}}`, seconds * shape.gpus);
  }
  return out;
}

/** What the emulator billed, per `metric{family,spot}`. */
async function billed(emu: EmulatorHandle): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const { operation } of (await emu.recorded()).operations) {
    const l = operation.userLabels ?? {};
    for (const set of operation.metricValueSets ?? []) {
      const metric = set.metricName!.slice(SERVICE.length + 1);
      const k = `${metric}{${l.machine_family},${l.spot}}`;
      for (const v of set.metricValues ?? []) out[k] = (out[k] ?? 0) + Number(v.int64Value ?? 0);
    }
  }
  return out;
}

/**
 * Billed equals expected within one unit per resource-second of each cell (`cells` per group): the
 * meter bills whole units and carries the fraction.
 */
function assertWithin(
  got: Record<string, number>,
  want: Record<string, number>,
  tolerance: Record<string, number>,
) {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `billed ${JSON.stringify(got)}`);
  for (const [k, v] of Object.entries(want)) {
    const tol = tolerance[k] ?? 1;
    assert.ok(
      Math.abs(got[k]! - v) <= tol,
      `${k}: billed ${got[k]}, ran ${v.toFixed(2)} (tolerance ${tol}); all billed: ${JSON.stringify(got)}`,
    );
  }
}

/** A reporter client whose calls can be made to hang, as if the provider died at that point. */
class CrashingReporter implements ReporterApi {
  private readonly real: UsageReporterClient;
  hangStatus = false;
  /** Hang after this many reports were accepted by the real reporter. */
  hangAfterReports = Infinity;
  accepted = 0;
  hung = false;
  private release?: (err: Error) => void;

  constructor(url: string) {
    this.real = new UsageReporterClient({ baseUrl: url });
  }

  private hang(): Promise<never> {
    this.hung = true;
    return new Promise((_, reject) => (this.release = reject));
  }

  async status(): Promise<unknown> {
    if (this.hangStatus) return this.hang();
    return this.real.status();
  }

  async report(r: MetricReport): Promise<void> {
    await this.real.report(r);
    if (++this.accepted >= this.hangAfterReports) return this.hang();
  }

  /** The dead provider's call ends (its etcd client is already closed, so it cannot write). */
  end(): void {
    this.release?.(new Error('provider process gone'));
  }
}

describe('provider metering → usage reporter → Service Control', function () {
  this.timeout(60_000);
  let etcd: TestEtcd;
  let emu: EmulatorHandle;
  let home: ReporterHome;
  let reporter: ReporterHandle;
  const stores: StateStore[] = [];
  const meters: UsageMeter[] = [];
  let prefixN = 0;
  let prefix = '';

  const openStore = async () => {
    const s = await StateStore.open({ endpoints: [etcd.endpoint], prefix, log }, 5000);
    stores.push(s);
    return s;
  };
  const newMeter = async (opts: { intervalSeconds?: number; reporter?: ReporterApi } = {}) => {
    const store = await openStore();
    const meter = new UsageMeter({
      ns: store.ns,
      reporterUrl: reporter.url,
      reporter: opts.reporter,
      intervalSeconds: opts.intervalSeconds ?? 3600,
      log,
    });
    meters.push(meter);
    return { meter, store };
  };

  before(async () => {
    etcd = await startEtcd();
    emu = await EmulatorHandle.start();
    home = new ReporterHome();
    home.writeConfig(providerReporterConfig(emu.rootUrl));
    reporter = await ReporterHandle.start(home);
  });

  beforeEach(async () => {
    prefix = `/kip-metering-${process.pid}-${prefixN++}/`;
    await reporter.settled();
    const res = await fetch(new URL('/admin/operations', emu.rootUrl), { method: 'DELETE' });
    assert.ok(res.ok);
  });

  afterEach(async () => {
    for (const m of meters.splice(0)) await Promise.race([m.stop(), new Promise((r) => setTimeout(r, 3000))]);
    for (const s of stores.splice(0)) s.close();
  });

  after(async () => {
    await reporter?.terminate();
    await emu?.stop();
    home?.remove();
    await etcd?.stop();
  });

  it('bills each cell its running time, posting deltas every interval', async () => {
    const { meter, store } = await newMeter({ intervalSeconds: 1 });
    const t0 = Date.now();
    const a = started(E2, t0 - 30_000);
    const b = started(N2_SPOT, t0 - 12_000);
    const g = started(A2, t0);
    for (const c of [a, b, g]) await meter.cellStarted(c);
    await meter.cellStarted({ ...b, at: new Date(t0) }); // a repeated report keeps the first start
    await meter.cellStopped({ cellName: a.cellName, at: new Date(t0 - 5000) });
    meter.start();
    // While b and g run, their usage is billed interval by interval.
    const running = await waitFor(
      async () => {
        const got = await billed(emu);
        return (got['cell_seconds{n2,true}'] ?? 0) >= 13 && got['gpu_seconds{a2,false}'] ? got : undefined;
      },
      10_000,
      'running cells to be billed before they stop',
    );
    assert.equal(running['cell_seconds{e2,false}'], 25);
    await new Promise((r) => setTimeout(r, 1200));
    const tStop = Date.now();
    await meter.cellStopped({ cellName: b.cellName, at: new Date(tStop) });
    await meter.cellStopped({ cellName: g.cellName, at: new Date(tStop) });
    // The final interval: the ledger forgets the cells once billed, and a late repeat bills nothing.
    const ledger = new UsageLedger(store.ns);
    await waitFor(
      async () => ((await ledger.cells()).length === 0 ? true : undefined),
      5000,
      'cells settled',
    );
    await meter.cellStarted(a);
    await meter.cellStopped({ cellName: a.cellName, at: new Date() });
    await meter.flush();
    await reporter.settled();
    const got = await billed(emu);
    const bSeconds = (tStop - (t0 - 12_000)) / 1000;
    const gSeconds = (tStop - t0) / 1000;
    assertWithin(
      got,
      expected([
        { shape: E2, seconds: 25 },
        { shape: N2_SPOT, seconds: bSeconds },
        { shape: A2, seconds: gSeconds },
      ]),
      {},
    );
    assert.deepEqual(await ledger.kept(), [], 'no unconfirmed or rejected reports');
  });

  it('records a burst of cells reported at once, from two provider processes, and bills each once', async () => {
    const a = await newMeter();
    const b = await newMeter(); // e.g. the old pod still running during a rollout
    const now = Date.now();
    const cells = Array.from({ length: 60 }, () => started(E2, now - 10_000));
    await Promise.all(cells.map((c, i) => (i % 2 ? a : b).meter.cellStarted(c)));
    await Promise.all(cells.map((c) => b.meter.cellStarted(c))); // repeats change nothing
    await Promise.all(
      cells.map((c, i) =>
        (i % 3 ? b : a).meter.cellStopped({ cellName: c.cellName, at: new Date(now - 5000) }),
      ),
    );
    // Both close and send at once: the ledger's guards let one interval through per close and one
    // writer per report.
    await Promise.all([a.meter.flush(), b.meter.flush()]);
    assert.equal((await a.meter.flush()).pending, 0);
    await reporter.settled();
    assertWithin(await billed(emu), expected([{ shape: E2, seconds: 60 * 5 }]), {});
    assert.deepEqual(await new UsageLedger(a.store.ns).cells(), []);
  });

  it('refuses a cell event it cannot bill with an error naming the field, and stores nothing', async () => {
    const { meter, store } = await newMeter();
    const good = started(E2, Date.now());
    await assert.rejects(meter.cellStarted({ ...good, vcpus: -2 }), {
      name: 'InvalidUsageError',
      field: 'vcpus',
      message: /vcpus must be a non-negative number/,
    });
    await assert.rejects(meter.cellStarted({ ...good, at: new Date('not a date') }), { field: 'at' });
    await assert.rejects(meter.cellStarted({ ...good, machineType: '' }), { field: 'machineType' });
    await assert.rejects(meter.cellStopped({ cellName: good.cellName, at: new Date(NaN) }), { field: 'at' });
    assert.deepEqual(await new UsageLedger(store.ns).cells(), []);
    // A stop for a cell never started is ignored, not an error.
    await meter.cellStopped({ cellName: 'never-started', at: new Date() });
    assert.equal((await meter.flush()).recorded, 0);
  });

  /** Cells that all ran and stopped at known times in the past, so what is owed is fixed. */
  async function pastCells(meter: UsageMeter) {
    const now = Date.now();
    const a = started(E2, now - 20_000);
    const b = started(N2_SPOT, now - 15_000);
    const g = started(A2, now - 9000);
    for (const c of [a, b, g]) await meter.cellStarted(c);
    await meter.cellStopped({ cellName: a.cellName, at: new Date(now - 8000) });
    await meter.cellStopped({ cellName: b.cellName, at: new Date(now - 7500) });
    await meter.cellStopped({ cellName: g.cellName, at: new Date(now - 5000) });
    return expected([
      { shape: E2, seconds: 12 },
      { shape: N2_SPOT, seconds: 7.5 },
      { shape: A2, seconds: 4 },
    ]);
  }

  it('a provider killed after recording an interval and before posting it posts it once on restart', async () => {
    const crashing = new CrashingReporter(reporter.url);
    crashing.hangStatus = true;
    const first = await newMeter({ reporter: crashing });
    const want = await pastCells(first.meter);
    const flushing = first.meter.flush().catch(() => undefined);
    await waitFor(async () => (crashing.hung ? true : undefined), 5000, 'the interval to be recorded');
    // The process dies here: nothing it does later reaches etcd.
    first.store.close();
    crashing.end();
    await flushing;
    const view = new UsageLedger((await openStore()).ns);
    assert.equal((await view.pending()).length, 1, 'the interval is recorded, not sent');
    assert.deepEqual(await billed(emu), {});

    const second = await newMeter();
    const r = await second.meter.flush();
    assert.equal(r.pending, 0);
    await reporter.settled();
    assertWithin(await billed(emu), want, {});
    assert.deepEqual(await view.kept(), []);
    await second.meter.flush();
    await reporter.settled();
    assertWithin(await billed(emu), want, {});
  });

  it('a provider killed after the reporter took a report, before recording that, resends it under its id: billed once', async () => {
    const crashing = new CrashingReporter(reporter.url);
    crashing.hangAfterReports = 2;
    const first = await newMeter({ reporter: crashing });
    const want = await pastCells(first.meter);
    const flushing = first.meter.flush().catch(() => undefined);
    await waitFor(async () => (crashing.hung ? true : undefined), 5000, 'the second report to be taken');
    first.store.close();
    crashing.end();
    await flushing;

    const second = await newMeter();
    const r = await second.meter.flush();
    assert.equal(r.posted, 10 - 1, 'the rest of the interval, the interrupted report included');
    await reporter.settled();
    // Every report reached Service Control exactly once: the totals are the runtime, not more.
    assertWithin(await billed(emu), want, {});
    const view = new UsageLedger((await openStore()).ns);
    assert.deepEqual(await view.kept(), [], 'nothing left unconfirmed');
    assert.equal((await view.pending()).length, 0);
  });

  it('with metrics the reporter aggregates (no ids), an interrupted report is set aside, never billed twice', async () => {
    const aggHome = new ReporterHome();
    aggHome.writeConfig(providerReporterConfig(emu.rootUrl, 0.3));
    const aggReporter = await ReporterHandle.start(aggHome);
    try {
      const crashing = new CrashingReporter(aggReporter.url);
      crashing.hangAfterReports = 2;
      const store = await openStore();
      const first = new UsageMeter({ ns: store.ns, reporter: crashing, intervalSeconds: 3600, log });
      const want = await pastCells(first);
      const flushing = first.flush().catch(() => undefined);
      await waitFor(async () => (crashing.hung ? true : undefined), 5000, 'the second report to be taken');
      store.close();
      crashing.end();
      await flushing;

      const secondStore = await openStore();
      const second = new UsageMeter({
        ns: secondStore.ns,
        reporterUrl: aggReporter.url,
        intervalSeconds: 3600,
        log,
      });
      await second.flush();
      await aggReporter.settled();
      // The interrupted report had reached the reporter before the crash: billed once, not again.
      assertWithin(await billed(emu), want, {});
      const kept = await new UsageLedger(secondStore.ns).kept();
      assert.equal(kept.length, 1);
      assert.deepEqual(kept[0]!.unconfirmed, [1], 'the interrupted report is kept for reconciliation');
    } finally {
      await aggReporter.terminate();
      aggHome.remove();
    }
  });

  it('keeps usage while the reporter is down and sends all of it once it is back', async () => {
    const port = Number(new URL(reporter.url).port);
    const { meter } = await newMeter();
    const now = Date.now();
    const a = started(E2, now - 10_000);
    await meter.cellStarted(a);
    assert.equal((await meter.flush()).pending, 0);
    await reporter.settled();
    await reporter.kill9();
    try {
      await new Promise((r) => setTimeout(r, 1100));
      const r1 = await meter.flush();
      await new Promise((r) => setTimeout(r, 1100));
      const r2 = await meter.flush();
      assert.ok(r1.recorded > 0 && r2.recorded > 0, 'intervals are recorded while the reporter is down');
      assert.equal(r2.pending, 2);
    } finally {
      reporter = await ReporterHandle.start(home, ['--local-port', String(port)]);
    }
    const tStop = Date.now();
    await meter.cellStopped({ cellName: a.cellName, at: new Date(tStop) });
    const r3 = await meter.flush();
    assert.equal(r3.pending, 0);
    await reporter.settled();
    assertWithin(await billed(emu), expected([{ shape: E2, seconds: (tStop - (now - 10_000)) / 1000 }]), {});
  });
});
