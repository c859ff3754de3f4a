import assert from 'node:assert/strict';
import { waitAtMost } from './clock.ts';

describe('waitAtMost', () => {
  it('ends when the promise settles, with its value', async () => {
    const started = Date.now();
    assert.equal(await waitAtMost(Promise.resolve('done'), 5000), 'done');
    assert.ok(Date.now() - started < 1000);
  });

  it('gives up after the time without waiting for the promise', async () => {
    const started = Date.now();
    assert.equal(await waitAtMost(new Promise(() => {}), 50), undefined);
    const took = Date.now() - started;
    assert.ok(took >= 45 && took < 1000, `took ${took} ms`);
  });

  it('passes on a rejection that comes in time', async () => {
    await assert.rejects(waitAtMost(Promise.reject(new Error('stop failed')), 5000), /stop failed/);
  });
});
