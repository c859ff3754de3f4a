// Figures for attach on the real cell agent: the stdin -> container -> attached stdout round trip
// (cat in a stdin: true container), and output throughput fanned out to 1 and to 4 attached
// clients, with the agent's CPU time per MB delivered.
import { readFileSync } from 'node:fs';
import type { AttachSession } from '../lib/cell-agent-client.ts';
import { makePod, startAgent, startImageCell, waitForStatus } from '../test/cell-agent/support.ts';
import { rssMB } from './agent-site.ts';
import { pct } from './percentile.ts';

const ROUND_TRIPS = Number(process.env.ROUND_TRIPS ?? 300);
const BURST_MB = Number(process.env.BURST_MB ?? 32);
const LINE = 'the quick brown fox jumps over the lazy dog 0123456789 abcdefghij';

/** User + system CPU seconds of a process so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resolves once `session` delivered `bytes` more bytes on stdout. */
function receive(session: AttachSession, bytes: number): Promise<void> {
  return new Promise((resolve) => {
    let got = 0;
    const onData = (d: Buffer) => {
      got += d.length;
      if (got >= bytes) {
        session.stdout.off('data', onData);
        resolve();
      }
    };
    session.stdout.on('data', onData);
  });
}

async function main(): Promise<void> {
  const site = await startImageCell();
  const agent = await startAgent(site.cell, { insecureRegistries: [site.registryHost] });
  const pid = agent.proc.ready.pid as number;
  const sessions: AttachSession[] = [];
  try {
    const bytes = BURST_MB * 1024 * 1024;
    await agent.client.putPod({
      pod: makePod('attach-bench', {
        containers: [
          { name: 'echo', image: site.image, command: ['cat'], stdin: true },
          {
            name: 'gen',
            image: site.image,
            // Each line on stdin starts one burst of output.
            command: ['sh', '-c', `while read go; do yes '${LINE}' | head -c ${bytes}; done`],
            stdin: true,
          },
        ],
      }) as never,
    });
    await waitForStatus(
      agent.client,
      (s) => s.containerStatuses.length === 2 && s.containerStatuses.every((c) => !!c.state.running),
      60_000,
    );

    // Round trip: one line at a time through cat.
    const echo = agent.client.attach('echo', { stdin: true, stdout: true });
    sessions.push(echo);
    let pending = '';
    let waiting: (() => void) | undefined;
    echo.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      if (pending.endsWith('\n')) waiting?.();
    });
    const trip = async (i: number) => {
      const t0 = performance.now();
      await new Promise<void>((r) => {
        waiting = r;
        echo.write(`ping ${i}\n`);
      });
      pending = '';
      return performance.now() - t0;
    };
    for (let i = 0; i < 20; i++) await trip(i); // warm-up
    const trips: number[] = [];
    for (let i = 0; i < ROUND_TRIPS; i++) trips.push(await trip(i));

    // Throughput: one burst per run, with 1 and then 4 clients attached to the generator.
    const burst = async (clients: number) => {
      const attached = Array.from({ length: clients }, (_, i) =>
        agent.client.attach('gen', { stdin: i === 0, stdout: true }),
      );
      sessions.push(...attached);
      // Let every client's upgrade finish before the output starts.
      await new Promise((r) => setTimeout(r, 500));
      const cpu0 = cpuSeconds(pid);
      const t0 = performance.now();
      const all = Promise.all(attached.map((s) => receive(s, bytes)));
      attached[0]!.write('go\n');
      await all;
      const sec = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(pid) - cpu0;
      for (const s of attached) s.close();
      return { sec, mbps: BURST_MB / sec, cpuPerMB: (cpu / (BURST_MB * clients)) * 1000 };
    };
    // Baseline: the same burst with no client attached to its output (the log file only); the
    // burst is over once the agent's CPU time stops growing.
    const baseline = async () => {
      const trigger = agent.client.attach('gen', { stdin: true, stdout: false, stderr: false });
      sessions.push(trigger);
      await new Promise((r) => setTimeout(r, 500));
      const cpu0 = cpuSeconds(pid);
      trigger.write('go\n');
      let last = cpu0;
      let still = 0;
      while (still < 5) {
        await new Promise((r) => setTimeout(r, 100));
        const now = cpuSeconds(pid);
        still = now - last < 0.015 ? still + 1 : 0;
        last = now;
      }
      trigger.close();
      return ((last - cpu0) / BURST_MB) * 1000;
    };
    const logOnlyCpuPerMB = await baseline();
    const one = await burst(1);
    const four = await burst(4);
    // What each attached client adds, beyond reading the output and writing the log.
    const perClient = (one.cpuPerMB * 1 - logOnlyCpuPerMB + (four.cpuPerMB * 4 - logOnlyCpuPerMB) / 4) / 2;
    const rss = rssMB(pid);

    console.log(
      `stdin -> cat -> attached stdout round trip, ${ROUND_TRIPS} lines: median ${pct(trips, 50).toFixed(2)} ms, p99 ${pct(trips, 99).toFixed(2)} ms`,
    );
    console.log(
      `${BURST_MB} MB of output to 1 attached client: ${one.sec.toFixed(2)} s (${one.mbps.toFixed(1)} MB/s), agent CPU ${one.cpuPerMB.toFixed(1)} ms per MB delivered (log file written too)`,
    );
    console.log(
      `${BURST_MB} MB of output to 4 attached clients: ${four.sec.toFixed(2)} s (${four.mbps.toFixed(1)} MB/s each), agent CPU ${four.cpuPerMB.toFixed(1)} ms per MB delivered`,
    );
    console.log(
      `agent CPU per MB of container output: ${logOnlyCpuPerMB.toFixed(1)} ms with no client (log file only); each attached client adds about ${perClient.toFixed(1)} ms`,
    );
    console.log(`agent RSS after the bursts: ${rss.toFixed(1)} MB`);
    console.log(
      JSON.stringify({
        bench: 'attach',
        roundTripMedianMs: Number(pct(trips, 50).toFixed(2)),
        roundTripP99Ms: Number(pct(trips, 99).toFixed(2)),
        burstMB: BURST_MB,
        oneClientMBps: Number(one.mbps.toFixed(1)),
        fourClientsMBpsEach: Number(four.mbps.toFixed(1)),
        cpuMsPerMBOneClient: Number(one.cpuPerMB.toFixed(1)),
        cpuMsPerMBFourClients: Number(four.cpuPerMB.toFixed(1)),
        cpuMsPerMBLogOnly: Number(logOnlyCpuPerMB.toFixed(1)),
        cpuMsPerMBPerClient: Number(perClient.toFixed(1)),
        agentRssMB: Number(rss.toFixed(1)),
      }),
    );
  } finally {
    for (const s of sessions) s.close();
    await agent.stop();
    await site.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
