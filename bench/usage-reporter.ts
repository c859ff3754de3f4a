/**
 * Accepted reports per second on the usage reporter's POST /report (concurrent clients on
 * loopback, a bounded number of reports) and the reporter's memory, with the Service Control
 * emulator as the endpoint. Every accepted report is fsynced before its 200, so this measures the
 * grouped commit path, not an in-memory buffer.
 *
 *   npx tsx bench/usage-reporter.ts [--reports 6000] [--clients 32]
 */
import { readFileSync } from 'node:fs';
import {
  EmulatorHandle,
  ReporterHandle,
  ReporterHome,
  baseConfig,
  report,
} from '../usage-reporter/test-harness.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

/** VmRSS and VmHWM (peak) of a process, in MiB. */
function memory(pid: number): { rssMiB: number; peakRssMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rssMiB: Math.round(kb('VmRSS') / 102.4) / 10, peakRssMiB: Math.round(kb('VmHWM') / 102.4) / 10 };
}

async function run(
  reporter: ReporterHandle,
  metric: string,
  total: number,
  clients: number,
): Promise<{ perSecond: number; p50Ms: number; p99Ms: number }> {
  let next = 0;
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      while (next < total) {
        next++;
        const t0 = performance.now();
        await reporter.client.report(report(metric, 1, { client: String(c % 8) }));
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.floor((latencies.length - 1) * p)]! * 100) / 100;
  return { perSecond: Math.round(total / seconds), p50Ms: pct(0.5), p99Ms: pct(0.99) };
}

const total = arg('reports', 6000);
const clients = arg('clients', 32);
const emu = await EmulatorHandle.start();
const home = new ReporterHome();
let reporter: ReporterHandle | undefined;
try {
  home.writeConfig(baseConfig(emu.rootUrl, { bufferSeconds: 60 }));
  reporter = await ReporterHandle.start(home, [], { LOG_LEVEL: 'warn' });
  const idle = memory(reporter.pid);
  await run(reporter, 'requests', 500, clients); // warm-up
  const aggregated = await run(reporter, 'requests', total, clients);
  console.log(
    `aggregated metric: ${aggregated.perSecond} accepted reports/s (${total} reports, ${clients} clients; ` +
      `latency p50 ${aggregated.p50Ms} ms, p99 ${aggregated.p99Ms} ms)`,
  );
  const passthrough = await run(reporter, 'cell_seconds', Math.min(total, 3000), clients);
  console.log(
    `passthrough metric: ${passthrough.perSecond} accepted reports/s (${Math.min(total, 3000)} reports, each one ` +
      `Service Control operation; latency p50 ${passthrough.p50Ms} ms, p99 ${passthrough.p99Ms} ms)`,
  );
  await reporter.settled(120000);
  const metrics = await (await fetch(`${reporter.url}/metrics`)).text();
  const sample = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  const rounds = sample('usage_reporter_state_write_seconds_count');
  const writeMs = Math.round((sample('usage_reporter_state_write_seconds_sum') / rounds) * 10000) / 10;
  console.log(
    `state writes: ${rounds} grouped rounds, mean ${writeMs} ms each (fsync, rename, directory fsync)`,
  );
  const mem = memory(reporter.pid);
  console.log(
    `reporter RSS: ${idle.rssMiB} MiB idle, ${mem.rssMiB} MiB after the run, peak ${mem.peakRssMiB} MiB`,
  );
  const billed = await emu.total('cell_seconds');
  console.log(`billed at the emulator: ${billed} of ${Math.min(total, 3000)} passthrough reports`);
  console.log(
    JSON.stringify({
      bench: 'usage-reporter',
      clients,
      aggregatedReportsPerSecond: aggregated.perSecond,
      aggregatedP50Ms: aggregated.p50Ms,
      aggregatedP99Ms: aggregated.p99Ms,
      passthroughReportsPerSecond: passthrough.perSecond,
      passthroughP99Ms: passthrough.p99Ms,
      rssIdleMiB: idle.rssMiB,
      rssMiB: mem.rssMiB,
      peakRssMiB: mem.peakRssMiB,
      stateWriteRounds: rounds,
      stateWriteMeanMs: writeMs,
    }),
  );
} finally {
  await reporter?.terminate();
  await emu.stop();
  home.remove();
}
