import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { UsageReporterError } from '../lib/usage-reporter-client.ts';
import {
  CONSUMER,
  EmulatorHandle,
  ReporterHandle,
  ReporterHome,
  SERVICE,
  baseConfig,
  report,
  waitFor,
} from './test-harness.ts';

/** End to end: the reporter and the Service Control emulator as child processes. */
describe('usage reporter → Service Control emulator', function () {
  this.timeout(60000);
  let emu: EmulatorHandle;
  let home: ReporterHome;
  let reporter: ReporterHandle | undefined;

  before(async () => {
    emu = await EmulatorHandle.start();
  });
  after(async () => {
    await emu?.stop();
  });
  beforeEach(async () => {
    home = new ReporterHome();
    await fetch(new URL('/admin/operations', emu.rootUrl), { method: 'DELETE' });
    await emu.setFaults([]);
  });
  afterEach(async () => {
    await reporter?.terminate();
    reporter = undefined;
    home.remove();
  });

  it('answers bad reports with 400 and a message naming the problem', async () => {
    home.writeConfig(baseConfig(emu.rootUrl));
    reporter = await ReporterHandle.start(home);
    const post = async (body: string) => {
      const res = await fetch(`${reporter!.url}/report`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      return { status: res.status, error: ((await res.json()) as { error?: string }).error ?? '' };
    };
    const t = '2026-01-01T00:00:00Z';
    const cases: Array<[unknown, RegExp]> = [
      [{ name: 'nope', startTime: t, endTime: t, value: { int64Value: 1 } }, /unknown metric "nope"/],
      [
        { name: 'requests', startTime: t, endTime: t, value: { doubleValue: 1.5 } },
        /int64Value.*int metric "requests"/,
      ],
      [{ name: 'memory_gib_seconds', startTime: t, endTime: t, value: { int64Value: 1 } }, /doubleValue/],
      [
        { name: 'requests', startTime: '2026-01-01T00:00:05Z', endTime: t, value: { int64Value: 1 } },
        /after endTime/,
      ],
      [
        { name: 'requests', startTime: 'yesterday', endTime: t, value: { int64Value: 1 } },
        /startTime must be an RFC 3339/,
      ],
      [{ name: 'requests', startTime: t, endTime: t, value: { int64Value: -3 } }, /must not be negative/],
      [{ name: 'requests', startTime: t, endTime: t, value: { int64Value: 1.5 } }, /must be an integer/],
      [
        { name: 'requests', startTime: t, endTime: t, value: { int64Value: 1 }, labels: { a: 1 } },
        /labels\.a/,
      ],
    ];
    for (const [body, pattern] of cases) {
      const r = await post(JSON.stringify(body));
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.error, pattern);
    }
    const badJson = await post('{"name":');
    assert.equal(badJson.status, 400);
    assert.match(badJson.error, /not valid JSON/);
    // The typed client surfaces the same message, and says a 400 is not worth retrying.
    await assert.rejects(
      reporter.client.report({ name: 'nope', startTime: t, endTime: t, value: { int64Value: 1 } }),
      (e: UsageReporterError) => e.status === 400 && !e.retryable && /unknown metric/.test(e.message),
    );
    await reporter.client.report({ name: 'requests', startTime: t, endTime: t, value: { int64Value: 2 } });
    await reporter.settled();
    assert.equal(await emu.total('requests'), 2n, 'the refused reports billed nothing');
  });

  it('bills a passthrough report sent with an id once, however often it is resent', async () => {
    home.writeConfig(baseConfig(emu.rootUrl));
    reporter = await ReporterHandle.start(home);
    const r = { ...report('cell_seconds', 60, { cell: 'a' }), id: 'cell-a-2026-01-01T00:01' };
    await reporter.client.report(r);
    await reporter.client.report(r); // while the first may still be queued
    await reporter.settled();
    await reporter.terminate();
    reporter = await ReporterHandle.start(home);
    await reporter.client.report(r); // after a restart, long after it was billed
    await reporter.client.report({ ...report('cell_seconds', 5), id: 'other' });
    await reporter.settled();
    assert.equal(await emu.total('cell_seconds'), 65n);
    const rec = await emu.recorded();
    assert.ok(rec.operations.some((o) => o.operation.operationId === r.id));
    await assert.rejects(
      reporter.client.report({ ...report('requests', 1), id: 'x' }),
      (e: UsageReporterError) => e.status === 400 && /only for passthrough metrics/.test(e.message),
    );
    await assert.rejects(
      reporter.client.report({ ...report('cell_seconds', 1), id: 'has space' }),
      (e: UsageReporterError) => e.status === 400 && /id must be/.test(e.message),
    );
  });

  it('loses and double-bills nothing when kill -9 hits during a stream of reports', async () => {
    home.writeConfig(baseConfig(emu.rootUrl, { bufferSeconds: 0.2 }));
    // Lost replies make the reporter resend operations the emulator already billed.
    await emu.setFaults([{ method: 'report', status: 503, afterRecord: true, probability: 0.1 }]);
    const clients = 8;
    const accepted = Array.from({ length: clients }, () => 0n);
    const uncertain = Array.from({ length: clients }, () => [] as bigint[]);
    const acceptedSeqs = new Set<string>();
    const uncertainSeqs = new Set<string>();
    let seq = 0;
    for (let round = 0; round < 3; round++) {
      reporter = await ReporterHandle.start(home);
      const current = reporter;
      let stop = false;
      let acceptedThisRound = 0;
      const worker = async (c: number) => {
        while (!stop) {
          const v = 1 + Math.floor(Math.random() * 1000);
          const s = String(seq++);
          const passthrough = c % 2 === 0;
          const body = passthrough
            ? report('cell_seconds', v, { seq: s })
            : report('requests', v, { client: String(c) });
          try {
            await current.client.report(body);
            acceptedThisRound++;
            if (passthrough) acceptedSeqs.add(s);
            else accepted[c]! += BigInt(v);
          } catch {
            // In flight when the process died: it may or may not be on disk.
            if (passthrough) uncertainSeqs.add(s);
            else uncertain[c]!.push(BigInt(v));
            return;
          }
        }
      };
      const running = Array.from({ length: clients }, (_, c) => worker(c));
      // Kill at a random moment once the stream is flowing, however slow the machine is.
      await waitFor(async () => (acceptedThisRound >= 20 ? true : undefined), 20000, 'reports to flow');
      await new Promise((r) => setTimeout(r, Math.random() * 300));
      await current.kill9();
      stop = true;
      await Promise.all(running);
    }
    reporter = await ReporterHandle.start(home);
    await emu.setFaults([]);
    await reporter.settled(30000);
    const rec = await emu.recorded();
    assert.ok(acceptedSeqs.size >= 30, `a real stream (${acceptedSeqs.size} passthrough reports)`);
    // Aggregated metric: each client's billed total is what it got 200 for, plus some of the
    // reports it had in flight when the process died (one per kill at most).
    const subsetSums = (xs: bigint[]) => xs.reduce((acc, x) => [...acc, ...acc.map((a) => a + x)], [0n]);
    for (let c = 1; c < clients; c += 2) {
      const billed = rec.operations
        .filter((o) => o.operation.userLabels?.client === String(c))
        .reduce((sum, o) => sum + BigInt(o.operation.metricValueSets![0]!.metricValues![0]!.int64Value!), 0n);
      assert.ok(
        subsetSums(uncertain[c]!).some((extra) => billed === accepted[c]! + extra),
        `client ${c}: billed ${billed}, accepted ${accepted[c]}, in flight ${uncertain[c]!.join(', ')}`,
      );
    }
    // Passthrough metric: every accepted report billed exactly once, nothing that was never sent.
    const billedSeqs = new Map<string, number>();
    for (const o of rec.operations) {
      const s = o.operation.userLabels?.seq;
      if (s !== undefined) billedSeqs.set(s, (billedSeqs.get(s) ?? 0) + 1);
    }
    for (const s of acceptedSeqs) assert.equal(billedSeqs.get(s), 1, `report seq ${s} billed once`);
    for (const s of billedSeqs.keys())
      assert.ok(acceptedSeqs.has(s) || uncertainSeqs.has(s), `seq ${s} was sent`);
    const ids = rec.operations.map((o) => o.operation.operationId);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(rec.operations.every((o) => o.operation.consumerId === CONSUMER));
  });

  it('retries injected 503s on check and report with backoff and bills everything once', async () => {
    home.writeConfig(baseConfig(emu.rootUrl));
    await emu.setFaults([
      // One reply slower than the client's timeout: the retry and the late original carry the same operationId.
      { method: 'report', delayMs: 1500, count: 1 },
      { method: 'check', status: 503, count: 2 },
      { method: 'report', status: 503, probability: 0.3 },
      { method: 'report', status: 503, afterRecord: true, probability: 0.3 },
    ]);
    reporter = await ReporterHandle.start(home, ['--request-timeout', '400ms']);
    let want = 0n;
    for (let i = 0; i < 25; i++) {
      await reporter.client.report(report('cell_seconds', i + 1, { cell: `c${i}` }));
      await reporter.client.report(report('requests', 2 * i + 1));
      want += BigInt(i + 1);
    }
    const status = await reporter.settled(30000);
    assert.ok(status.totalFailureCount > 0, 'failures were seen');
    assert.equal(status.currentFailureCount, 0);
    assert.ok(status.lastReportSuccess);
    assert.equal(status.endpoints.servicecontrol!.expired, 0);
    assert.equal(await emu.total('cell_seconds'), want);
    assert.equal(await emu.total('requests'), 625n);
    const rec = await emu.recorded();
    assert.ok(rec.duplicates > 0, 'replies lost after billing were resent under the same operationId');
    assert.match(reporter.proc.stderr(), /timeout|aborted/i, 'a timed-out call was retried');
    const op = rec.operations.find((o) => o.operation.userLabels?.cell === 'c0')!.operation;
    assert.equal(op.operationName, `${SERVICE}/report`);
    assert.equal(op.metricValueSets![0]!.metricName, `${SERVICE}/cell_seconds`);
    assert.equal(op.userLabels!['goog-ubb-agent-id'], status.agentId);
  });

  it('expires reports it cannot deliver within the max queue time and says so in /status', async () => {
    home.writeConfig(baseConfig(emu.rootUrl));
    await emu.setFaults([{ method: 'report', status: 503 }]);
    reporter = await ReporterHandle.start(home, ['--max-queue-time', '2s']);
    for (let i = 0; i < 3; i++) await reporter.client.report(report('cell_seconds', 10));
    const queued = await reporter.status();
    assert.equal(queued.endpoints.servicecontrol!.queued, 3);
    const s = await waitFor(
      async () => {
        const st = await reporter!.status();
        return st.endpoints.servicecontrol!.expired === 3 ? st : undefined;
      },
      15000,
      'expiry',
    );
    assert.equal(s.endpoints.servicecontrol!.queued, 0);
    assert.ok(s.endpoints.servicecontrol!.lastExpired);
    assert.match(s.endpoints.servicecontrol!.lastError ?? '', /503/);
    assert.ok(s.currentFailureCount > 0);
    assert.equal(await emu.total('cell_seconds'), 0n);
  });

  it('flushes open buckets on SIGTERM, and keeps what it could not send for the next start', async () => {
    home.writeConfig(baseConfig(emu.rootUrl, { bufferSeconds: 3600 }));
    reporter = await ReporterHandle.start(home);
    await reporter.client.report(report('requests', 5));
    await reporter.client.report(report('requests', 6));
    assert.equal((await reporter.status()).aggregating.requests?.labelSets, 1);
    assert.equal(await reporter.terminate(), 0, 'clean exit');
    assert.match(reporter.proc.stderr(), /"flushed":1/);
    assert.equal(await emu.total('requests'), 11n);

    // Service Control down during the flush: the bucket goes to the queue file, sent after restart.
    reporter = await ReporterHandle.start(home, ['--shutdown-drain', '300ms']);
    await reporter.client.report(report('requests', 7));
    await emu.setFaults([{ method: 'report', status: 503 }]);
    assert.equal(await reporter.terminate(), 0);
    assert.equal(await emu.total('requests'), 11n);
    const queue = JSON.parse(readFileSync(join(home.stateDir, 'epqueue/servicecontrol.json'), 'utf8')) as {
      items: unknown[];
    };
    assert.equal(queue.items.length, 1);
    await emu.setFaults([]);
    reporter = await ReporterHandle.start(home);
    await reporter.settled();
    assert.equal(await emu.total('requests'), 18n);
  });

  it('answers 503 and exits when it cannot persist a report, so a resend is not billed twice', async () => {
    home.writeConfig(baseConfig(emu.rootUrl, { bufferSeconds: 0.2 }));
    reporter = await ReporterHandle.start(home);
    await reporter.client.report(report('requests', 3));
    await reporter.settled();
    // A file where the bucket directory should be makes the next write fail.
    rmSync(join(home.stateDir, 'aggregator'), { recursive: true });
    writeFileSync(join(home.stateDir, 'aggregator'), 'not a directory');
    const exited = new Promise<number | null>((r) => reporter!.proc.proc.once('exit', (code) => r(code)));
    await assert.rejects(
      reporter.client.report(report('requests', 100)),
      (e: UsageReporterError) => e.status === 503 && e.retryable && /cannot persist/.test(e.message),
    );
    assert.equal(await exited, 1);
    rmSync(join(home.stateDir, 'aggregator'));
    reporter = await ReporterHandle.start(home);
    await reporter.client.report(report('requests', 100)); // the client's resend
    await reporter.settled();
    assert.equal(await emu.total('requests'), 103n);
  });

  it('refuses to start over a damaged state file, naming it, instead of dropping its usage', () => {
    home.writeConfig(baseConfig(emu.rootUrl));
    mkdirSync(join(home.stateDir, 'epqueue'), { recursive: true });
    writeFileSync(join(home.stateDir, 'epqueue/servicecontrol.json'), '{"items": [');
    const run = spawnSync('npm', ['run', '-s', 'usage-reporter', '--', ...home.flags()], {
      env: { ...process.env, AGENT_ENCODED_KEY: 'x', AGENT_CONSUMER_ID: CONSUMER },
      encoding: 'utf8',
    });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /state file .*epqueue\/servicecontrol\.json cannot be read/);
    assert.equal(readFileSync(join(home.stateDir, 'epqueue/servicecontrol.json'), 'utf8'), '{"items": [');
  });

  it('stops sending while the consumer has BILLING_DISABLED, shows it, and resumes when it clears', async () => {
    home.writeConfig(baseConfig(emu.rootUrl));
    await emu.setConsumer(CONSUMER, 'BILLING_DISABLED');
    try {
      reporter = await ReporterHandle.start(home, ['--check-interval', '300ms']);
      await reporter.client.report(report('cell_seconds', 42));
      const blocked = await waitFor(
        async () => {
          const s = await reporter!.status();
          return s.endpoints.servicecontrol!.blocked ? s : undefined;
        },
        5000,
        'blocked status',
      );
      assert.equal(blocked.endpoints.servicecontrol!.blocked, 'BILLING_DISABLED');
      assert.equal(blocked.endpoints.servicecontrol!.queued, 1);
      assert.equal((await emu.recorded()).reports, 0, 'no report sent while billing is disabled');
      await emu.setConsumer(CONSUMER, null);
      const s = await reporter.settled();
      assert.equal(s.endpoints.servicecontrol!.blocked, null);
      assert.equal(await emu.total('cell_seconds'), 42n);
    } finally {
      await emu.setConsumer(CONSUMER, null);
    }
  });

  it('runs heartbeat sources with contiguous windows and checks at most once per interval', async () => {
    home.writeConfig(
      baseConfig(emu.rootUrl, {
        extra: {
          sources: [
            {
              name: 'instance_time_heartbeat',
              heartbeat: {
                metric: 'cell_seconds',
                intervalSeconds: 0.2,
                value: { int64Value: 1 },
                labels: { auto: 'true' },
              },
            },
          ],
          filters: [{ addLabels: { labels: { cluster: 'lab', empty: '' }, omitEmpty: true } }],
        },
      }),
    );
    reporter = await ReporterHandle.start(home);
    const rec = await waitFor(
      async () => {
        const r = await emu.recorded();
        return r.operations.length >= 6 ? r : undefined;
      },
      10000,
      'heartbeats',
    );
    const ops = rec.operations
      .map((o) => o.operation)
      .sort((a, b) => a.startTime!.localeCompare(b.startTime!));
    for (let i = 1; i < ops.length; i++)
      assert.equal(ops[i]!.startTime, ops[i - 1]!.endTime, 'windows are contiguous');
    for (const op of ops) {
      assert.equal(op.metricValueSets![0]!.metricValues![0]!.int64Value, '1');
      assert.equal(op.userLabels!.auto, 'true');
      assert.equal(op.userLabels!.cluster, 'lab');
      assert.ok(!('empty' in op.userLabels!), 'omitEmpty drops empty labels');
    }
    assert.equal(rec.checks, 1, 'one services.check per minute');
  });

  it('writes each report to the disk endpoint and deletes it after expireSeconds', async () => {
    const cfg = baseConfig(emu.rootUrl) as { metrics: Array<{ endpoints: object[] }>; endpoints: object[] };
    cfg.endpoints.push({ name: 'on_disk', disk: { reportDir: home.reportDir, expireSeconds: 3 } });
    cfg.metrics[0]!.endpoints.push({ name: 'on_disk' });
    cfg.metrics[1]!.endpoints.push({ name: 'on_disk' });
    home.writeConfig(cfg);
    reporter = await ReporterHandle.start(home, ['--disk-cleanup-interval', '200ms']);
    await reporter.client.report(report('cell_seconds', 30, { cell: 'x' }));
    await reporter.client.report(report('requests', 4));
    await reporter.client.report(report('requests', 5));
    await reporter.settled();
    const files = readdirSync(home.reportDir);
    assert.equal(files.length, 2);
    const bodies = files.map(
      (f) =>
        JSON.parse(readFileSync(join(home.reportDir, f), 'utf8')) as {
          id: string;
          name: string;
          value: unknown;
        },
    );
    assert.deepEqual(bodies.find((b) => b.name === 'requests')!.value, { int64Value: '9' });
    assert.deepEqual(bodies.find((b) => b.name === 'cell_seconds')!.value, { int64Value: '30' });
    // The same report on both endpoints carries the same id.
    const rec = await emu.recorded();
    for (const b of bodies) assert.ok(rec.operations.some((o) => o.operation.operationId === b.id));
    await waitFor(
      async () => (readdirSync(home.reportDir).length === 0 ? true : undefined),
      10000,
      'disk expiry',
    );
    assert.ok(existsSync(home.reportDir));
  });
});
