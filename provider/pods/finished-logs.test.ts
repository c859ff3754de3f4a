import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { CellAgentError } from '../../lib/cell-agent-client.ts';
import { createLogger } from '../../lib/log.ts';
import { InvalidInputError, NotFoundError, type LogOptions } from '../kubelet-api/types.ts';
import { FinishedLogs, readTail, type LogSource } from './finished-logs.ts';

const log = createLogger('finished-logs-test', 'silent');

async function text(r: Readable): Promise<string> {
  let s = '';
  for await (const c of r) s += (c as Buffer).toString();
  return s;
}

const opts = (o: Partial<LogOptions> = {}): LogOptions => ({
  follow: false,
  previous: false,
  timestamps: false,
  stream: 'All',
  ...o,
});

function pod(name: string, containers: string[], init: string[] = [], uid = `uid-${name}`): V1Pod {
  return {
    metadata: { namespace: 'default', name, uid },
    spec: {
      containers: containers.map((c) => ({ name: c })),
      ...(init.length ? { initContainers: init.map((c) => ({ name: c })) } : {}),
    },
  };
}

/** Timestamped lines as the agent sends them with `timestamps=true`, one second apart. */
function lines(prefix: string, n: number, startSecond = 0): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    const t = new Date(Date.UTC(2026, 0, 1, 0, 0, startSecond + i)).toISOString().replace('.000Z', '');
    out += `${t}.000000001Z ${prefix} ${i}\n`;
  }
  return out;
}

/** A log source answering like the agent: timestamped lines per container, or a CellAgentError. */
function agent(logs: Record<string, string | Error | 'hang'>): LogSource & { asked: unknown[] } {
  const asked: unknown[] = [];
  return {
    asked,
    logs(container, o, signal) {
      asked.push({ container, ...o });
      const v = logs[container];
      if (v === undefined)
        return Promise.reject(new CellAgentError(404, `container "${container}" not found`));
      if (v instanceof Error) return Promise.reject(v);
      if (v === 'hang')
        return new Promise((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true }),
        );
      // In small chunks, as a network stream arrives.
      const buf = Buffer.from(v);
      const chunks: Buffer[] = [];
      for (let i = 0; i < buf.length; i += 7) chunks.push(buf.subarray(i, i + 7));
      return Promise.resolve(Readable.from(chunks));
    },
  };
}

describe('finished pod logs (provider/pods/finished-logs.ts)', () => {
  it('readTail keeps the last bytes of a stream, cut to whole lines', async () => {
    const src = lines('x', 100);
    const { log: kept, truncated } = await readTail(Readable.from([Buffer.from(src)]), 200);
    assert.ok(truncated);
    assert.ok(kept.length <= 200 && kept.length > 100, `${kept.length} bytes`);
    assert.ok(src.endsWith(kept.toString()));
    assert.match(kept.toString(), /^2026-\S+ x \d+\n/, 'starts at a whole line');
    const whole = await readTail(Readable.from([Buffer.from('a\nb\n')]), 200);
    assert.equal(whole.log.toString(), 'a\nb\n');
    assert.equal(whole.truncated, false);
  });

  it('collect keeps every container (init ones too) with timestamps, the tail of each within perContainerBytes', async () => {
    const store = new FinishedLogs({ log, perContainerBytes: 300 });
    const a = agent({ setup: lines('setup', 2), main: lines('main', 50), side: lines('side', 3) });
    await store.collect(pod('job', ['main', 'side'], ['setup']), a);
    assert.deepEqual(
      a.asked.map((q) => (q as { container: string; timestamps: boolean }).container),
      ['setup', 'main', 'side'],
    );
    assert.ok(a.asked.every((q) => (q as { timestamps: boolean }).timestamps === true));
    assert.equal(await text(store.read('default', 'job', 'setup', opts())), 'setup 0\nsetup 1\n');
    const main = await text(store.read('default', 'job', 'main', opts()));
    assert.match(main, /main 49\n$/);
    assert.doesNotMatch(main, /main 0\n/, 'the oldest lines beyond 300 bytes are dropped');
    assert.ok(store.bytes <= 300 + lines('setup', 2).length + lines('side', 3).length);
  });

  it('read honours tailLines, timestamps, sinceTime, sinceSeconds and limitBytes; follow ends with what is kept', async () => {
    const now = Date.UTC(2026, 0, 1, 0, 0, 10);
    const store = new FinishedLogs({ log, now: () => now });
    await store.collect(pod('job', ['main']), agent({ main: lines('line', 10) }));
    const read = (o: Partial<LogOptions>) => text(store.read('default', 'job', 'main', opts(o)));
    assert.equal(await read({ tailLines: 2 }), 'line 8\nline 9\n');
    assert.equal(await read({ tailLines: 0 }), '');
    assert.equal(await read({ tailLines: 1, timestamps: true }), '2026-01-01T00:00:09.000000001Z line 9\n');
    // Line i was written at second i; sinceTime is inclusive at nanosecond precision.
    assert.equal(
      await read({ sinceTime: new Date(Date.UTC(2026, 0, 1, 0, 0, 7)) }),
      'line 7\nline 8\nline 9\n',
    );
    assert.equal(await read({ sinceSeconds: 2 }), 'line 8\nline 9\n');
    assert.equal(await read({ sinceSeconds: 2, tailLines: 1 }), 'line 9\n');
    assert.equal(await read({ limitBytes: 10 }), 'line 0\nlin');
    assert.equal(await read({ follow: true }), lines('line', 10).replace(/^\S+ /gm, ''));
  });

  it('read refuses previous, names an unknown container, and says why a container has no log', async () => {
    const store = new FinishedLogs({ log, timeoutMs: 100 });
    await store.collect(
      pod('job', ['main', 'later'], ['init']),
      agent({
        init: lines('init', 1),
        main: new CellAgentError(400, 'container "main" in pod "job" not found (it has not started yet)'),
        later: 'hang',
      }),
    );
    assert.throws(
      () => store.read('default', 'job', 'init', opts({ previous: true })),
      (e: Error) => e instanceof InvalidInputError && /previous terminated container "init"/.test(e.message),
    );
    assert.throws(
      () => store.read('default', 'job', 'nope', opts()),
      (e: Error) => e instanceof NotFoundError && /container nope is not valid for pod job/.test(e.message),
    );
    assert.throws(
      () => store.read('default', 'job', 'main', opts()),
      (e: Error) => e instanceof InvalidInputError && /has no log: .* it never started/.test(e.message),
    );
    assert.throws(
      () => store.read('default', 'other', 'main', opts()),
      (e: Error) => e instanceof NotFoundError,
    );
  });

  it('an agent that does not answer costs at most the timeout; the other containers are still kept', async () => {
    const warnings: unknown[] = [];
    const spy = createLogger('finished-logs-test', 'silent');
    spy.warn = ((o: unknown) => warnings.push(o)) as typeof spy.warn;
    const store = new FinishedLogs({ log: spy, timeoutMs: 200 });
    const started = Date.now();
    await store.collect(pod('job', ['ok', 'stuck']), agent({ ok: lines('ok', 1), stuck: 'hang' }));
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
    assert.equal(await text(store.read('default', 'job', 'ok', opts())), 'ok 0\n');
    assert.throws(
      () => store.read('default', 'job', 'stuck', opts()),
      /reading it from the cell agent failed \(not read within 0.2s\)/,
    );
    assert.equal(warnings.length, 1);
  });

  it('stays within budgetBytes by dropping the pods that finished longest ago; a pod over the budget alone is not kept', async () => {
    const registry = new Registry();
    const store = new FinishedLogs({ log, budgetBytes: 1000, registry });
    const log300 = lines('l', 10).slice(0, 300);
    const keep = (name: string, body: string) =>
      store.keep(
        { namespace: 'default', name, uid: `uid-${name}` },
        new Map([['main', { log: Buffer.from(body), truncated: false }]]),
      );
    keep('a', log300);
    keep('b', log300);
    keep('c', log300);
    assert.equal(store.bytes, 900);
    keep('d', log300);
    assert.equal(store.get('default', 'a'), undefined, 'a finished first and went first');
    assert.ok(store.get('default', 'b') && store.get('default', 'd'));
    assert.equal(store.bytes, 900);
    keep('e', 'x'.repeat(600));
    assert.deepEqual(
      ['a', 'b', 'c', 'd', 'e'].map((n) => Boolean(store.get('default', n))),
      [false, false, false, true, true],
    );
    assert.equal(store.bytes, 900);
    keep('huge', 'x'.repeat(1001));
    assert.equal(store.get('default', 'huge'), undefined);
    assert.equal(store.size, 2, 'nothing dropped for a pod that could never fit');
    const metrics = await registry.metrics();
    assert.match(metrics, /^kip_finished_pod_log_bytes 900$/m);
    assert.match(metrics, /^kip_finished_pod_logs 2$/m);
    assert.match(metrics, /^kip_finished_pod_logs_evicted_total 3$/m);
  });

  it('forget drops a deleted pod’s logs, but not those of a newer pod of the same name', async () => {
    const store = new FinishedLogs({ log });
    await store.collect(pod('job', ['main'], [], 'uid-2'), agent({ main: lines('x', 1) }));
    store.forget('default', 'job', 'uid-1');
    assert.ok(store.get('default', 'job'));
    store.forget('default', 'job');
    assert.equal(store.get('default', 'job'), undefined);
    assert.equal(store.bytes, 0);
  });

  it('a pod deleted while its logs are being read is not kept afterwards', async () => {
    const store = new FinishedLogs({ log });
    let release: () => void = () => {};
    const slow: LogSource = {
      logs: () =>
        new Promise((resolve) => {
          release = () => resolve(Readable.from([Buffer.from(lines('x', 1))]));
        }),
    };
    const collecting = store.collect(pod('job', ['main']), slow);
    await new Promise((r) => setImmediate(r));
    store.forget('default', 'job');
    release();
    await collecting;
    assert.equal(store.get('default', 'job'), undefined);
    assert.equal(store.size, 0);
  });

  it('a pod already gone from Kubernetes when its logs are read is not kept', async () => {
    const live = new Set(['default/job']);
    const store = new FinishedLogs({
      log,
      podExists: (ns, name, uid) => live.has(`${ns}/${name}`) && uid === 'uid-job',
    });
    await store.collect(pod('job', ['main']), agent({ main: lines('x', 1) }));
    assert.ok(store.get('default', 'job'));
    live.clear();
    await store.collect(pod('job', ['main']), agent({ main: lines('x', 1) }));
    assert.equal(store.get('default', 'job'), undefined, 'the kept copy replaced by nothing');
  });

  it('perContainerBytes 0 keeps nothing and asks the agent nothing', async () => {
    const store = new FinishedLogs({ log, perContainerBytes: 0 });
    const a = agent({ main: lines('x', 1) });
    await store.collect(pod('job', ['main']), a);
    assert.equal(a.asked.length, 0);
    assert.equal(store.get('default', 'job'), undefined);
  });
});
