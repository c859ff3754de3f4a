import assert from 'node:assert/strict';
import { request } from 'node:https';
import { createLogger } from '../../lib/log.ts';
import { createCA, issueCertificate, type KeyPair } from '../../lib/tls.ts';
import { kubeletServingCertificate } from '../certificates.ts';
import { KubeletAuth, type RequestAttributes, type UserInfo } from './auth.ts';
import { resourceMetrics } from './metrics-resource.ts';
import { startKubeletApiServer, type KubeletApiServer } from './server.ts';
import { summary, testHandlers, wsSession } from './testing.ts';
import type { StatsSummary } from './types.ts';

const log = createLogger('kubelet-api-test', 'silent');

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function get(
  port: number,
  path: string,
  tls: { ca: string; cert?: string; key?: string; token?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        servername: 'kip',
        headers: tls.token ? { authorization: `Bearer ${tls.token}` } : {},
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('kubelet API (HTTPS, client-certificate auth, in-test handlers)', () => {
  let ca: KeyPair;
  let client: KeyPair;
  let stranger: KeyPair;
  let server: KubeletApiServer;
  let reviews: { user: UserInfo; attrs: RequestAttributes }[];
  let t: ReturnType<typeof testHandlers>;
  const tls = () => ({ ca: ca.certPem, cert: client.certPem, key: client.keyPem });

  before(async () => {
    ca = await createCA('test-cluster-ca');
    client = await issueCertificate(ca, {
      commonName: 'kube-apiserver-kubelet-client',
      organizations: ['system:masters'],
      usage: 'client',
    });
    stranger = await issueCertificate(await createCA('other'), { commonName: 'intruder', usage: 'client' });
    const serving = await kubeletServingCertificate(ca, 'kip', ['127.0.0.1']);
    reviews = [];
    t = testHandlers();
    server = await startKubeletApiServer({
      listen: '127.0.0.1:0',
      tls: { certPem: serving.certPem, keyPem: serving.keyPem, clientCAPem: ca.certPem },
      auth: new KubeletAuth({
        nodeName: 'kip',
        tokens: async () => null,
        access: async (user, nodeName, attrs) => {
          assert.equal(nodeName, 'kip');
          reviews.push({ user, attrs });
          return { allowed: attrs.path !== '/pods' || user.username !== 'readonly' };
        },
      }),
      handlers: t.handlers,
      log,
    });
  });
  after(async () => server?.close());

  it('refuses requests without credentials (401) but serves /healthz', async () => {
    assert.equal((await get(server.port, '/pods', { ca: ca.certPem })).status, 401);
    assert.equal(
      (await get(server.port, '/pods', { ca: ca.certPem, cert: stranger.certPem, key: stranger.keyPem }))
        .status,
      401,
    );
    assert.equal((await get(server.port, '/pods', { ca: ca.certPem, token: 'bogus' })).status, 401);
    const health = await get(server.port, '/healthz', { ca: ca.certPem });
    assert.deepEqual([health.status, health.body], [200, 'ok']);
  });

  it('authenticates a client certificate and authorizes by subresource', async () => {
    reviews.length = 0;
    const pods = await get(server.port, '/pods', tls());
    assert.equal(pods.status, 200);
    const list = JSON.parse(pods.body) as { kind: string; items: { metadata: { name: string } }[] };
    assert.equal(list.kind, 'PodList');
    assert.equal(list.items[0]!.metadata.name, 'web');
    await get(server.port, '/stats/summary', tls());
    await get(server.port, '/metrics/resource', tls());
    await get(server.port, '/containerLogs/default/web/nginx', tls());
    assert.deepEqual(
      reviews.map((r) => `${r.attrs.verb} ${r.attrs.subresource}`),
      ['get proxy', 'get stats', 'get metrics'],
      'the second proxy request was answered from the allow cache',
    );
    assert.equal(reviews[0]!.user.username, 'kube-apiserver-kubelet-client');
    assert.deepEqual(reviews[0]!.user.groups, ['system:masters', 'system:authenticated']);
  });

  it('passes every containerLogs query parameter to the handler', async () => {
    t.seen.logs.length = 0;
    const r = await get(
      server.port,
      '/containerLogs/default/web/nginx?tailLines=2&timestamps=true&previous=false&limitBytes=100&sinceTime=2026-01-01T00:00:00Z',
      tls(),
    );
    assert.equal(r.status, 200);
    assert.equal(r.body, 'line 2\nline 3\n');
    assert.deepEqual(t.seen.logs[0], {
      target: { namespace: 'default', pod: 'web', container: 'nginx' },
      opts: {
        follow: false,
        previous: false,
        timestamps: true,
        tailLines: 2,
        limitBytes: 100,
        sinceSeconds: undefined,
        sinceTime: new Date('2026-01-01T00:00:00Z'),
        stream: 'All',
      },
    });
    const limited = await get(server.port, '/containerLogs/default/web/nginx?limitBytes=9', tls());
    assert.equal(limited.body, 'line 1\nli');
    assert.equal(
      (await get(server.port, '/containerLogs/default/web/nginx?sinceSeconds=5', tls())).status,
      200,
    );
    assert.equal(t.seen.logs.at(-1)!.opts.sinceSeconds, 5);
  });

  it('answers bad log parameters with 400 naming the parameter, unknown pods with 404', async () => {
    const bad = await get(server.port, '/containerLogs/default/web/nginx?tailLines=-1', tls());
    assert.equal(bad.status, 400);
    assert.match(bad.body, /"tailLines" must be at least 0/);
    const both = await get(
      server.port,
      '/containerLogs/default/web/nginx?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z',
      tls(),
    );
    assert.equal(both.status, 400);
    assert.match(both.body, /"sinceSeconds" and "sinceTime"/);
    assert.match(
      (await get(server.port, '/containerLogs/default/web/nginx?follow=maybe', tls())).body,
      /"follow" must be true or false/,
    );
    const missing = await get(server.port, '/containerLogs/default/nope/nginx', tls());
    assert.equal(missing.status, 404);
    assert.match(missing.body, /pod "nope" not found/);
    assert.equal((await get(server.port, '/nothing/here', tls())).status, 404);
  });

  it('streams followed logs until the client goes away', async () => {
    const got = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: server.port,
          path: '/containerLogs/default/web/nginx?follow=true&tailLines=1',
          ...tls(),
          servername: 'kip',
        },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => {
            body += d.toString();
            if (body.includes('line 6\n')) {
              req.destroy();
              resolve(body);
            }
          });
        },
      );
      req.on('error', (e) =>
        e.message.includes('aborted') || e.message.includes('socket hang up') ? undefined : reject(e),
      );
      req.end();
    });
    assert.ok(got.startsWith('line 3\nline 4\nline 5\nline 6\n'), got);
    await t.followEnded;
  });

  it('serves /stats/summary and /metrics/resource with the names metrics-server parses', async () => {
    const stats = await get(server.port, '/stats/summary', tls());
    assert.deepEqual(JSON.parse(stats.body), summary);
    const slim = JSON.parse(
      (await get(server.port, '/stats/summary?only_cpu_and_memory=true', tls())).body,
    ) as StatsSummary;
    assert.equal(slim.pods[0]!.containers.length, 2);
    const m = await get(server.port, '/metrics/resource', tls());
    assert.equal(m.status, 200);
    assert.match(String(m.headers['content-type']), /^text\/plain; version=0.0.4/);
    const lines = m.body.split('\n');
    assert.ok(lines.includes('node_cpu_usage_seconds_total 300 1767226200000'), m.body);
    assert.ok(lines.includes('node_memory_working_set_bytes 2000000000 1767226200000'));
    assert.ok(
      lines.includes(
        'container_cpu_usage_seconds_total{container="nginx",namespace="default",pod="web"} 1.5 1767226200000',
      ),
    );
    assert.ok(
      lines.includes(
        'container_memory_working_set_bytes{container="nginx",namespace="default",pod="web"} 1048576 1767226200000',
      ),
    );
    assert.ok(
      lines.includes(
        'container_start_time_seconds{container="nginx",namespace="default",pod="web"} 1767225665',
      ),
    );
    assert.ok(!m.body.includes('container="idle"'), 'containers without usage are left out');
    assert.ok(lines.includes('# TYPE container_cpu_usage_seconds_total counter'));
  });

  it('runs exec over WebSocket (v4) with the exit status on the error channel', async () => {
    t.seen.exec.length = 0;
    const ok = await wsSession(
      `wss://127.0.0.1:${server.port}/exec/default/web/nginx?command=true&command=0&output=1&error=1`,
      tls(),
    );
    assert.equal(ok.protocol, 'v4.channel.k8s.io');
    assert.equal(ok.channels[1], 'ran true 0 tty=false\n');
    assert.equal(ok.channels[2], 'to stderr\n');
    assert.deepEqual(JSON.parse(ok.channels[3]!), { metadata: {}, status: 'Success' });
    assert.deepEqual(t.seen.exec[0], {
      target: { namespace: 'default', pod: 'web', container: 'nginx' },
      command: ['true', '0'],
    });

    const failed = await wsSession(
      `wss://127.0.0.1:${server.port}/exec/default/web/u-123/nginx?command=false&command=3&output=1`,
      tls(),
    );
    const status = JSON.parse(failed.channels[3]!) as {
      reason: string;
      details: { causes: { reason: string; message: string }[] };
    };
    assert.equal(status.reason, 'NonZeroExitCode');
    assert.deepEqual(status.details.causes, [{ reason: 'ExitCode', message: '3' }]);
    assert.equal(t.seen.exec[1]!.target.podUid, 'u-123');

    const missing = await wsSession(
      `wss://127.0.0.1:${server.port}/exec/default/web/missing?command=ls&output=1`,
      tls(),
    );
    assert.match(JSON.parse(missing.channels[3]!).message as string, /container "missing" not found/);
  });

  it('carries stdin, its v5 close signal and terminal resizes', async () => {
    t.seen.resizes.length = 0;
    const r = await wsSession(
      `wss://127.0.0.1:${server.port}/exec/default/web/nginx?command=cat&input=1&output=1&tty=1`,
      {
        ...tls(),
        protocol: 'v5.channel.k8s.io',
        send: (ws) => {
          ws.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"Width":120,"Height":40}')]));
          ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('hello ')]));
          ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('kip')]));
          ws.send(Buffer.from([255, 0]));
        },
      },
    );
    assert.equal(r.protocol, 'v5.channel.k8s.io');
    assert.equal(r.channels[1], 'HELLO KIP');
    assert.deepEqual(JSON.parse(r.channels[3]!), { metadata: {}, status: 'Success' });
    assert.deepEqual(t.seen.resizes, [{ width: 120, height: 40 }]);
  });

  it('refuses bad exec requests before upgrading', async () => {
    const noCmd = await wsSession(`wss://127.0.0.1:${server.port}/exec/default/web/nginx?output=1`, tls());
    assert.equal(noCmd.status, 400);
    assert.match(noCmd.body!, /"command" is required/);
    const ttyErr = await wsSession(
      `wss://127.0.0.1:${server.port}/exec/default/web/nginx?command=sh&tty=1&error=1`,
      tls(),
    );
    assert.equal(ttyErr.status, 400);
    const noAuth = await wsSession(
      `wss://127.0.0.1:${server.port}/exec/default/web/nginx?command=sh&output=1`,
      { ca: ca.certPem },
    );
    assert.equal(noAuth.status, 401);
    const plain = await get(server.port, '/exec/default/web/nginx?command=sh&output=1', tls());
    assert.equal(plain.status, 400);
    assert.match(plain.body, /WebSocket/);
    // attach has no handler here: 501 says so.
    const attach = await wsSession(`wss://127.0.0.1:${server.port}/attach/default/web/nginx?output=1`, tls());
    assert.equal(attach.status, 501);
  });

  it('metrics text leaves out a node without usage', () => {
    const text = resourceMetrics({ node: { nodeName: 'kip' }, pods: [] });
    assert.ok(!/^node_cpu_usage_seconds_total /m.test(text));
    assert.match(text, /^scrape_error 0$/m);
  });
});
