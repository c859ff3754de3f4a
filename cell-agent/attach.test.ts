import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { AttachRefused, InstanceStreams, type AttachListener, type OutputStream } from './attach.ts';

/** A listener recording what it was sent; `behind` is the backlog it reports. */
function recorder() {
  const got: { stream: OutputStream; text: string }[] = [];
  let ended = 0;
  let stalled = 0;
  const state = { behind: 0 };
  const listener: AttachListener = {
    output: (stream, data) => got.push({ stream, text: data.toString() }),
    ended: () => ended++,
    backlog: () => state.behind,
    stalled: () => stalled++,
  };
  return { listener, got, state, ended: () => ended, stalled: () => stalled };
}

/** A stdin pipe standing in for runc's: records writes and whether it was ended. */
function pipe(highWaterMark = 16 * 1024) {
  const written: string[] = [];
  let ended = false;
  let hold: (() => void) | undefined;
  const w = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk.toString());
      // While `hold` is set the reader (the container) is not reading.
      if (hold === undefined) cb();
      else hold = cb;
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return {
    w,
    written,
    ended: () => ended,
    stall: () => (hold = () => undefined),
    release: () => {
      const cb = hold;
      hold = undefined;
      cb?.();
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('InstanceStreams (attach fan-out and stdin)', () => {
  it('sends output from the moment of attaching to every client, and tells each when the instance ends', () => {
    const s = new InstanceStreams(null, false);
    s.publish('stdout', Buffer.from('before\n'));
    const a = recorder();
    const b = recorder();
    s.attach('app', a.listener, false);
    s.publish('stdout', Buffer.from('one\n'));
    const bAtt = s.attach('app', b.listener, false);
    s.publish('stderr', Buffer.from('two\n'));
    bAtt.detach();
    s.publish('stdout', Buffer.from('three\n'));
    assert.deepEqual(a.got, [
      { stream: 'stdout', text: 'one\n' },
      { stream: 'stderr', text: 'two\n' },
      { stream: 'stdout', text: 'three\n' },
    ]);
    assert.deepEqual(b.got, [{ stream: 'stderr', text: 'two\n' }]);
    assert.equal(s.attached, 1);
    s.end();
    assert.equal(a.ended(), 1);
    assert.equal(b.ended(), 0, 'a detached client is not told');
    assert.equal(s.attached, 0);
    assert.throws(() => s.attach('app', recorder().listener, false), /container "app" is not running/);
  });

  it('refuses stdin for a container without stdin: true', () => {
    const s = new InstanceStreams(null, false);
    const r = s.refusal('app', true);
    assert.ok(r instanceof AttachRefused);
    assert.equal(r.code, 400);
    assert.match(r.message, /"app" was not started with stdin: true/);
    assert.equal(s.refusal('app', false), undefined);
  });

  it('without stdinOnce, clients share the stdin and their end of input leaves it open', async () => {
    const p = pipe();
    const s = new InstanceStreams(p.w, false);
    const a = s.attach('cat', recorder().listener, true);
    const b = s.attach('cat', recorder().listener, true);
    a.write(Buffer.from('a1'));
    b.write(Buffer.from('b1'));
    a.endStdin();
    a.write(Buffer.from('after end'));
    b.detach();
    const c = s.attach('cat', recorder().listener, true);
    c.write(Buffer.from('c1'));
    assert.deepEqual(p.written, ['a1', 'b1', 'c1']);
    assert.equal(p.ended(), false);
    s.end();
    assert.equal(c.write(Buffer.from('late')), true, 'a write after the instance ended is dropped');
    assert.deepEqual(p.written, ['a1', 'b1', 'c1']);
    await tick();
    assert.equal(p.ended(), true, 'the pipe is closed with the instance');
  });

  it('stdinOnce: the first stdin client ending its input closes the container stdin; later stdin attaches are refused', async () => {
    const p = pipe();
    const s = new InstanceStreams(p.w, true);
    const watcher = s.attach('once', recorder().listener, false);
    watcher.detach();
    assert.equal(p.ended(), false, 'an output-only client does not count');
    const a = s.attach('once', recorder().listener, true);
    a.write(Buffer.from('only'));
    a.detach();
    await tick();
    assert.equal(p.ended(), true);
    assert.deepEqual(p.written, ['only']);
    const r = s.refusal('once', true);
    assert.equal(r?.code, 400);
    assert.match(
      r!.message,
      /closed when the first client attached with stdin ended its input \(stdinOnce: true\)/,
    );
    assert.doesNotThrow(() => s.attach('once', recorder().listener, false));
  });

  it('reports a full pipe so the client is paused, and wakes it on drain or when the pipe closes', async () => {
    const p = pipe(4);
    p.stall();
    const s = new InstanceStreams(p.w, false);
    const a = s.attach('cat', recorder().listener, true);
    assert.equal(a.write(Buffer.from('12345678')), false, 'over the high-water mark');
    let drained = 0;
    a.onDrain(() => drained++);
    await tick();
    assert.equal(drained, 0);
    p.release();
    await tick();
    assert.equal(drained, 1);
    // A pipe that closes instead of draining frees the writer too.
    const q = new PassThrough({ highWaterMark: 4 });
    const s2 = new InstanceStreams(q, false);
    const b = s2.attach('cat', recorder().listener, true);
    assert.equal(b.write(Buffer.from('12345678')), false);
    let woke = 0;
    b.onDrain(() => woke++);
    q.destroy();
    await tick();
    assert.equal(woke, 1);
  });

  it('pauses the container output while a client is behind, resumes when it catches up, detaches one that stays behind', async () => {
    const out = new PassThrough();
    const err = new PassThrough();
    out.on('data', () => undefined);
    err.on('data', () => undefined);
    const limits = { highWaterBytes: 100, lowWaterBytes: 10, stallMs: 150 };
    const s = new InstanceStreams(null, false, [out, err], limits);
    const fast = recorder();
    const slow = recorder();
    s.attach('app', fast.listener, false);
    const slowAtt = s.attach('app', slow.listener, false);
    s.publish('stdout', Buffer.from('x'));
    assert.equal(s.paused, false);
    slow.state.behind = 500;
    s.publish('stdout', Buffer.from('y'));
    assert.equal(s.paused, true);
    assert.ok(out.isPaused() && err.isPaused(), 'the container pipes are not read');
    slow.state.behind = 5;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(s.paused, false, 'caught up: reading resumes');
    assert.ok(!out.isPaused() && !err.isPaused());

    // Still behind after stallMs: told to go (it detaches), and the output flows again.
    slow.state.behind = 500;
    s.publish('stdout', Buffer.from('z'));
    assert.equal(s.paused, true);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(slow.stalled(), 0, 'not before stallMs');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(slow.stalled(), 1);
    assert.equal(fast.stalled(), 0);
    slowAtt.detach();
    assert.equal(s.paused, false);
    assert.deepEqual(
      fast.got.map((g) => g.text),
      ['x', 'y', 'z'],
    );

    // Once the process exited nothing holds its last output back.
    const late = recorder();
    late.state.behind = 500;
    s.attach('app', late.listener, false);
    s.release();
    s.publish('stdout', Buffer.from('tail'));
    assert.equal(s.paused, false);
    s.end();
  });
});
