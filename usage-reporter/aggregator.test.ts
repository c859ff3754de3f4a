import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../lib/log.ts';
import { Aggregator } from './aggregator.ts';
import type { MetricConfig } from './config.ts';
import { validateReport, type StampedReport } from './report.ts';
import { StateStore } from './state-store.ts';

const metric = {
  name: 'requests',
  type: 'int',
  endpoints: [{ name: 'sc' }],
  aggregation: { bufferSeconds: 0.2 },
} satisfies MetricConfig;
const metrics = new Map([[metric.name, metric as MetricConfig]]);
const log = createLogger('test', 'silent');

function r(value: number, start: string, end: string, labels: Record<string, string> = {}) {
  return validateReport(
    { name: 'requests', startTime: start, endTime: end, value: { int64Value: value }, labels },
    metrics,
  );
}

describe('aggregator', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), `kip-agg-${process.pid}-`))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('sums per label set over bufferSeconds, with an interval covering every report', async () => {
    const store = new StateStore(dir);
    await store.init();
    const emitted: StampedReport[] = [];
    const agg = new Aggregator({ metric, store, log, emit: (rs) => emitted.push(...rs) });
    agg.add(r(3, '2026-01-01T00:00:10Z', '2026-01-01T00:00:20Z', { zone: 'a' }));
    agg.add(r(4, '2026-01-01T00:00:05Z', '2026-01-01T00:00:15Z', { zone: 'a' }));
    agg.add(r(5, '2026-01-01T00:00:00Z', '2026-01-01T00:00:30Z', { zone: 'b' }));
    agg.add(r(6, '2026-01-01T00:00:12Z', '2026-01-01T00:00:40Z', { zone: 'a' }));
    await store.commit();
    assert.equal(emitted.length, 0, 'nothing before bufferSeconds');
    assert.equal(agg.status()?.labelSets, 2);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(emitted.length, 2);
    const a = emitted.find((e) => e.labels.zone === 'a')!;
    assert.deepEqual(a.value, { int64Value: '13' });
    assert.equal(a.startTime, '2026-01-01T00:00:05.000Z');
    assert.equal(a.endTime, '2026-01-01T00:00:40.000Z');
    assert.deepEqual(emitted.find((e) => e.labels.zone === 'b')!.value, { int64Value: '5' });
    assert.notEqual(a.id, emitted.find((e) => e.labels.zone === 'b')!.id);
    assert.equal(agg.status(), null);
  });

  it('keeps sums exact beyond 2^53', async () => {
    const store = new StateStore(dir);
    await store.init();
    const emitted: StampedReport[] = [];
    const agg = new Aggregator({ metric, store, log, emit: (rs) => emitted.push(...rs) });
    const big = validateReport(
      {
        name: 'requests',
        startTime: '2026-01-01T00:00:00Z',
        endTime: '2026-01-01T00:00:00Z',
        value: { int64Value: '9007199254740993' },
      },
      metrics,
    );
    agg.add(big);
    agg.add(big);
    agg.flush();
    await store.commit();
    assert.deepEqual(emitted[0]!.value, { int64Value: '18014398509481986' });
    agg.stop();
  });

  it('persists the open bucket, and a restarted aggregator flushes it under the same id', async () => {
    const store = new StateStore(dir);
    await store.init();
    const agg = new Aggregator({
      metric: { ...metric, aggregation: { bufferSeconds: 3600 } },
      store,
      log,
      emit: () => undefined,
    });
    agg.add(r(7, '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z'));
    await store.commit();
    agg.stop();
    const onDisk = JSON.parse(readFileSync(join(dir, 'aggregator/requests.json'), 'utf8')) as {
      entries: Record<string, StampedReport>;
    };
    const [saved] = Object.values(onDisk.entries);
    assert.deepEqual(saved!.value, { int64Value: '7' });

    const store2 = new StateStore(dir);
    const emitted: StampedReport[] = [];
    const again = new Aggregator({
      metric: { ...metric, aggregation: { bufferSeconds: 3600 } },
      store: store2,
      log,
      emit: (rs) => emitted.push(...rs),
    });
    await again.load();
    again.add(r(1, '2026-01-01T00:00:01Z', '2026-01-01T00:00:02Z'));
    again.flush();
    await store2.commit();
    assert.equal(emitted.length, 1);
    assert.equal(emitted[0]!.id, saved!.id);
    assert.deepEqual(emitted[0]!.value, { int64Value: '8' });
  });
});
