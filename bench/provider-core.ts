// Figures for the provider's own machinery: work-queue throughput with many workers and duplicate
// adds, and the kubelet API's cost per request: authenticated /pods, a 64 MiB log stream, and
// exec session setup over WebSocket and over SPDY (real kubectl is not in the loop: this measures
// the server, with ws as the client).
import { request } from 'node:https';
import { Readable } from 'node:stream';
import { WebSocket } from 'ws';
import { createLogger } from '../lib/log.ts';
import { createCA, issueCertificate } from '../lib/tls.ts';
import { kubeletServingCertificate } from '../provider/certificates.ts';
import { KubeletAuth } from '../provider/kubelet-api/auth.ts';
import { startKubeletApiServer } from '../provider/kubelet-api/server.ts';
import { WorkQueue } from '../provider/workqueue.ts';
import { pct } from './percentile.ts';

async function queueThroughput(): Promise<{ keysPerSecond: number; handled: number; adds: number }> {
  const q = new WorkQueue<string>({ name: 'bench' });
  const keys = 20_000;
  let handled = 0;
  const running = q.run(16, async () => {
    handled++;
    await Promise.resolve();
  });
  const start = process.hrtime.bigint();
  // Every key added three times in a burst: dedup should keep the work near one per key.
  for (let round = 0; round < 3; round++) for (let i = 0; i < keys; i++) q.add(`ns/pod-${i}`);
  while (q.len() > 0) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  q.shutDown();
  await running;
  return { keysPerSecond: Math.round(handled / seconds), handled, adds: keys * 3 };
}

async function main(): Promise<void> {
  const log = createLogger('bench', 'silent');
  const queue = await queueThroughput();
  console.log(
    `work queue: ${queue.keysPerSecond} keys/s with 16 workers; ${queue.adds} adds became ${queue.handled} reconciles`,
  );

  const ca = await createCA('bench-ca');
  const client = await issueCertificate(ca, { commonName: 'apiserver', usage: 'client' });
  const serving = await kubeletServingCertificate(ca, 'kip', ['127.0.0.1']);
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const server = await startKubeletApiServer({
    listen: '127.0.0.1:0',
    tls: { ...serving, clientCAPem: ca.certPem },
    auth: new KubeletAuth({
      nodeName: 'kip',
      tokens: async () => null,
      access: async () => ({ allowed: true }),
    }),
    handlers: {
      pods: { listPods: () => [] },
      containerLogs: {
        containerLogs: async () =>
          Readable.from(
            (function* () {
              for (let i = 0; i < 1024; i++) yield chunk;
            })(),
          ),
      },
      exec: {
        exec: async (_t, _c, _o, streams) => {
          streams.stdout?.write('ok');
          return { exitCode: 0 };
        },
      },
    },
    log,
  });
  const tls = { ca: ca.certPem, cert: client.certPem, key: client.keyPem };
  const get = (path: string) =>
    new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port: server.port, path, ...tls }, (res) => {
        let n = 0;
        res.on('data', (d: Buffer) => (n += d.length));
        res.on('end', () => resolve(n));
      })
        .on('error', reject)
        .end();
    });

  try {
    const podsMs: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      await get('/pods');
      podsMs.push(performance.now() - t);
    }
    console.log(
      `GET /pods (authenticated, kept-alive connection): p50 ${pct(podsMs, 50).toFixed(2)} ms, p99 ${pct(podsMs, 99).toFixed(2)} ms`,
    );

    const t0 = performance.now();
    const bytes = await get('/containerLogs/default/web/c');
    const logSeconds = (performance.now() - t0) / 1000;
    const logMBps = bytes / 1048576 / logSeconds;
    console.log(`log stream: ${(bytes / 1048576).toFixed(0)} MiB at ${logMBps.toFixed(0)} MiB/s`);

    const wsMs: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(
          `wss://127.0.0.1:${server.port}/exec/default/web/c?command=true&output=1`,
          ['v5.channel.k8s.io'],
          tls,
        );
        ws.on('close', () => resolve());
        ws.on('error', reject);
      });
      wsMs.push(performance.now() - t);
    }
    console.log(
      `exec over WebSocket (connect, run, status, close): p50 ${pct(wsMs, 50).toFixed(2)} ms, p99 ${pct(wsMs, 99).toFixed(2)} ms`,
    );

    console.log(
      JSON.stringify({
        workqueueKeysPerSecond: queue.keysPerSecond,
        workqueueReconcilesPerKey: queue.handled / (queue.adds / 3),
        podsP50Ms: +pct(podsMs, 50).toFixed(2),
        podsP99Ms: +pct(podsMs, 99).toFixed(2),
        logMiBPerSecond: +logMBps.toFixed(0),
        execWebSocketP50Ms: +pct(wsMs, 50).toFixed(2),
        execWebSocketP99Ms: +pct(wsMs, 99).toFixed(2),
      }),
    );
  } finally {
    await server.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
