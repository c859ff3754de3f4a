/**
 * The pod path's kubelet API handlers behind the real kubelet API server, talking through the
 * production CellAgentClient to an agent emulated at the wire (mutual TLS, the agent's Status
 * bodies and channel protocol): logs of a finished pod after its VM is gone, and the agent's
 * refusals of exec/attach reaching the client with their own code.
 */
import assert from 'node:assert/strict';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { WebSocketServer } from 'ws';
import { statusBody, type ApiStatus } from '../../lib/cell-agent-api.ts';
import { CellAgentClient } from '../../lib/cell-agent-client.ts';
import { createLogger } from '../../lib/log.ts';
import { createCA, issueCertificate, type KeyPair } from '../../lib/tls.ts';
import { startKubeletApiServer, type KubeletApiServer } from '../kubelet-api/server.ts';
import { errorStatus } from '../kubelet-api/stream-protocol.ts';
import { wsSession } from '../kubelet-api/testing.ts';
import { InvalidInputError, NotFoundError } from '../kubelet-api/types.ts';
import { FinishedLogs } from './finished-logs.ts';
import { kubeletHandlers } from './kubelet-handlers.ts';

const log = createLogger('kubelet-handlers-test', 'silent');

const JOB_LOG = [
  ['2026-01-01T00:00:01.000000001Z', 'computing...'],
  ['2026-01-01T00:00:03.000000001Z', 'result: 42'],
];

function refuse(socket: Duplex, code: number, reason: ApiStatus['reason'], message: string): void {
  const body = JSON.stringify(statusBody(code, reason, message));
  socket.end(
    `HTTP/1.1 ${code} ${STATUS_CODES[code]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** A cell agent at the wire: logs of `main`, and exec/attach answers chosen by container name. */
function startAgent(ca: KeyPair, server: KeyPair): Promise<Server> {
  const wss = new WebSocketServer({ noServer: true, handleProtocols: () => 'v5.channel.k8s.io' });
  const srv = createServer(
    { cert: server.certPem, key: server.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const url = new URL(req.url ?? '/', 'https://cell');
      const m = /^\/v1\/pod\/containers\/([^/]+)\/logs$/.exec(url.pathname);
      if (m?.[1] === 'main' || m?.[1] === 'setup') {
        const ts = url.searchParams.get('timestamps') === 'true';
        const lines = m[1] === 'main' ? JOB_LOG : [['2026-01-01T00:00:00.5Z', 'setting up']];
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(lines.map(([t, l]) => (ts ? `${t} ${l}\n` : `${l}\n`)).join(''));
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(statusBody(404, 'NotFound', `no route ${url.pathname}`)));
    },
  );
  srv.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const name = /containers\/([^/]+)\//.exec(req.url ?? '')?.[1];
    if (name === 'stopped')
      return refuse(socket, 400, 'BadRequest', 'container "stopped" is not running (terminated: Completed)');
    if (name === 'busy') return refuse(socket, 409, 'Conflict', 'the pod is being replaced; try again');
    if (name === 'exiting')
      // Accepted, then refused on the error channel: the container exited during the upgrade.
      return wss.handleUpgrade(req, socket, head, (ws) => {
        const failure = statusBody(400, 'BadRequest', 'container "exiting" is not running');
        ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify({ ...failure, metadata: {} }))]));
        ws.close(1000);
      });
    refuse(socket, 500, 'InternalError', 'runc failed');
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

function podOf(
  name: string,
  uid: string,
  phase: string,
  containers: { name: string; stdin?: boolean }[],
): V1Pod {
  return {
    metadata: { namespace: 'default', name, uid },
    spec: { containers, initContainers: name === 'job' ? [{ name: 'setup' }] : [] },
    status: { phase },
  } as V1Pod;
}

describe('kubelet API pod handlers (finished-pod logs, agent refusals)', function () {
  this.timeout(20_000);
  let ca: KeyPair;
  let agentServer: Server;
  let client: CellAgentClient;
  let api: KubeletApiServer;
  let http: Agent;
  const finished = new FinishedLogs({ log, timeoutMs: 2000 });
  const web = podOf('web', 'uid-web', 'Running', [
    { name: 'stopped' },
    { name: 'busy' },
    { name: 'exiting' },
    { name: 'plain' },
  ]);
  const job = podOf('job', 'uid-job', 'Succeeded', [{ name: 'main' }]);
  /** Kubernetes' view (the pod informer): what lookupPod answers. */
  const live = new Map<string, V1Pod>();
  /** Pods whose agent is reachable. */
  const onCells = new Map<string, V1Pod>();

  before(async () => {
    ca = await createCA('kip-test-ca');
    const cellCert = await issueCertificate(ca, { commonName: 'cell-1', hosts: ['cell-1'], usage: 'server' });
    const providerCert = await issueCertificate(ca, { commonName: 'kip-provider', usage: 'client' });
    const serving = await issueCertificate(ca, { commonName: 'kip', hosts: ['127.0.0.1'], usage: 'server' });
    agentServer = await startAgent(ca, cellCert);
    client = new CellAgentClient({
      baseUrl: `https://127.0.0.1:${(agentServer.address() as AddressInfo).port}`,
      ca: ca.certPem,
      cert: providerCert.certPem,
      key: providerCert.keyPem,
      servername: 'cell-1',
    });
    const handlers = kubeletHandlers({
      agents: {
        agentFor: (ns, name) => {
          const pod = onCells.get(`${ns}/${name}`);
          return pod ? { client, pod } : undefined;
        },
        dispatchedAgents: () => [],
      },
      nodeName: 'kip',
      log,
      finishedLogs: finished,
      lookupPod: (ns, name) => live.get(`${ns}/${name}`),
    });
    api = await startKubeletApiServer({
      listen: '127.0.0.1:0',
      tls: { certPem: serving.certPem, keyPem: serving.keyPem },
      auth: null,
      handlers,
      log,
    });
    http = new Agent({ connect: { ca: ca.certPem } });
    for (const p of [web, job]) {
      live.set(`default/${p.metadata!.name}`, p);
      onCells.set(`default/${p.metadata!.name}`, p);
    }
    // The job finished: its logs are read from the agent, then its VM goes.
    await finished.collect(job, client);
    onCells.delete('default/job');
  });
  after(async () => {
    await api?.close();
    await client?.close();
    await http?.close();
    await new Promise((r) => agentServer?.close(r));
  });

  const logs = async (path: string) => {
    const r = await request(`https://127.0.0.1:${api.port}${path}`, { dispatcher: http });
    return { status: r.statusCode, body: await r.body.text() };
  };

  it('serves a finished pod’s logs after its VM is gone, with the query parameters of a live pod', async () => {
    assert.deepEqual(await logs('/containerLogs/default/job/main'), {
      status: 200,
      body: 'computing...\nresult: 42\n',
    });
    assert.deepEqual(await logs('/containerLogs/default/job/main?tailLines=1'), {
      status: 200,
      body: 'result: 42\n',
    });
    assert.equal(
      (await logs('/containerLogs/default/job/main?timestamps=true&sinceTime=2026-01-01T00:00:02Z')).body,
      '2026-01-01T00:00:03.000000001Z result: 42\n',
    );
    assert.equal((await logs('/containerLogs/default/job/main?limitBytes=9')).body, 'computing');
    assert.equal((await logs('/containerLogs/default/job/setup')).body, 'setting up\n', 'init container');
    assert.deepEqual(await logs('/containerLogs/default/job/main?follow=true'), {
      status: 200,
      body: 'computing...\nresult: 42\n',
    });
  });

  it('answers previous and unknown containers of a finished pod with a clear 4xx', async () => {
    const prev = await logs('/containerLogs/default/job/main?previous=true');
    assert.equal(prev.status, 400);
    assert.match(prev.body, /previous terminated container "main" in pod "job" not found: the pod finished/);
    const other = await logs('/containerLogs/default/job/nope');
    assert.equal(other.status, 404);
    assert.match(other.body, /container nope is not valid for pod job/);
  });

  it('a finished pod whose logs were not kept: 404 saying its VM was deleted and the logs are gone', async () => {
    live.set('default/old', podOf('old', 'uid-old', 'Failed', [{ name: 'main' }]));
    const r = await logs('/containerLogs/default/old/main');
    assert.equal(r.status, 404);
    assert.match(
      r.body,
      /pod default\/old has finished \(Failed\) and its VM was deleted; its logs are no longer available/,
    );
    const unknown = await logs('/containerLogs/default/nobody/main');
    assert.equal(unknown.status, 404);
    assert.match(unknown.body, /pod default\/nobody is not running on a cell of this node/);
  });

  it('never serves the kept logs to a newer pod of the same name', async () => {
    live.set('default/job', podOf('job', 'uid-job-2', 'Pending', [{ name: 'main' }]));
    try {
      const r = await logs('/containerLogs/default/job/main');
      assert.equal(r.status, 404);
      assert.doesNotMatch(r.body, /result/);
    } finally {
      live.set('default/job', job);
    }
  });

  it('an agent’s 4xx refusal of exec/attach reaches the client on the error channel with its code and reason', async () => {
    const ws = (path: string) =>
      wsSession(`wss://127.0.0.1:${api.port}${path}`, { ca: ca.certPem, protocol: 'v4.channel.k8s.io' });
    const status = async (path: string) => {
      const r = await ws(path);
      assert.equal(r.status, 101, `upgraded: ${r.body}`);
      return JSON.parse(r.channels[3] ?? '{}') as Record<string, unknown>;
    };
    assert.deepEqual(await status('/attach/default/web/stopped?output=1&error=1'), {
      metadata: {},
      status: 'Failure',
      message: 'container "stopped" is not running (terminated: Completed)',
      reason: 'BadRequest',
      code: 400,
    });
    const exiting = await status('/attach/default/web/exiting?output=1');
    assert.deepEqual([exiting.code, exiting.reason], [400, 'BadRequest']);
    assert.match(String(exiting.message), /container "exiting" is not running/);
    const busy = await status('/exec/default/web/busy?command=ls&output=1');
    assert.deepEqual(
      [busy.code, busy.reason, busy.message],
      [409, 'Conflict', 'the pod is being replaced; try again'],
    );
    // The provider's own refusal (stdin of a container without stdin: true) is a 400 too.
    const noStdin = await status('/attach/default/web/plain?input=1&output=1');
    assert.deepEqual([noStdin.code, noStdin.reason], [400, 'BadRequest']);
    assert.match(String(noStdin.message), /was not started with stdin: true/);
    // An agent failing on its side stays an internal error.
    const broken = await status('/exec/default/web/plain?command=ls&output=1');
    assert.deepEqual([broken.code, broken.reason], [500, 'InternalError']);
  });

  it('errorStatus: not found 404, invalid input 400, anything else 500', () => {
    assert.equal(errorStatus(new NotFoundError('x')).code, 404);
    assert.equal(errorStatus(new InvalidInputError('x')).reason, 'BadRequest');
    const plain = Object.assign(new Error('boom'), { code: 400 });
    assert.deepEqual([errorStatus(plain).code, errorStatus(plain).reason], [500, 'InternalError']);
  });
});
