import assert from 'node:assert/strict';
import { backoffDelay, withBackoff } from './backoff.ts';
import { RateLimiter } from './rate-limiter.ts';

describe('client-side rate limiter', () => {
  it('admits at most the limit per synchronized window, counting the guard band twice', async () => {
    const W = 200;
    const guard = 20;
    const rl = new RateLimiter({
      buckets: {
        read: { limit: 5, windowMs: W, guardMs: guard },
        write: { limit: 2, windowMs: W, guardMs: guard },
      },
    });
    const times: Array<[string, number]> = [];
    await Promise.all([
      ...Array.from({ length: 12 }, () => rl.acquire('read').then(() => times.push(['read', Date.now()]))),
      ...Array.from({ length: 5 }, () => rl.acquire('write').then(() => times.push(['write', Date.now()]))),
    ]);
    for (const [bucket, limit] of [
      ['read', 5],
      ['write', 2],
    ] as const) {
      const ts = times.filter(([b]) => b === bucket).map(([, t]) => t);
      const windows = new Set(ts.map((t) => Math.floor(t / W)));
      for (const w of windows) {
        // What a server counting [w*W, (w+1)*W) sees if calls admitted in the guard band arrive late.
        const seen = ts.filter((t) => t >= w * W - guard && t < (w + 1) * W).length;
        assert.ok(seen <= limit, `${bucket}: ${seen} calls in window ${w}`);
      }
    }
    const s = rl.stats();
    assert.equal(s.read!.admitted, 12);
    assert.equal(s.write!.admitted, 5);
    const spread = Math.max(...times.map(([, t]) => t)) - Math.min(...times.map(([, t]) => t));
    assert.ok(spread >= W && spread < 8 * W, `12 reads at 5 per window need two refills (${spread} ms)`);
  });

  it('holds a bucket the server said is spent', async () => {
    const rl = new RateLimiter({ buckets: { write: { limit: 100, windowMs: 1000 } } });
    rl.pause('write', 150);
    const t = Date.now();
    await rl.acquire('write');
    assert.ok(Date.now() - t >= 140);
    assert.throws(() => rl.pause('nope', 1), /unknown quota bucket/);
  });
});

describe('backoff', () => {
  it('grows exponentially up to the cap, with jitter inside the ceiling', () => {
    assert.equal(backoffDelay(1, { initialMs: 100, jitter: 0 }), 100);
    assert.equal(backoffDelay(4, { initialMs: 100, jitter: 0 }), 800);
    assert.equal(backoffDelay(30, { initialMs: 100, maxMs: 5000, jitter: 0 }), 5000);
    const d = backoffDelay(3, { initialMs: 100, random: () => 0.5 });
    assert.equal(d, 200);
  });

  it('retries what the decision allows, honours retry-after, and gives up', async () => {
    const slept: number[] = [];
    const sleep = async (ms: number) => void slept.push(ms);
    let n = 0;
    const v = await withBackoff(
      async () => {
        if (++n < 3) throw new Error('503');
        return 'ok';
      },
      () => ({ retry: true, afterMs: 1000 }),
      { sleep, initialMs: 10 },
    );
    assert.equal(v, 'ok');
    assert.deepEqual(slept, [1000, 1000]);
    await assert.rejects(
      withBackoff(
        async () => Promise.reject(new Error('400 bad')),
        () => ({ retry: false }),
        { sleep },
      ),
      /400 bad/,
    );
    let tries = 0;
    await assert.rejects(
      withBackoff(
        async () => {
          tries++;
          throw new Error('always');
        },
        () => ({ retry: true }),
        { sleep, maxAttempts: 4 },
      ),
    );
    assert.equal(tries, 4);
  });
});
