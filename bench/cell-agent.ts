// Figures for the cell agent: PUT-to-running for a cached small image, a cold pull and start of a
// 50 MB image from the local registry (pull MB/s), and the agent's resident memory.
import type { PodStatusReply } from '../lib/cell-agent-api.ts';
import { buildImage, pushImage } from '../test/support/images.ts';
import { makePod, waitForStatus } from '../test/cell-agent/support.ts';
import { rssMB, startAgentSite } from './agent-site.ts';
import { pct } from './percentile.ts';

const ITERATIONS = Number(process.env.ITERATIONS ?? 10);
const terminal = (s: PodStatusReply) => s.phase === 'Succeeded' || s.phase === 'Failed';
const allRunning = (s: PodStatusReply) =>
  s.containerStatuses.length > 0 && s.containerStatuses.every((c) => !!c.state.running);

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
  const site = await startAgentSite();
  const { agent, pid } = site;
  try {
    const small = await buildImage({ name: 'bench/small', tag: '1', cmd: ['sleep', '3600'] });
    await pushImage(small, '1', site.registryHost);
    const big = await buildImage({ name: 'bench/big', tag: '1', cmd: ['sleep', '3600'], paddingMB: 50 });
    await pushImage(big, '1', site.registryHost);
    const rssIdle = rssMB(pid);

    const runPod = async (image: string, containers: number) => {
      const pod = makePod('bench', {
        terminationGracePeriodSeconds: 0,
        containers: Array.from({ length: containers }, (_, i) => ({ name: `c${i}`, image })),
      });
      const t0 = performance.now();
      await agent.client.putPod({ pod: pod as never });
      await waitForStatus(agent.client, allRunning, 120_000);
      const ms = performance.now() - t0;
      await agent.client.deletePod(0);
      await waitForStatus(agent.client, terminal, 30_000);
      return ms;
    };

    const smallRef = `${site.cellRegistryHost}/bench/small:1`;
    await runPod(smallRef, 2); // pulls and caches the small image
    const warm: number[] = [];
    for (let i = 0; i < ITERATIONS; i++) warm.push(await runPod(smallRef, 2));
    const rssAfter = rssMB(pid);

    const before = await agent.client.metricsText();
    const coldMs = await runPod(`${site.cellRegistryHost}/bench/big:1`, 1);
    const after = await agent.client.metricsText();
    // Deltas of the agent's pull metrics isolate the 50 MB image's pull from the small one's.
    const delta = (name: string) => metric(after, name) - metric(before, name);
    const bigBytes = delta('kip_cell_agent_image_pull_bytes_total');
    const pullSec = delta('kip_cell_agent_image_pull_seconds_sum');
    const mbps = bigBytes / 1e6 / pullSec;
    const rssPeak = rssMB(pid);

    console.log(
      `PUT to all containers running (2 containers, cached image), ${ITERATIONS} runs: median ${pct(warm, 50).toFixed(0)} ms, p90 ${pct(warm, 90).toFixed(0)} ms`,
    );
    console.log(
      `cold pull and start of a ${(bigBytes / 1e6).toFixed(1)} MB image: ${coldMs.toFixed(0)} ms (pull ${pullSec.toFixed(2)} s, ${mbps.toFixed(1)} MB/s)`,
    );
    console.log(
      `agent RSS: ${rssIdle.toFixed(1)} MB idle, ${rssAfter.toFixed(1)} MB after ${ITERATIONS + 1} pods, ${rssPeak.toFixed(1)} MB after the 50 MB pull`,
    );
    console.log(
      JSON.stringify({
        bench: 'cell-agent',
        putToRunningMedianMs: Math.round(pct(warm, 50)),
        putToRunningP90Ms: Math.round(pct(warm, 90)),
        coldPullStartMs: Math.round(coldMs),
        coldImageMB: Number((bigBytes / 1e6).toFixed(1)),
        pullMBps: Number(mbps.toFixed(1)),
        rssIdleMB: Number(rssIdle.toFixed(1)),
        rssAfterPodsMB: Number(rssAfter.toFixed(1)),
        rssAfterPullMB: Number(rssPeak.toFixed(1)),
      }),
    );
  } finally {
    await site.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
