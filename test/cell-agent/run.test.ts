import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import WebSocket from 'ws';
import type { PodStatusReply } from '../../lib/cell-agent-api.ts';
import { CellAgentError } from '../../lib/cell-agent-client.ts';
import { createCA, issueCertificate } from '../../lib/tls.ts';
import {
  makePod,
  waitForStatus,
  type TestAgent,
  type TestCellNetwork,
  isTerminal,
  useImageAgent,
} from './support.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('cell agent: running pods with runc', function () {
  this.timeout(60_000);
  let cell: TestCellNetwork;
  let agent: TestAgent;
  let image: string;
  // Each test leaves the cell free for the next pod.
  useImageAgent(
    (s) => {
      ({ agent, image } = s);
      cell = s.site.cell;
    },
    { env: ['FROM_IMAGE=yes'] },
  );

  it('runs init containers in order, then app containers that talk over localhost, with env and volume files', async () => {
    const work = [{ name: 'work', mountPath: '/work' }];
    const pod = makePod('web', {
      hostname: 'webhost',
      initContainers: [
        {
          name: 'init-a',
          image,
          command: ['sh', '-c', 'sleep 0.3; echo init-a >> /work/order'],
          volumeMounts: work,
        },
        { name: 'init-b', image, command: ['sh', '-c', 'echo init-b >> /work/order'], volumeMounts: work },
      ],
      containers: [
        {
          name: 'web',
          image,
          command: [
            'sh',
            '-c',
            'mkdir -p /www && cp /work/order /www/order && echo "$GREETING" > /www/env && exec httpd -f -p 8080 -h /www',
          ],
          env: [
            { name: 'NAME', value: 'kip' },
            { name: 'GREETING', value: 'hello $(NAME) $$(NAME) $(MISSING) image=$(FROM_IMAGE)' },
          ],
          volumeMounts: work,
          ports: [{ containerPort: 8080, name: 'http' }],
          readinessProbe: { httpGet: { path: '/order', port: 'http' }, periodSeconds: 1 },
        },
        {
          name: 'client',
          image,
          command: [
            'sh',
            '-c',
            'until wget -q -O- http://127.0.0.1:8080/order 2>/dev/null; do sleep 0.2; done; wget -q -O- http://localhost:8080/env; ' +
              'cat /config/app.conf /secret/token; echo; echo "host=$(hostname) pod=$POD_NAME ip=$POD_IP image=$FROM_IMAGE"; exec sleep 3600',
          ],
          env: [
            { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          ],
          volumeMounts: [
            { name: 'config', mountPath: '/config' },
            { name: 'secret', mountPath: '/secret', readOnly: true },
          ],
        },
      ],
      volumes: [
        { name: 'work', emptyDir: {} },
        { name: 'config', configMap: { name: 'app' } },
        { name: 'secret', secret: { secretName: 'app' } },
      ],
    });
    const put = await agent.client.putPod({
      pod: pod as never,
      volumes: {
        config: { files: { 'app.conf': b64('mode=test\n') } },
        secret: { files: { token: b64('s3cr3t') } },
      },
    });
    assert.deepEqual(put, { uid: pod.metadata.uid, unchanged: false });
    assert.equal(
      (await agent.client.putPod({ pod: pod as never })).unchanged,
      true,
      'same UID again is a no-op',
    );

    const s = await waitForStatus(agent.client, (x) =>
      x.conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
    );
    assert.equal(s.phase, 'Running');
    assert.equal(s.podIP, cell.cellIP);
    const cond = Object.fromEntries(s.conditions.map((c) => [c.type, c.status]));
    assert.deepEqual(cond, {
      PodReadyToStartContainers: 'True',
      Initialized: 'True',
      ContainersReady: 'True',
      Ready: 'True',
    });
    const [a, b] = s.initContainerStatuses;
    assert.equal(a!.state.terminated?.reason, 'Completed');
    assert.equal(b!.state.terminated?.reason, 'Completed');
    assert.ok(
      Date.parse(b!.state.terminated!.startedAt!) >= Date.parse(a!.state.terminated!.finishedAt!),
      'init-b started after init-a finished',
    );
    for (const c of s.containerStatuses) {
      assert.ok(c.state.running, `${c.name} running`);
      assert.equal(c.ready, true);
      assert.equal(c.started, true);
      assert.match(c.containerID!, /^runc:\/\//);
      assert.match(c.imageID, /@sha256:[0-9a-f]{64}$/);
    }

    let out = '';
    for (let i = 0; i < 50 && !out.includes('host='); i++) {
      out = await text(await agent.client.logs('client'));
      if (!out.includes('host=')) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(
      out,
      'init-a\ninit-b\nhello kip $(NAME) $(MISSING) image=$(FROM_IMAGE)\nmode=test\ns3cr3t\n' +
        `host=webhost pod=web ip=${cell.cellIP} image=yes\n`,
    );
  });

  it('applies securityContext and mounts emptyDir (memory), hostPath and projected token files', async () => {
    const hostDir = mkdtempSync(join(tmpdir(), 'kip-hostpath-'));
    try {
      const pod = makePod('secure', {
        restartPolicy: 'Never',
        securityContext: { runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000] },
        containers: [
          {
            name: 'locked',
            image,
            command: [
              'sh',
              '-c',
              'id -u; id -g; id -G; grep CapEff /proc/self/status; touch /rootfile 2>/dev/null || echo rootfs-ro; ' +
                'grep " /cache " /proc/mounts | cut -d" " -f3; echo hi > /cache/x && cat /cache/x; ' +
                'cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; echo from-pod > /host/out',
            ],
            securityContext: { readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            volumeMounts: [
              { name: 'cache', mountPath: '/cache' },
              { name: 'host', mountPath: '/host' },
              { name: 'token', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' },
            ],
          },
          {
            name: 'privileged',
            image,
            command: ['sh', '-c', 'grep CapEff /proc/self/status'],
            securityContext: { privileged: true, runAsUser: 0 },
          },
        ],
        volumes: [
          { name: 'cache', emptyDir: { medium: 'Memory', sizeLimit: '8Mi' } },
          { name: 'host', hostPath: { path: hostDir } },
          { name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'token' } }] } },
        ],
      });
      chmodSync(hostDir, 0o777);
      await agent.client.putPod({
        pod: pod as never,
        volumes: { token: { files: { token: b64('eyJhbGciOi.token') } } },
      });
      const s = await waitForStatus(agent.client, isTerminal);
      assert.equal(s.phase, 'Succeeded', JSON.stringify(s.containerStatuses));
      const out = await text(await agent.client.logs('locked'));
      assert.equal(
        out,
        '1000\n3000\n3000 4000\nCapEff:\t0000000000000000\nrootfs-ro\ntmpfs\nhi\neyJhbGciOi.token\n',
      );
      assert.equal(readFileSync(join(hostDir, 'out'), 'utf8'), 'from-pod\n');
      // Privileged gets every capability the agent holds itself.
      const bounding = /CapBnd:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1];
      assert.equal(await text(await agent.client.logs('privileged')), `CapEff:\t${bounding}\n`);
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  it('reports exit codes with the kubelet reasons: Completed, Error, OOMKilled', async () => {
    const pod = makePod('exits', {
      restartPolicy: 'Never',
      containers: [
        { name: 'ok', image, command: ['sh', '-c', 'exit 0'] },
        { name: 'bad', image, command: ['sh', '-c', 'echo failing > /dev/termination-log; exit 3'] },
        {
          name: 'oom',
          image,
          command: [
            'sh',
            '-c',
            'x=$(dd if=/dev/zero bs=1M count=96 2>/dev/null | tr "\\0" a); echo survived',
          ],
          resources: { limits: { memory: '24Mi' } },
        },
      ],
    });
    await agent.client.putPod({ pod: pod as never });
    const s = await waitForStatus(agent.client, isTerminal, 30_000);
    assert.equal(s.phase, 'Failed');
    const by = Object.fromEntries(s.containerStatuses.map((c) => [c.name, c.state.terminated]));
    assert.equal(by.ok?.exitCode, 0);
    assert.equal(by.ok?.reason, 'Completed');
    assert.equal(by.bad?.exitCode, 3);
    assert.equal(by.bad?.reason, 'Error');
    assert.equal(by.bad?.message, 'failing\n');
    assert.equal(by.oom?.reason, 'OOMKilled');
    assert.equal(by.oom?.exitCode, 137);
    const ready = s.conditions.find((c) => c.type === 'Ready')!;
    assert.equal(ready.status, 'False');
    assert.equal(ready.reason, 'PodFailed');
  });

  it('restarts a crashing container with growing backoff and keeps the previous log', async () => {
    const pod = makePod('crash', {
      restartPolicy: 'Always',
      containers: [
        {
          name: 'crash',
          image,
          command: [
            'sh',
            '-c',
            'n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo attempt-$n; exit 1',
          ],
          volumeMounts: [{ name: 'd', mountPath: '/d' }],
        },
      ],
      volumes: [{ name: 'd', emptyDir: {} }],
    });
    await agent.client.putPod({ pod: pod as never });
    const seen: Record<number, number> = {};
    let backoff: PodStatusReply | undefined;
    const s = await waitForStatus(
      agent.client,
      (x) => {
        const c = x.containerStatuses[0]!;
        seen[c.restartCount] ??= Date.now();
        if (c.state.waiting?.reason === 'CrashLoopBackOff') backoff = x;
        return c.restartCount >= 3 && !!c.state.running;
      },
      30_000,
    );
    // Backoff 0.5 s, 1 s, 2 s in this config: each wait is longer than the one before.
    const gap1 = seen[2]! - seen[1]!;
    const gap2 = seen[3]! - seen[2]!;
    assert.ok(gap1 >= 800, `second restart waited ${gap1} ms`);
    assert.ok(gap2 >= gap1 * 1.4, `backoff grows: ${gap1} ms then ${gap2} ms`);
    assert.ok(backoff, 'CrashLoopBackOff was reported');
    const w = backoff!.containerStatuses[0]!;
    assert.match(
      w.state.waiting!.message!,
      /^back-off \d+s restarting failed container=crash pod=crash_default\(/,
    );
    assert.equal(w.lastState.terminated?.exitCode, 1);
    assert.equal(w.lastState.terminated?.reason, 'Error');
    assert.equal(s.phase, 'Running');
    // The previous instance's log is complete; the latest one is read once it wrote its line.
    const prev = await text(await agent.client.logs('crash', { previous: true }));
    const m = /^attempt-(\d+)\n$/.exec(prev);
    assert.ok(m && Number(m[1]) >= 3, `previous log: ${JSON.stringify(prev)}`);
    let cur = '';
    for (let i = 0; i < 20 && !cur; i++) {
      cur = await text(await agent.client.logs('crash'));
      if (!cur) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(cur, `attempt-${Number(m![1]) + 1}\n`);
  });

  it('serves logs with tailLines, timestamps, limitBytes and follow', async () => {
    const pod = makePod('logs', {
      restartPolicy: 'Never',
      containers: [
        {
          name: 'talker',
          image,
          command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo line-$i; sleep 0.3; done; echo oops >&2'],
        },
      ],
    });
    await agent.client.putPod({ pod: pod as never });
    await waitForStatus(agent.client, (x) => !!x.containerStatuses[0]!.state.running);
    const followed = text(await agent.client.logs('talker', { follow: true }));
    const s = await waitForStatus(agent.client, isTerminal);
    assert.equal(s.phase, 'Succeeded');
    assert.equal(await followed, 'line-1\nline-2\nline-3\nline-4\nline-5\noops\n');
    assert.equal(await text(await agent.client.logs('talker', { tailLines: 2 })), 'line-5\noops\n');
    assert.equal(await text(await agent.client.logs('talker', { limitBytes: 9 })), 'line-1\nli');
    const stamped = (
      await text(await agent.client.logs('talker', { timestamps: true, tailLines: 1 }))
    ).trim();
    assert.match(stamped, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z oops$/);
    const since = stamped.split(' ')[0]!;
    assert.equal(await text(await agent.client.logs('talker', { sinceTime: since })), 'oops\n');
    await assert.rejects(
      agent.client.logs('talker', { previous: true }),
      (e: unknown) => e instanceof CellAgentError && e.code === 400,
    );
    await assert.rejects(
      agent.client.logs('nope'),
      (e: unknown) => e instanceof CellAgentError && e.code === 404,
    );
  });

  it('refuses bad input with 400/422 naming the field, and a second pod with 409', async () => {
    const put = (body: unknown) =>
      fetchJson(agent, 'PUT', '/v1/pod', typeof body === 'string' ? body : JSON.stringify(body));
    let r = await put('{not json');
    assert.equal(r.code, 400);
    assert.match(r.body.message as string, /not valid JSON/);
    r = await put({
      pod: { metadata: { name: 'x', uid: 'abcdef12-1' }, spec: { containers: [{ name: 'a' }] } },
    });
    assert.equal(r.code, 422);
    assert.match(r.body.message as string, /pod\.spec\.containers\[0\]\.image/);
    r = await put({
      pod: makePod('x', {
        containers: [
          { name: 'a', image, env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] },
        ],
      }),
    });
    assert.equal(r.code, 422);
    assert.equal(
      (r.body.details as { causes: { field: string }[] }).causes[0]!.field,
      'pod.spec.containers[0].env[0].valueFrom.secretKeyRef',
    );
    r = await put({
      pod: makePod('x', { containers: [{ name: 'a', image, resources: { limits: { memory: 'lots' } } }] }),
    });
    assert.equal(r.code, 422);
    assert.match(r.body.message as string, /resources\.limits\.memory/);
    r = await put({
      pod: makePod('x', {
        containers: [{ name: 'a', image, volumeMounts: [{ name: 'v', mountPath: '/v' }] }],
      }),
    });
    assert.equal(r.code, 422);
    assert.match(r.body.message as string, /volumeMounts\[0\]\.name/);
    r = await put({
      pod: makePod('x', {
        containers: [{ name: 'a', image }],
        volumes: [{ name: 'v', persistentVolumeClaim: { claimName: 'c' } }],
      }),
    });
    assert.equal(r.code, 422);
    assert.match(r.body.message as string, /persistentVolumeClaim/);
    r = await fetchJson(agent, 'GET', '/v1/pod/status?wait=soon');
    assert.equal(r.code, 400);
    r = await put({ pod: makePod('x', { containers: 'all of them' }) });
    assert.equal(r.code, 422);
    r = await put({
      pod: makePod('x', {
        containers: [
          { name: 'a', image, volumeMounts: [{ name: 'v', mountPath: '/v', subPath: '../../etc' }] },
        ],
        volumes: [{ name: 'v', emptyDir: {} }],
      }),
    });
    assert.equal(r.code, 422);
    assert.match(r.body.message as string, /subPath/);
    r = await put({
      pod: makePod('x', { containers: [{ name: 'a', image }], volumes: [{ name: 'v', secret: {} }] }),
      volumes: { v: { files: { '../escape': 'aGk=' } } },
    });
    assert.equal(r.code, 422);
    r = await put({ pod: makePod('x', { containers: [{ name: 'a', image }] }), surprise: true });
    assert.equal(r.code, 422);
    assert.match(r.body.message as string, /"surprise" is not a known field/);
    r = await fetchJson(agent, 'DELETE', '/v1/pod?gracePeriodSeconds=later');
    assert.equal(r.code, 400);
    // Exec: no subprotocol, and a container that is not there.
    const upgrade = (path: string, protocols: string[]) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${agent.baseUrl.replace('https', 'wss')}${path}`, protocols, {
          ca: agent.pki.ca.certPem,
          cert: agent.pki.client.certPem,
          key: agent.pki.client.keyPem,
        });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => reject(new Error('upgraded')));
        ws.on('error', () => undefined);
      });
    assert.equal(
      await upgrade('/v1/pod/containers/a/exec?command=ls&stdout=1', ['base64.channel.k8s.io']),
      400,
    );
    assert.equal(
      await upgrade('/v1/pod/containers/nope/exec?command=ls&stdout=1', ['v5.channel.k8s.io']),
      404,
    );
    assert.equal(await upgrade('/v1/pod/containers/a/exec?stdout=1', ['v5.channel.k8s.io']), 400);

    const first = makePod('first', {
      containers: [{ name: 'a', image, command: ['sleep', '3600'] }],
      terminationGracePeriodSeconds: 0,
    });
    await agent.client.putPod({ pod: first as never });
    await assert.rejects(
      agent.client.putPod({ pod: makePod('second', { containers: [{ name: 'a', image }] }) as never }),
      (e: unknown) => e instanceof CellAgentError && e.code === 409 && /first/.test(e.message),
    );
    const health = await agent.client.healthz();
    assert.equal(health.version, 'v1');
  });

  it('refuses clients without a certificate or with one from another CA at the handshake', async () => {
    const other = await createCA('another-ca');
    const intruder = await issueCertificate(other, { commonName: 'intruder', usage: 'client' });
    const get = (opts: https.RequestOptions) =>
      new Promise<number>((resolve, reject) => {
        const req = https.get(`${agent.baseUrl}/v1/healthz`, { ca: agent.pki.ca.certPem, ...opts }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
      });
    await assert.rejects(get({}), /certificate|alert|socket hang up|ECONNRESET/i);
    await assert.rejects(
      get({ cert: intruder.certPem, key: intruder.keyPem }),
      /certificate|alert|socket hang up|ECONNRESET/i,
    );
    assert.equal(await get({ cert: agent.pki.client.certPem, key: agent.pki.client.keyPem }), 200);
  });
});

/** A raw request with the provider's client certificate, to send bodies the typed client would not. */
function fetchJson(
  agent: TestAgent,
  method: string,
  path: string,
  body?: string,
): Promise<{ code: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${agent.baseUrl}${path}`,
      {
        method,
        ca: agent.pki.ca.certPem,
        cert: agent.pki.client.certPem,
        key: agent.pki.client.keyPem,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let data = '';
        res.on('data', (d: Buffer) => (data += d.toString()));
        res.on('end', () =>
          resolve({ code: res.statusCode ?? 0, body: JSON.parse(data || '{}') as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
