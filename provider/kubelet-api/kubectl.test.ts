import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { connect } from 'node:tls';
import { CoreV1Api } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.ts';
import { createCA } from '../../lib/tls.ts';
import { kubeletServingCertificate } from '../certificates.ts';
import { validateProviderConfig } from '../config.ts';
import { NodeController } from '../node/node-controller.ts';
import { desiredNode } from '../node/node-object.ts';
import { startTestKube, type TestKube } from '../testing/kube.ts';
import { startKubeletApiServer, type KubeletApiServer } from './server.ts';
import { testHandlers } from './testing.ts';

const log = createLogger('kubectl-logs-test', 'silent');

/**
 * Stands in for the API server's pods/exec subresource: everything is proxied to the emulator,
 * except exec/attach upgrades, which go to the kubelet API the way an API server sends them
 * (`/exec/{ns}/{pod}/{container}` with the client's stream flags).
 */
async function execFront(
  apiUrl: string,
  kubeletPort: number,
): Promise<{ url: string; server: Server; upgrades: string[] }> {
  const upgrades: string[] = [];
  const server = createServer((req, res) => {
    const up = request(`${apiUrl}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades.push(String(req.headers.upgrade));
    const url = new URL(req.url!, 'http://x');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach)$/.exec(url.pathname);
    if (!m) return socket.destroy();
    const container = url.searchParams.get('container') ?? 'nginx';
    url.searchParams.delete('container');
    const path = `/${m[3]}/${m[1]}/${m[2]}/${container}?${url.searchParams}`;
    const kubelet = connect({ host: '127.0.0.1', port: kubeletPort, rejectUnauthorized: false }, () => {
      const headers = Object.entries(req.headers)
        .filter(
          ([k]) =>
            k.startsWith('sec-websocket') ||
            ['upgrade', 'connection', 'x-stream-protocol-version'].includes(k),
        )
        .map(([k, v]) => `${k}: ${String(v)}`);
      kubelet.write(`${req.method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      kubelet.write(head);
      kubelet.pipe(socket).pipe(kubelet);
    });
    kubelet.on('error', () => socket.destroy());
    socket.on('error', () => kubelet.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, upgrades };
}

describe('kubectl logs through the API server to the kubelet API', function () {
  this.timeout(60_000);
  let kube: TestKube;
  let server: KubeletApiServer;
  let t: ReturnType<typeof testHandlers>;
  const stop = new AbortController();
  let nodeLoop: Promise<void>;

  before(async () => {
    kube = await startTestKube();
    t = testHandlers();
    const ca = await createCA('kubelet-serving');
    // The emulator, like an API server without a kubelet client certificate, sends no credentials.
    server = await startKubeletApiServer({
      listen: '127.0.0.1:0',
      tls: await kubeletServingCertificate(ca, 'kip', ['127.0.0.1']),
      auth: null,
      handlers: t.handlers,
      log,
    });
    const cfg = validateProviderConfig({ nodeName: 'kip', cloud: { project: 'kip-lab-project' } });
    const nodeCtl = new NodeController({
      core: kube.kc.makeApiClient(CoreV1Api),
      node: desiredNode(cfg, { internalIP: '127.0.0.1', kubeletPort: server.port, clusterId: 'kip-test' }),
      health: [],
      log,
    });
    nodeLoop = nodeCtl.run(stop.signal);
    await nodeCtl.ready;
    const core = kube.kc.makeApiClient(CoreV1Api);
    for (const name of ['web', 'ghost']) {
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name },
          spec: { nodeName: 'kip', containers: [{ name: 'nginx', image: 'nginx' }] },
        },
      });
    }
  });

  after(async () => {
    stop.abort();
    await nodeLoop;
    await server?.close();
    await kube?.stop();
  });

  it('passes kubectl’s options to the logs handler and prints what it returns', async () => {
    t.seen.logs.length = 0;
    assert.equal(await kube.kubectl('logs', 'web', '--tail=2', '--timestamps'), 'line 2\nline 3\n');
    const first = t.seen.logs[0]!;
    assert.deepEqual(first.target, { namespace: 'default', pod: 'web', container: 'nginx' });
    assert.equal(first.opts.tailLines, 2);
    assert.equal(first.opts.timestamps, true);
    assert.equal(
      await kube.kubectl('logs', 'web', '-c', 'nginx', '--since=5s', '--limit-bytes=9'),
      'line 1\nli',
    );
    assert.equal(t.seen.logs[1]!.opts.sinceSeconds, 5);
    assert.equal(t.seen.logs[1]!.opts.limitBytes, 9);
    await kube.kubectl('logs', 'web', '--previous');
    assert.equal(t.seen.logs[2]!.opts.previous, true);
  });

  it('follows with kubectl logs -f until kubectl goes away', async () => {
    const child = spawn('kubectl', ['--kubeconfig', kube.kubeconfigPath, 'logs', '-f', 'web', '--tail=1']);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('line 6\n')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`kubectl exited ${code}: ${out}`)));
    });
    child.kill('SIGTERM');
    assert.ok(out.startsWith('line 3\nline 4\nline 5\n'), out);
    assert.equal(t.seen.logs.at(-1)!.opts.follow, true);
    await t.followEnded;
  });

  it('runs kubectl exec over WebSocket and over SPDY, stdin and exit code included', async () => {
    const front = await execFront(kube.emulator.url, server.port);
    const kubeconfig = `${kube.kubeconfigPath}.exec`;
    writeFileSync(
      kubeconfig,
      (await kube.kubectl('config', 'view', '--raw')).replace(kube.emulator.url, front.url),
    );
    const kubectl = (args: string[], input?: string, env: NodeJS.ProcessEnv = {}) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = execFile(
          'kubectl',
          ['--kubeconfig', kubeconfig, ...args],
          { timeout: 20_000, env: { ...process.env, ...env } },
          (err, stdout, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
        if (input !== undefined) child.stdin!.end(input);
      });
    try {
      t.seen.exec.length = 0;
      const ok = await kubectl(['exec', 'web', '--', 'echo', '0']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, 'ran echo 0 tty=false\n');
      assert.equal(ok.stderr, 'to stderr\n');
      assert.deepEqual(t.seen.exec[0], {
        target: { namespace: 'default', pod: 'web', container: 'nginx' },
        command: ['echo', '0'],
      });

      const failed = await kubectl(['exec', 'web', '--', 'false', '7']);
      assert.equal(failed.code, 7, 'kubectl exits with the command’s exit code');
      assert.match(failed.stderr, /command terminated with exit code 7/);

      const piped = await kubectl(['exec', '-i', 'web', '--', 'cat'], 'through stdin');
      assert.equal(piped.code, 0, piped.stderr);
      assert.equal(piped.stdout, 'THROUGH STDIN');

      // The same over SPDY/3.1, which API servers before 1.36 use towards kubelets.
      const spdy = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' };
      const viaSpdy = await kubectl(['exec', 'web', '--', 'echo', '0'], undefined, spdy);
      assert.equal(viaSpdy.code, 0, viaSpdy.stderr);
      assert.equal(viaSpdy.stdout, 'ran echo 0 tty=false\n');
      assert.equal(viaSpdy.stderr, 'to stderr\n');
      const spdyFailed = await kubectl(['exec', 'web', '--', 'false', '5'], undefined, spdy);
      assert.equal(spdyFailed.code, 5);
      const big = 'x'.repeat(300_000);
      const spdyPiped = await kubectl(['exec', '-i', 'web', '--', 'cat'], big, spdy);
      assert.equal(spdyPiped.code, 0, spdyPiped.stderr);
      assert.equal(spdyPiped.stdout, big.toUpperCase(), 'stdin beyond the 64 KiB window arrives whole');
      assert.deepEqual(
        front.upgrades.map((u) => u.toLowerCase()),
        ['websocket', 'websocket', 'websocket', 'spdy/3.1', 'spdy/3.1', 'spdy/3.1'],
      );
    } finally {
      front.server.closeAllConnections();
      front.server.close();
    }
  });

  it('shows the handler’s error for a pod it does not know', async () => {
    await assert.rejects(kube.kubectl('logs', 'ghost'), (e: { stderr: string }) => {
      assert.match(e.stderr, /pod "ghost" not found/);
      return true;
    });
  });
});
