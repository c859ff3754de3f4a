import assert from 'node:assert/strict';
import { PriceTable } from './pricing.ts';
import { applySkus, type BillingSku } from './sku-prices.ts';

const sku = (
  description: string,
  usd: number,
  unit = 'h',
  regions = ['us-central1', 'us-east1'],
): BillingSku => ({
  description,
  serviceRegions: regions,
  category: { usageType: 'OnDemand' },
  pricingInfo: [
    {
      pricingExpression: {
        usageUnit: unit,
        tieredRates: [
          {
            startUsageAmount: 0,
            unitPrice: { units: String(Math.floor(usd)), nanos: Math.round((usd % 1) * 1e9) },
          },
        ],
      },
    },
  ],
});

describe('price refresh from a Cloud Billing SKU export', () => {
  const old = PriceTable.load().data;

  it('replaces the rates the export prices and reports the rest', () => {
    const skus = [
      sku('E2 Instance Core running in Americas', 0.0222),
      sku('E2 Instance Ram running in Americas', 0.003, 'GiBy.h'),
      sku('Spot Preemptible N2 Instance Core running in Americas', 0.0071),
      sku('N2D AMD Custom Extended Instance Ram running in Americas', 0.0082, 'GiBy.h'),
      sku('Custom Instance Core running in Americas', 0.034),
      sku('Nvidia Tesla T4 GPU running in Americas', 0.36),
      sku('Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas', 0.12),
      sku('E2 Instance Core running in Belgium', 0.9, 'h', ['europe-west1']),
      sku('Storage PD Capacity', 0.04, 'GiBy.mo'),
    ];
    const { data, changes, unmatched } = applySkus(old, skus, 'us-central1', '2026-11-21');
    assert.equal(data.asOf, '2026-11-21');
    assert.equal(data.families.e2!.vcpu, 0.0222);
    assert.equal(data.families.e2!.memoryGiB, 0.003);
    assert.equal(data.families.n2!.spotVcpu, 0.0071);
    assert.equal(data.families.n2d!.extendedMemoryGiB, 0.0082);
    assert.equal(data.families.n1!.customVcpu, 0.034);
    assert.deepEqual(data.gpus['nvidia-tesla-t4'], { onDemand: 0.36, spot: 0.12 });
    assert.equal(changes.length, 7);
    assert.ok(unmatched.includes('families.t2d.vcpu'));
    assert.ok(!unmatched.includes('families.e2.vcpu'));
    assert.equal(old.families.e2!.vcpu, 0.02181159, 'the old table is not modified');
    const table = new PriceTable(data);
    assert.ok(
      table.price(
        { name: 'e2-standard-2', family: 'e2', vcpus: 2, memoryMiB: 8192, custom: false },
        'on-demand',
      )! > 0.068,
    );
  });

  it('refuses an export that prices nothing here', () => {
    assert.throws(
      () =>
        applySkus(
          old,
          [sku('E2 Instance Core running in Belgium', 1, 'h', ['europe-west1'])],
          'us-central1',
          '2026-11-21',
        ),
      /no SKU/,
    );
  });
});
