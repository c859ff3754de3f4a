// Figures for the logs kept of finished pods (provider/pods/finished-logs.ts): how long keeping a
// pod's logs adds to its removal (read through the real CellAgentClient over mutual TLS from a
// loopback agent at the wire), the memory held per byte kept, the cost of keeping and evicting
// at a full budget, and what kubectl logs costs on a kept 1 MiB log (all, --tail, --since-time).
//   node --expose-gc --import tsx bench/finished-logs.ts   (npx tsx works too; the memory figure
//   is then noisier without forced collections). PODS=600 AGENT_LOG_MB=4 by default.
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { CellAgentClient } from '../lib/cell-agent-client.ts';
import { createLogger } from '../lib/log.ts';
import { createCA, issueCertificate } from '../lib/tls.ts';
import type { LogOptions } from '../provider/kubelet-api/types.ts';
import { FinishedLogs } from '../provider/pods/finished-logs.ts';

const PODS = Number(process.env.PODS ?? 600);
const AGENT_LOG_MB = Number(process.env.AGENT_LOG_MB ?? 4);
const log = createLogger('bench', 'silent');
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

/** `n` bytes of timestamped log lines, one per millisecond from 2026-01-01. */
function logText(n: number): string {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const t = new Date(Date.UTC(2026, 0, 1) + i).toISOString().replace('Z', '000001Z');
    const l = `${t} processed item ${i} of the batch: ok, checksum ${(i * 2654435761) % 4294967296}\n`;
    lines.push(l);
    size += l.length;
  }
  return lines.join('');
}

const pod = (name: string, containers: string[]): V1Pod => ({
  metadata: { namespace: 'default', name, uid: `uid-${name}` },
  spec: { containers: containers.map((c) => ({ name: c })) },
});

async function collectThroughAgent() {
  const ca = await createCA('bench-ca');
  const cell = await issueCertificate(ca, { commonName: 'cell-1', hosts: ['cell-1'], usage: 'server' });
  const provider = await issueCertificate(ca, { commonName: 'provider', usage: 'client' });
  const body = Buffer.from(logText(AGENT_LOG_MB * 1024 * 1024));
  const server = createServer(
    { cert: cell.certPem, key: cell.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(body);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new CellAgentClient({
    baseUrl: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ca: ca.certPem,
    cert: provider.certPem,
    key: provider.keyPem,
    servername: 'cell-1',
  });
  const store = new FinishedLogs({ log });
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = process.hrtime.bigint();
    await store.collect(pod(`p${i}`, ['main', 'sidecar']), client);
    times.push(ms(t));
  }
  await client.close();
  server.close();
  return { p50: pct(times, 50), p99: pct(times, 99), kept: store.get('default', 'p0')!.bytes };
}

async function main() {
  const collected = await collectThroughAgent();
  console.log(
    `collect, 2 containers with ${AGENT_LOG_MB} MiB logs each through CellAgentClient (mTLS, loopback): p50 ${collected.p50.toFixed(1)} ms, p99 ${collected.p99.toFixed(1)} ms; ${(collected.kept / 1048576).toFixed(2)} MiB kept per pod`,
  );

  // A full budget: every keep past it evicts.
  const budget = 256 * 1024 * 1024;
  const oneMiB = Buffer.from(logText(1024 * 1024).slice(0, 1024 * 1024));
  global.gc?.();
  const heapBefore = process.memoryUsage();
  const store = new FinishedLogs({ log, budgetBytes: budget });
  const keepTimes: number[] = [];
  for (let i = 0; i < PODS; i++) {
    // Copies, as collect makes its own buffer per container.
    const containers = new Map([['main', { log: Buffer.from(oneMiB), truncated: true }]]);
    const t = process.hrtime.bigint();
    store.keep({ namespace: 'default', name: `job-${i}`, uid: `uid-${i}` }, containers);
    keepTimes.push(ms(t));
  }
  // Twice: evicted buffers are external memory, released a cycle later.
  global.gc?.();
  global.gc?.();
  const heapAfter = process.memoryUsage();
  const held = heapAfter.heapUsed + heapAfter.arrayBuffers - (heapBefore.heapUsed + heapBefore.arrayBuffers);
  console.log(
    `keep ${PODS} pods x 1 MiB into a 256 MiB budget: ${store.size} pods kept (${(store.bytes / 1048576).toFixed(0)} MiB), keep p50 ${pct(keepTimes, 50).toFixed(3)} ms, p99 ${pct(keepTimes, 99).toFixed(3)} ms; memory held ${(held / 1048576).toFixed(0)} MiB = ${(held / store.bytes).toFixed(3)} x the bytes kept`,
  );

  const base: LogOptions = { follow: false, previous: false, timestamps: false, stream: 'All' };
  const name = `job-${PODS - 1}`;
  const readMs = async (o: Partial<LogOptions>) => {
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 30; i++) {
      const t = process.hrtime.bigint();
      bytes = 0;
      for await (const c of store.read('default', name, 'main', { ...base, ...o }))
        bytes += (c as Buffer).length;
      times.push(ms(t));
    }
    return { p50: pct(times, 50), p99: pct(times, 99), bytes };
  };
  const all = await readMs({});
  const tail = await readMs({ tailLines: 10 });
  const since = await readMs({ sinceTime: new Date(Date.UTC(2026, 0, 1) + 8000), timestamps: true });
  console.log(
    `read a kept 1 MiB log: all ${all.p50.toFixed(2)} ms (p99 ${all.p99.toFixed(2)}), --tail=10 ${tail.p50.toFixed(2)} ms, --since-time --timestamps ${since.p50.toFixed(2)} ms`,
  );
  console.log(
    JSON.stringify({
      collectP50Ms: +collected.p50.toFixed(2),
      collectP99Ms: +collected.p99.toFixed(2),
      agentLogMiB: AGENT_LOG_MB,
      keptMiBPerPod: +(collected.kept / 1048576).toFixed(3),
      podsKeptAtBudget: store.size,
      keepP50Ms: +pct(keepTimes, 50).toFixed(4),
      keepP99Ms: +pct(keepTimes, 99).toFixed(4),
      memoryPerByteKept: +(held / store.bytes).toFixed(3),
      readAllP50Ms: +all.p50.toFixed(3),
      readTail10P50Ms: +tail.p50.toFixed(3),
      readSinceP50Ms: +since.p50.toFixed(3),
    }),
  );
}

await main();
