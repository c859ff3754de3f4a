import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from './kube-config.ts';
import { createCA, issueCertificate } from './tls.ts';

/** An API server stand-in answering namespace lists, counting the connections clients open. */
async function countingServer(tls?: { cert: string; key: string }) {
  const handler: http.RequestListener = (_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ apiVersion: 'v1', kind: 'NamespaceList', metadata: {}, items: [] }));
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  let connections = 0;
  server.on(tls ? 'secureConnection' : 'connection', () => connections++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    connections: () => connections,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

function load(kc: KubeConfig, server: string, cluster: Record<string, unknown>): KubeConfig {
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, ...cluster }],
    users: [{ name: 'u', token: 'secret' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe('PooledKubeConfig', () => {
  it('serves many requests over one connection where the plain KubeConfig opens one per request', async () => {
    const srv = await countingServer();
    try {
      const plain = load(new KubeConfig(), srv.url, { skipTLSVerify: true }).makeApiClient(CoreV1Api);
      for (let i = 0; i < 20; i++) await plain.listNamespace();
      const perRequest = srv.connections();
      const kc = load(new PooledKubeConfig(), srv.url, { skipTLSVerify: true }) as PooledKubeConfig;
      const pooled = kc.makeApiClient(CoreV1Api);
      for (let i = 0; i < 20; i++) await pooled.listNamespace();
      await kc.close();
      assert.equal(perRequest, 20, 'client-node without pooling opens a connection per request');
      // One connection, or two where a request is sent while the previous one is still being closed out.
      assert.ok(
        srv.connections() - perRequest <= 2,
        `${srv.connections() - perRequest} connections for 20 requests`,
      );
    } finally {
      srv.close();
    }
  });

  it('keeps one TLS session for a cluster with a CA', async () => {
    const ca = await createCA('kube-ca');
    const serving = await issueCertificate(ca, { commonName: 'api', hosts: ['127.0.0.1'], usage: 'server' });
    const srv = await countingServer({ cert: serving.certPem, key: serving.keyPem });
    try {
      const kc = load(new PooledKubeConfig(), srv.url, {
        caData: Buffer.from(ca.certPem).toString('base64'),
      }) as PooledKubeConfig;
      const api = kc.makeApiClient(CoreV1Api);
      await Promise.all(Array.from({ length: 5 }, () => api.listNamespace()));
      for (let i = 0; i < 10; i++) await api.listNamespace();
      await kc.close();
      // Concurrent requests may open a few connections; sequential ones reuse them.
      assert.ok(srv.connections() <= 5, `${srv.connections()} TLS connections for 15 requests`);
    } finally {
      srv.close();
    }
  });
});
