import assert from 'node:assert/strict';
import type { ShapeRequest } from './cloud-provider.ts';
import { parseCustomName } from './custom-shapes.ts';
import { InsufficientCapacityError, InvalidRequestError } from './errors.ts';
import { MachineCatalog } from './machine-catalog.ts';
import { PriceTable } from './pricing.ts';
import { InstanceSelector } from './instance-selector.ts';
import { UnavailableOfferings } from './unavailable-offerings.ts';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const zones = ['us-central1-a', 'us-central1-b'];
const prices = PriceTable.load();
const catalog = MachineCatalog.builtin(prices, zones);
const req = (cpuMillis: number, memoryBytes: number, extra: Partial<ShapeRequest> = {}): ShapeRequest => ({
  cpuMillis,
  memoryBytes,
  gpus: 0,
  spot: false,
  ...extra,
});

describe('instance types and offerings', () => {
  it('price every zone and capacity type, with the Karpenter-style helpers', () => {
    let down = false;
    const types = catalog.instanceTypes(
      (zone, family, cap) => down && zone === zones[0] && family === 'e2' && cap === 'spot',
    );
    const micro = types.find((t) => t.name === 'e2-micro')!;
    assert.equal(micro.offerings.length, 4);
    assert.equal(micro.offerings.cheapest()!.capacityType, 'spot');
    assert.equal(micro.offerings.compatible({ capacityTypes: ['on-demand'] }).cheapest()!.price, 0.008376);
    assert.deepEqual(
      micro.offerings.compatible({ zones: [zones[1]!] }).items.map((o) => o.zone),
      [zones[1], zones[1]],
    );
    down = true;
    const marked = catalog.instanceTypes(
      (zone, family, cap) => down && zone === zones[0] && family === 'e2' && cap === 'spot',
    );
    const m2 = marked.find((t) => t.name === 'e2-micro')!;
    assert.equal(m2.offerings.available().length, 3);
    assert.equal(m2.offerings.available().cheapest()!.zone, zones[1]);
    assert.ok(types.every((t) => t.offerings.length > 0 && t.offerings.items.every((o) => o.price > 0)));
  });
});

describe('right-sizing', () => {
  const sel = new InstanceSelector({ catalog });

  it('prices predefined types from the table, shared-core E2 at its billed share', () => {
    assert.match(prices.asOf, /^\d{4}-\d{2}-\d{2}$/);
    const price = (n: string) => prices.price(catalog.find(n)!, 'on-demand');
    assert.equal(price('e2-micro'), 0.008376);
    assert.equal(price('e2-standard-2'), 0.067011);
    assert.equal(price('n2-standard-2'), 0.097118);
    assert.ok(prices.price(catalog.find('n2-standard-2')!, 'spot')! < price('n2-standard-2')! * 0.4);
    // Custom costs more per unit than predefined in the same series.
    assert.ok(prices.price(parseCustomName('e2-custom-2-8192')!, 'on-demand')! > price('e2-standard-2')!);
  });

  const table: Array<[string, ShapeRequest, string]> = [
    ['tiny pod on e2-micro (baseline 0.25 covers 0.2)', req(100, 256 * MiB), 'e2-micro'],
    ['0.35 vCPU is beyond e2-micro: e2-small', req(250, 512 * MiB), 'e2-small'],
    ['e2-medium when its 1 vCPU baseline covers the request', req(800, 3 * GiB), 'e2-medium'],
    ['1.1 vCPU: a 2 vCPU custom E2 with just the memory needed', req(1000, 2 * GiB), 'e2-custom-2-2304'],
    ['memory-heavy: custom E2 at up to 8 GiB/vCPU', req(500, 20 * GiB), 'e2-custom-4-20736'],
    [
      'predefined e2-highmem-4 when the custom premium outweighs the spare memory',
      req(500, 31 * GiB),
      'e2-highmem-4',
    ],
    ['beyond E2: N2D custom', req(40_000, 100 * GiB), 'n2d-custom-48-102656'],
    ['nothing asked: the default type', req(0, 0), 'e2-small'],
  ];
  for (const [title, r, expected] of table) {
    it(title, () => {
      const ch = sel.choose(r);
      assert.equal(ch.machineType, expected);
      assert.equal(ch.hourlyPriceUSD, prices.price(ch.shape, 'on-demand'));
      assert.equal(ch.zone, 'us-central1-a');
    });
  }

  it('chooses the cheapest shape that holds request + overhead, never a smaller one', () => {
    for (let cpu = 50; cpu <= 16_000; cpu = Math.ceil(cpu * 1.7)) {
      for (let mem = 64 * MiB; mem <= 64 * GiB; mem *= 3) {
        const plan = sel.plan(req(cpu, mem));
        const c = plan[0]!;
        assert.ok(
          (c.shape.baselineVcpus ?? c.shape.vcpus) * 1000 >= cpu + 100,
          `${c.machineType} cpu for ${cpu}`,
        );
        assert.ok(c.shape.memoryMiB * MiB >= mem + 256 * MiB, `${c.machineType} memory for ${mem}`);
        assert.ok(
          plan.every((p) => p.hourlyPriceUSD >= c.hourlyPriceUSD || p.capacityType !== c.capacityType),
        );
        const predefinedOnly = new InstanceSelector({ catalog, allowCustom: false }).choose(req(cpu, mem));
        assert.ok(c.hourlyPriceUSD <= predefinedOnly.hourlyPriceUSD);
      }
    }
  });

  it('GPUs: T4 attached to N1 by default, L4 on G2 when the nodeSelector asks', () => {
    const t4 = sel.choose(req(1000, 4 * GiB, { gpus: 1 }));
    assert.equal(t4.shape.family, 'n1');
    assert.deepEqual(t4.shape.gpus, { type: 'nvidia-tesla-t4', count: 1, attached: true });
    const l4 = sel.choose(req(4000, 16 * GiB, { gpus: 1, accelerator: 'nvidia-l4' }));
    assert.equal(l4.machineType, 'g2-standard-8');
    const v100 = sel.choose(req(20_000, 100 * GiB, { gpus: 1, accelerator: 'nvidia-tesla-v100' }));
    assert.equal(v100.shape.gpus?.count, 2, 'one V100 allows at most 12 vCPUs, so two are attached');
    assert.ok(
      sel.plan(req(100, 100 * MiB)).every((c) => !c.shape.gpus),
      'no GPU machine for a pod without GPUs',
    );
  });

  it('annotations: exact type, glob, spot', () => {
    assert.equal(
      sel.choose(req(100, 100 * MiB, { instanceType: 'n2-standard-4' })).machineType,
      'n2-standard-4',
    );
    assert.equal(sel.choose(req(1000, 2 * GiB, { instanceType: 'n2-*' })).machineType, 'n2-custom-2-2304');
    assert.equal(
      sel.choose(req(1000, 2 * GiB, { instanceType: 'n2-standard-*' })).machineType,
      'n2-standard-2',
    );
    assert.equal(
      sel.choose(req(1000, 2 * GiB, { instanceType: 'e2-custom-4-8192' })).machineType,
      'e2-custom-4-8192',
    );
    const spot = sel.plan(req(1000, 2 * GiB, { spot: true }));
    assert.equal(spot[0]!.capacityType, 'spot');
    assert.ok(
      spot.some((c) => c.capacityType === 'on-demand'),
      'spot falls back to on-demand',
    );
    assert.ok(spot[0]!.hourlyPriceUSD < sel.choose(req(1000, 2 * GiB)).hourlyPriceUSD);
  });

  it('refuses impossible requests, saying why', () => {
    const cases: Array<[ShapeRequest, RegExp]> = [
      [req(300_000, GiB), /no machine type holds 300.1 vCPU.*the most vCPUs offered is 224/],
      [req(1000, 5000 * GiB), /no machine type holds .*the most memory/],
      [req(100, GiB, { instanceType: 'n9-standard-4' }), /machine type n9-standard-4 is not offered/],
      [req(100, GiB, { instanceType: 'e2-custom-3-3072' }), /not valid: e2 custom vCPUs must be one of/],
      [req(4000, GiB, { instanceType: 'e2-micro' }), /e2-micro \(0.25 vCPU, 1 GiB\) cannot hold 4.1 vCPU/],
      [req(100, GiB, { instanceType: 'zz-*' }), /no machine type matches zz-\*/],
      [
        req(1000, GiB, { gpus: 1, accelerator: 'nvidia-h100-80gb' }),
        /accelerator nvidia-h100-80gb is not offered.*nvidia-tesla-t4/,
      ],
      [
        req(1000, GiB, { gpus: 16, accelerator: 'nvidia-tesla-t4' }),
        /16 × nvidia-tesla-t4 is more than one VM takes \(at most 4\)/,
      ],
    ];
    for (const [r, re] of cases) {
      assert.throws(
        () => sel.plan(r),
        (e: unknown) => e instanceof InvalidRequestError && re.test(e.message),
        String(re),
      );
    }
  });

  it('falls back zone, then series, then spot to on-demand, skipping what failed recently', () => {
    let now = 0;
    const un = new UnavailableOfferings({ ttlMs: 180_000, now: () => now });
    const r = req(1000, 2 * GiB, { spot: true });
    const first = sel.plan(r, un.isUnavailable);
    assert.deepEqual(
      first.slice(0, 2).map((c) => c.zone),
      zones,
    );
    assert.equal(first[0]!.shape.family, first[1]!.shape.family);
    for (const z of zones) un.mark(z, first[0]!.shape.family, 'spot', 'ZONE_RESOURCE_POOL_EXHAUSTED');
    const next = sel.plan(r, un.isUnavailable);
    assert.notEqual(next[0]!.shape.family, first[0]!.shape.family);
    assert.equal(next[0]!.capacityType, 'spot');
    for (const c of next) if (c.capacityType === 'spot') un.mark(c.zone, c.shape.family, 'spot', 'stockout');
    const onDemand = sel.choose(r, un.isUnavailable);
    assert.equal(onDemand.capacityType, 'on-demand');
    assert.match(onDemand.reason, /no spot capacity left/);
    for (const c of sel.plan(r, un.isUnavailable))
      un.mark(c.zone, c.shape.family, c.capacityType, 'stockout');
    assert.throws(() => sel.plan(r, un.isUnavailable), InsufficientCapacityError);
    now += 180_001;
    assert.deepEqual(sel.choose(r, un.isUnavailable), first[0], 'failures are forgotten after the TTL');
  });
});
