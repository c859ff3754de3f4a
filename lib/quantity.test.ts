import assert from 'node:assert/strict';
import { QuantityError, cpuMillis, memoryBytes, parseQuantity } from './quantity.ts';

describe('Kubernetes quantities', () => {
  it('reads the forms users write in pod specs', () => {
    assert.equal(cpuMillis('500m'), 500);
    assert.equal(cpuMillis('1.5'), 1500);
    assert.equal(cpuMillis('2'), 2000);
    assert.equal(cpuMillis(0.25), 250);
    assert.equal(cpuMillis('1e-4'), 1);
    assert.equal(memoryBytes('2Gi'), 2 * 1024 ** 3);
    assert.equal(memoryBytes('512Mi'), 512 * 1024 ** 2);
    assert.equal(memoryBytes('1.5Gi'), 1.5 * 1024 ** 3);
    assert.equal(memoryBytes('1G'), 1e9);
    assert.equal(memoryBytes('128974848'), 128974848);
    assert.equal(memoryBytes('129e6'), 129e6);
    assert.equal(parseQuantity('.5'), 0.5);
  });

  it('refuses what is not a quantity, quoting it', () => {
    for (const bad of ['', 'abc', '1.5.2', '2GB', '1 Gi', 'Gi', '1iG']) {
      assert.throws(
        () => parseQuantity(bad),
        (e: unknown) => e instanceof QuantityError && e.message.includes(`"${bad}"`),
      );
    }
    assert.throws(() => memoryBytes('-1Gi'), QuantityError);
  });
});
