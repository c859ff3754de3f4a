import assert from 'node:assert/strict';
import { generateKeyPairSync, verify } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { createServiceControlClient, SERVICE_CONTROL_SCOPE } from './service-control-client.ts';
import { PermanentError, TransientError } from './endpoints/endpoint.ts';

const SERVICE = 'kip.mp-kip-test.appspot.com';

describe('Service Control client with a service account key (no rootUrl)', () => {
  let server: Server;
  let local: string;
  const seen: Array<{ path: string; authorization?: string; assertion?: string }> = [];
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = {
    type: 'service_account',
    client_email: 'reporter@kip-test.iam.gserviceaccount.com',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
  let reportStatus = 200;

  before(async () => {
    // Google's token and Service Control endpoints, answered on loopback.
    const app = express();
    app.use(express.urlencoded({ extended: false }));
    app.use(express.json());
    app.post('/token', (req, res) => {
      seen.push({ path: req.path, assertion: (req.body as { assertion?: string }).assertion });
      res.json({ access_token: 'token-from-jwt', expires_in: 3600, token_type: 'Bearer' });
    });
    app.post('/v1/services/:serviceName\\:report', (req, res) => {
      seen.push({ path: req.path, authorization: req.headers.authorization });
      if (reportStatus !== 200)
        res.status(reportStatus).json({ error: { code: reportStatus, message: 'no' } });
      else res.json({ reportErrors: [] });
    });
    server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    local = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const localFetch: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    assert.ok(['oauth2.googleapis.com', 'servicecontrol.googleapis.com'].includes(url.host), url.host);
    const path = url.host === 'oauth2.googleapis.com' ? '/token' : url.pathname;
    return fetch(`${local}${path}${url.search}`, init);
  };

  it('signs a JWT with the key for the servicecontrol scope and sends its token', async () => {
    const client = createServiceControlClient({ key, timeoutMs: 5000, fetch: localFetch });
    await client.report(SERVICE, [{ operationId: 'op-1', consumerId: 'project:acme' }]);
    const token = seen.find((s) => s.path === '/token')!;
    const [h, p, sig] = token.assertion!.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(claims.iss, key.client_email);
    assert.equal(claims.scope, SERVICE_CONTROL_SCOPE);
    assert.ok(
      verify('RSA-SHA256', Buffer.from(`${h}.${p}`), publicKey, Buffer.from(sig!, 'base64url')),
      'the assertion is signed with the key',
    );
    const report = seen.find((s) => s.path.endsWith(':report'))!;
    assert.equal(report.path, `/v1/services/${SERVICE}:report`);
    assert.equal(report.authorization, 'Bearer token-from-jwt');
  });

  it('sorts failures into retried (5xx) and not retried (400)', async () => {
    const client = createServiceControlClient({ key, timeoutMs: 5000, fetch: localFetch });
    reportStatus = 503;
    await assert.rejects(client.report(SERVICE, [{ operationId: 'op-2' }]), TransientError);
    reportStatus = 400;
    await assert.rejects(client.report(SERVICE, [{ operationId: 'op-3' }]), PermanentError);
    reportStatus = 200;
  });
});
