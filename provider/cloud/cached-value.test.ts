import assert from 'node:assert/strict';
import { CachedValue } from './cached-value.ts';

describe('CachedValue', () => {
  it('shares one load between concurrent callers and keeps it for the TTL', async () => {
    let loads = 0;
    const c = new CachedValue(60_000, () => Promise.resolve(++loads));
    assert.deepEqual(await Promise.all([c.get(), c.get(), c.get()]), [1, 1, 1]);
    assert.equal(await c.get(), 1);
    assert.equal(loads, 1);
  });

  it('loads again once the TTL has passed', async () => {
    let loads = 0;
    const c = new CachedValue(20, () => Promise.resolve(++loads));
    assert.equal(await c.get(), 1);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(await c.get(), 2);
  });

  it('does not keep a failed load: the next caller tries again', async () => {
    let loads = 0;
    const c = new CachedValue(60_000, () =>
      ++loads === 1 ? Promise.reject(new Error('image family missing')) : Promise.resolve(loads),
    );
    await assert.rejects(c.get(), /image family missing/);
    assert.equal(await c.get(), 2);
    assert.equal(await c.get(), 2);
  });
});
