import assert from 'node:assert/strict';
import { closeInterval, machineFamily, type BillingPosition, type MeteredCell } from './interval-billing.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function cell(over: Partial<MeteredCell> & { cellName: string; startedAt: number }): MeteredCell {
  return {
    podUid: 'uid',
    namespace: 'default',
    podName: 'p',
    machineType: 'e2-standard-2',
    zone: 'us-central1-a',
    family: 'e2',
    spot: false,
    vcpus: 2,
    memoryMiB: 8192,
    gpus: 0,
    sinceSeq: 0,
    ...over,
  };
}

/** Runs closes at the given ends, feeding each result into the next; returns summed units per metric and labels. */
function run(cells: (MeteredCell | ((seq: number) => MeteredCell | undefined))[], ends: number[]) {
  let pos: BillingPosition = { seq: 0, billedTo: T0, carry: {} };
  const totals: Record<string, number> = {};
  const settled: string[] = [];
  let known: MeteredCell[] = [];
  for (const end of ends) {
    known = known.filter((c) => !settled.includes(c.cellName));
    for (const c of cells) {
      const v = typeof c === 'function' ? c(pos.seq) : c;
      if (v && !known.some((k) => k.cellName === v.cellName) && !settled.includes(v.cellName)) known.push(v);
      else if (v) known = known.map((k) => (k.cellName === v.cellName ? { ...v, sinceSeq: k.sinceSeq } : k));
    }
    const r = closeInterval(pos, known, end);
    for (const rep of r.reports) {
      const key = `${rep.name}{${rep.labels!.machine_family},${rep.labels!.spot}}`;
      totals[key] = (totals[key] ?? 0) + Number((rep.value as { int64Value: number }).int64Value);
      assert.equal(rep.startTime, new Date(pos.billedTo).toISOString());
      assert.equal(rep.endTime, new Date(end).toISOString());
    }
    settled.push(...r.settled);
    pos = r.position;
  }
  return { totals, pos, settled };
}

describe('interval billing', () => {
  it('names machine families, including N1 custom shapes', () => {
    assert.equal(machineFamily('e2-standard-4'), 'e2');
    assert.equal(machineFamily('n2-custom-4-8192'), 'n2');
    assert.equal(machineFamily('custom-2-4096'), 'n1');
    assert.equal(machineFamily('a2-highgpu-1g'), 'a2');
  });

  it('bills a cell across uneven intervals to the nearest whole unit, remainders carried', () => {
    // Runs from T0+0.4s to T0+10.1s: 9.7 s over intervals of 1.5 s.
    const c = cell({ cellName: 'a', startedAt: T0 + 400, stoppedAt: T0 + 10_100 });
    const ends = [1.5, 3, 4.5, 6, 7.5, 9, 10.5, 12].map((s) => T0 + s * 1000);
    const { totals, pos, settled } = run([c], ends);
    assert.equal(totals['cell_seconds{e2,false}'], 10);
    assert.equal(totals['vcpu_seconds{e2,false}'], 19); // 19.4 vCPU·s
    assert.equal(totals['memory_gib_seconds{e2,false}'], 78); // 8 GiB × 9.7 s = 77.6
    assert.equal(totals['gpu_seconds{e2,false}'], undefined);
    assert.deepEqual(settled, ['a']);
    // Billed 0.3 s ahead: taken off the group's next usage.
    assert.ok(Math.abs(pos.carry['e2/standard']!.cellMs + 300) < 1e-6);
  });

  it('sums cells of one group and keeps groups apart by family and spot', () => {
    const cells = [
      cell({ cellName: 'a', startedAt: T0, stoppedAt: T0 + 2500 }),
      cell({ cellName: 'b', startedAt: T0 + 100, stoppedAt: T0 + 2600 }),
      cell({
        cellName: 'g',
        family: 'a2',
        spot: true,
        vcpus: 12,
        memoryMiB: 87040,
        gpus: 1,
        startedAt: T0,
        stoppedAt: T0 + 4000,
      }),
    ];
    const { totals } = run(cells, [T0 + 1000, T0 + 3000, T0 + 5000]);
    assert.equal(totals['cell_seconds{e2,false}'], 5); // 2.5 + 2.5
    assert.equal(totals['cell_seconds{a2,true}'], 4);
    assert.equal(totals['gpu_seconds{a2,true}'], 4);
    assert.equal(totals['vcpu_seconds{a2,true}'], 48);
    assert.equal(totals['memory_gib_seconds{a2,true}'], 340); // 85 GiB × 4 s
  });

  it('bills a cell recorded late from its start, and a stop learned late as a credit', () => {
    // Recorded during interval 2 although it started before interval 1 ended.
    const late = (seq: number) =>
      seq >= 1 ? cell({ cellName: 'late', startedAt: T0 + 500, sinceSeq: 1 }) : undefined;
    // Its stop (at 2.0 s) becomes known only during interval 4, after interval 3 billed it to 3 s.
    const stopped = (seq: number) =>
      seq >= 3
        ? cell({ cellName: 'late', startedAt: T0 + 500, sinceSeq: 1, stoppedAt: T0 + 2000 })
        : undefined;
    const { totals, settled } = run(
      [(seq) => stopped(seq) ?? late(seq), cell({ cellName: 'other', startedAt: T0, stoppedAt: T0 + 5000 })],
      [T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000, T0 + 5000],
    );
    // late ran 1.5 s, other 5 s: 6.5 s, the late stop's 1 s credit absorbed by "other"'s usage
    // (billed without it: 7.5 s).
    assert.equal(totals['cell_seconds{e2,false}'], 7);
    assert.deepEqual(settled.sort(), ['late', 'other']);
  });

  it('bills nothing for a cell that starts after the interval or stopped before it started', () => {
    const r = closeInterval(
      { seq: 0, billedTo: T0, carry: {} },
      [
        cell({ cellName: 'future', startedAt: T0 + 5000 }),
        cell({ cellName: 'odd', startedAt: T0 + 500, stoppedAt: T0 + 100 }),
      ],
      T0 + 1000,
    );
    assert.deepEqual(r.reports, []);
    assert.deepEqual(r.settled, ['odd']);
  });
});
