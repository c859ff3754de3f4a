import assert from 'node:assert/strict';
import { ManualClock } from './clock.ts';
import {
  ExponentialRateLimiter,
  MaxOfRateLimiter,
  TokenBucketRateLimiter,
  WorkQueue,
  defaultControllerRateLimiter,
} from './workqueue.ts';

/** Resolves `p` if it settles before pending microtasks run out; else 'pending'. */
async function settled<T>(p: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);
}

describe('work queue', () => {
  it('deduplicates a key that waits, and hands keys out in order', async () => {
    const q = new WorkQueue<string>({ name: 't' });
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.len(), 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    assert.equal(await settled(q.get()), 'pending');
    assert.deepEqual(q.stats(), { depth: 0, adds: 2, retries: 0 });
  });

  it('never hands one key to two workers; an add while processing requeues on done', async () => {
    const q = new WorkQueue<string>({ name: 't' });
    q.add('a');
    const first = await q.get();
    assert.equal(first, 'a');
    q.add('a');
    q.add('a');
    assert.equal(q.len(), 0, 'a key being processed is not handed out again');
    const second = q.get();
    assert.equal(await settled(second), 'pending');
    q.done('a');
    assert.equal(await second, 'a');
    q.done('a');
    assert.equal(q.len(), 0, 'the two adds while processing coalesced into one');
  });

  it('a waiting get receives the next add', async () => {
    const q = new WorkQueue<string>({ name: 't' });
    const g = q.get();
    q.add('x');
    assert.equal(await g, 'x');
  });

  it('addAfter waits on the clock and keeps the earliest due time', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue<string>({ name: 't', clock });
    q.addAfter('a', 1000);
    q.addAfter('a', 300);
    q.addAfter('a', 5000);
    assert.equal(q.len(), 0);
    assert.equal(q.delayed(), 1);
    clock.advance(299);
    assert.equal(q.len(), 0);
    clock.advance(1);
    assert.equal(q.len(), 1);
    assert.equal(clock.pending(), 0, 'the later timers were cancelled');
    assert.equal(await q.get(), 'a');
  });

  it('rate-limits retries per key exponentially and forget resets them', () => {
    const clock = new ManualClock();
    const limiter = new ExponentialRateLimiter<string>(5, 1_000_000);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => limiter.when('a')),
      [5, 10, 20, 40],
    );
    assert.equal(limiter.when('b'), 5, 'keys back off independently');
    assert.equal(limiter.numRequeues('a'), 4);
    for (let i = 0; i < 40; i++) limiter.when('a');
    assert.equal(limiter.when('a'), 1_000_000, 'capped at 1000 s');
    limiter.forget('a');
    assert.equal(limiter.when('a'), 5);

    const q = new WorkQueue<string>({ name: 't', clock, rateLimiter: new ExponentialRateLimiter(5, 1000) });
    q.addRateLimited('k');
    clock.advance(4);
    assert.equal(q.len(), 0);
    clock.advance(1);
    assert.equal(q.len(), 1);
    assert.equal(q.numRequeues('k'), 1);
    q.forget('k');
    assert.equal(q.numRequeues('k'), 0);
    assert.equal(q.stats().retries, 1);
  });

  it('a token bucket spreads a burst beyond its size', () => {
    const clock = new ManualClock();
    const bucket = new TokenBucketRateLimiter<string>(10, 3, clock);
    assert.deepEqual(
      [1, 2, 3].map((i) => bucket.when(`k${i}`)),
      [0, 0, 0],
    );
    assert.equal(bucket.when('k4'), 100);
    assert.equal(bucket.when('k5'), 200);
    clock.advance(1000);
    // 10 tokens refilled minus the 2 owed, capped at the burst of 3.
    assert.equal(bucket.when('k6'), 0);
  });

  it('the default limiter is the slower of the two', () => {
    const clock = new ManualClock();
    const limiter = defaultControllerRateLimiter<string>(clock);
    assert.equal(limiter.when('a'), 5);
    assert.equal(limiter.when('a'), 10);
    const both = new MaxOfRateLimiter<string>(
      new ExponentialRateLimiter(5, 1000),
      new TokenBucketRateLimiter(1, 1, clock),
    );
    assert.equal(both.when('x'), 5);
    assert.equal(both.when('y'), 1000, 'the empty bucket dominates');
  });

  it('run retries failures with backoff, forgets on success, and gives up after maxRetries', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue<string>({
      name: 't',
      clock,
      maxRetries: 3,
      rateLimiter: new ExponentialRateLimiter(10, 1000),
    });
    const calls: string[] = [];
    let flakyFailures = 2;
    const running = q.run(2, async (key) => {
      calls.push(key);
      if (key === 'flaky' && flakyFailures-- > 0) throw new Error('transient');
      if (key === 'broken') throw new Error('permanent');
    });
    q.add('flaky');
    q.add('broken');
    q.add('ok');
    const tick = async (ms: number) => {
      await new Promise((r) => setImmediate(r));
      clock.advance(ms);
      await new Promise((r) => setImmediate(r));
    };
    for (let i = 0; i < 10; i++) await tick(100);
    assert.deepEqual(
      calls.filter((c) => c === 'flaky'),
      ['flaky', 'flaky', 'flaky'],
    );
    assert.equal(q.numRequeues('flaky'), 0, 'success forgot the backoff');
    assert.equal(calls.filter((c) => c === 'broken').length, 4, 'first try plus maxRetries retries');
    assert.equal(q.numRequeues('broken'), 0, 'given-up keys are forgotten');
    assert.equal(q.len() + q.delayed(), 0);
    assert.equal(q.stats().retries, 5);

    // A given-up key comes back on its next add.
    q.add('broken');
    await tick(0);
    assert.equal(calls.filter((c) => c === 'broken').length, 5);

    q.shutDown();
    await running;
  });

  it('shutDown releases waiting workers and drops delayed keys', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue<string>({ name: 't', clock });
    const g = q.get();
    q.addAfter('later', 1000);
    q.shutDown();
    assert.equal(await g, undefined);
    assert.equal(clock.pending(), 0);
    q.add('x');
    assert.equal(await q.get(), undefined);
  });

  it('reports depth, adds and retries to its metrics sink', async () => {
    const seen: string[] = [];
    const q = new WorkQueue<string>({
      name: 'syncPodsFromKubernetes',
      clock: new ManualClock(),
      metrics: {
        depth: (n, v) => seen.push(`${n} depth ${v}`),
        added: (n) => seen.push(`${n} add`),
        retried: (n) => seen.push(`${n} retry`),
      },
    });
    q.add('a');
    q.add('b');
    await q.get();
    q.addRateLimited('a');
    assert.deepEqual(seen, [
      'syncPodsFromKubernetes add',
      'syncPodsFromKubernetes depth 1',
      'syncPodsFromKubernetes add',
      'syncPodsFromKubernetes depth 2',
      'syncPodsFromKubernetes depth 1',
      'syncPodsFromKubernetes retry',
    ]);
  });
});
