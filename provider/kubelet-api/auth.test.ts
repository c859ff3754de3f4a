import assert from 'node:assert/strict';
import { request } from 'node:https';
import { CoreV1Api } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.ts';
import { createCA, type KeyPair } from '../../lib/tls.ts';
import { kubeletServingCertificate } from '../certificates.ts';
import { startTestKube, type TestKube } from '../testing/kube.ts';
import { KubeletAuth, kubernetesReviewers } from './auth.ts';
import { startKubeletApiServer, type KubeletApiServer } from './server.ts';
import { testHandlers, wsSession } from './testing.ts';

const log = createLogger('kubelet-auth-test', 'silent');

function get(
  port: number,
  path: string,
  ca: string,
  token?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(
      { host: '127.0.0.1', port, path, ca, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    )
      .on('error', reject)
      .end();
  });
}

describe('kubelet API auth through the Kubernetes API (TokenReview, SubjectAccessReview)', function () {
  this.timeout(60_000);
  let kube: TestKube;
  let ca: KeyPair;
  let server: KubeletApiServer;
  let token: string;
  let reviewCalls = 0;

  before(async () => {
    kube = await startTestKube();
    const core = kube.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({
      namespace: 'default',
      body: { metadata: { name: 'reader' } },
    });
    const tr = await core.createNamespacedServiceAccountToken({
      name: 'reader',
      namespace: 'default',
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    token = tr.status!.token!;
    ca = await createCA('kubelet-serving-test');
    const serving = await kubeletServingCertificate(ca, 'kip', ['127.0.0.1']);
    const reviewers = kubernetesReviewers(kube.kc);
    server = await startKubeletApiServer({
      listen: '127.0.0.1:0',
      tls: serving,
      auth: new KubeletAuth({
        nodeName: 'kip',
        tokens: (t) => {
          reviewCalls++;
          return reviewers.tokens(t);
        },
        access: reviewers.access,
        // Short deny cache so a rule change shows within the test.
        denyTtlMs: 100,
        allowTtlMs: 100,
      }),
      handlers: testHandlers().handlers,
      log,
    });
  });

  after(async () => {
    await server?.close();
    await kube?.stop();
  });

  it('authenticates a service account token by TokenReview and caches the answer', async () => {
    const r = await get(server.port, '/pods', ca.certPem, token);
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).kind, 'PodList');
    const calls = reviewCalls;
    assert.equal((await get(server.port, '/stats/summary', ca.certPem, token)).status, 200);
    assert.equal(reviewCalls, calls, 'the second request used the token cache');
    // The same token with a forged signature.
    const forged = `${token.split('.').slice(0, 2).join('.')}.${Buffer.from('forged').toString('base64url')}`;
    assert.equal((await get(server.port, '/pods', ca.certPem, forged)).status, 401);
    assert.equal((await get(server.port, '/pods', ca.certPem)).status, 401);
  });

  it('answers 403 when the SubjectAccessReview denies, naming user and subresource', async () => {
    kube.emulator.rules.replace([
      { user: 'system:serviceaccount:default:reader', resource: 'nodes', subresource: 'proxy' },
    ]);
    try {
      await new Promise((r) => setTimeout(r, 150));
      const denied = await get(server.port, '/containerLogs/default/web/nginx', ca.certPem, token);
      assert.equal(denied.status, 403);
      assert.match(
        denied.body,
        /user=system:serviceaccount:default:reader, verb=get, resource=nodes, subresource\(s\)=\[proxy\]/,
      );
      // Other subresources stay allowed.
      assert.equal((await get(server.port, '/stats/summary', ca.certPem, token)).status, 200);
      const exec = await wsSession(
        `wss://127.0.0.1:${server.port}/exec/default/web/nginx?command=ls&output=1`,
        {
          ca: ca.certPem,
          token,
        },
      );
      assert.equal(exec.status, 403);
    } finally {
      kube.emulator.rules.replace([]);
    }
    await new Promise((r) => setTimeout(r, 150));
    assert.equal((await get(server.port, '/containerLogs/default/web/nginx', ca.certPem, token)).status, 200);
  });
});
