// Figures for PUT /v1/pod/volumes on the real agent with a running pod: the round trip of a token
// rotation (a kube-api-access-like projected volume), of a 20-file Secret volume update, and of a
// request whose content is already there; plus the agent's resident memory before and after.
import { buildImage, pushImage } from '../test/support/images.ts';
import { makePod, waitForStatus } from '../test/cell-agent/support.ts';
import { rssMB, startAgentSite } from './agent-site.ts';
import { pct } from './percentile.ts';

const ITERATIONS = Number(process.env.ITERATIONS ?? 200);
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

async function main(): Promise<void> {
  const site = await startAgentSite();
  const { agent, pid } = site;
  try {
    const image = await buildImage({ name: 'bench/vol', tag: '1', cmd: ['sleep', '3600'] });
    await pushImage(image, '1', site.registryHost);
    const pod = makePod('bench', {
      terminationGracePeriodSeconds: 0,
      containers: [
        {
          name: 'app',
          image: `${site.cellRegistryHost}/bench/vol:1`,
          volumeMounts: [
            { name: 'sa', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' },
            { name: 'creds', mountPath: '/etc/creds' },
          ],
        },
      ],
      volumes: [
        {
          name: 'sa',
          projected: {
            sources: [
              { serviceAccountToken: { path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            ],
          },
        },
        { name: 'creds', secret: { secretName: 'creds' } },
      ],
    });
    const uid = pod.metadata.uid;
    const caCrt = b64('-----BEGIN CERTIFICATE-----\n' + 'A'.repeat(1300) + '\n-----END CERTIFICATE-----\n');
    const sa = (i: number) => ({
      files: {
        token: b64(`eyJhbGciOiJFUzI1NiJ9.${'x'.repeat(900)}${i}.sig`),
        'ca.crt': caCrt,
        namespace: b64('default'),
      },
    });
    const creds = (i: number) => ({
      files: Object.fromEntries(
        Array.from({ length: 20 }, (_, k) => [`key-${k}`, b64(Buffer.alloc(4096, `${i}-${k}`))]),
      ),
    });
    await agent.client.putPod({ pod: pod as never, volumes: { sa: sa(0), creds: creds(0) } });
    await waitForStatus(agent.client, (s) => !!s.containerStatuses[0]?.state.running, 120_000);
    const rssBefore = rssMB(pid);

    const time = async (body: () => Promise<unknown>) => {
      const ms: number[] = [];
      for (let i = 0; i < ITERATIONS; i++) {
        const t0 = performance.now();
        await body();
        ms.push(performance.now() - t0);
      }
      return ms;
    };
    let n = 0;
    const token = await time(() => agent.client.putVolumes({ uid, volumes: { sa: sa(++n) } }));
    const secret = await time(() => agent.client.putVolumes({ uid, volumes: { creds: creds(++n) } }));
    const same = creds(n);
    const unchanged = await time(() => agent.client.putVolumes({ uid, volumes: { creds: same } }));
    const rssAfter = rssMB(pid);

    const fig = (xs: number[]) => ({ p50: +pct(xs, 50).toFixed(2), p99: +pct(xs, 99).toFixed(2) });
    const out = {
      iterations: ITERATIONS,
      tokenRotationMs: fig(token),
      secret20FilesMs: fig(secret),
      unchangedMs: fig(unchanged),
      agentRssMB: { before: +rssBefore.toFixed(1), after: +rssAfter.toFixed(1) },
    };
    console.log(`PUT /v1/pod/volumes over mutual TLS, ${ITERATIONS} requests each, pod running:`);
    console.log(
      `  token rotation (3-file projected volume): p50 ${out.tokenRotationMs.p50} ms, p99 ${out.tokenRotationMs.p99} ms`,
    );
    console.log(
      `  secret update (20 files x 4 KiB):        p50 ${out.secret20FilesMs.p50} ms, p99 ${out.secret20FilesMs.p99} ms`,
    );
    console.log(
      `  same content again (no swap):            p50 ${out.unchangedMs.p50} ms, p99 ${out.unchangedMs.p99} ms`,
    );
    console.log(`  agent RSS ${out.agentRssMB.before} MB before, ${out.agentRssMB.after} MB after`);
    console.log(JSON.stringify(out));
    await agent.client.deletePod(0);
  } finally {
    await site.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
