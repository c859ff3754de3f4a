import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { certificateExpiry, certificateSubject, createCA, issueCertificate } from './tls.ts';

function get(port: number, opts: https.RequestOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/', ...opts }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

describe('TLS certificates', () => {
  it('issues server and client certificates that complete a mutual-TLS handshake', async () => {
    const ca = await createCA('kip-test-ca');
    const server = await issueCertificate(ca, {
      commonName: 'cell',
      hosts: ['127.0.0.1', 'localhost'],
      usage: 'server',
    });
    const client = await issueCertificate(ca, {
      commonName: 'kip-provider',
      organizations: ['kip'],
      usage: 'client',
    });
    const other = await issueCertificate(await createCA('another-ca'), {
      commonName: 'intruder',
      usage: 'client',
    });

    assert.deepEqual(certificateSubject(client.certPem), {
      commonName: 'kip-provider',
      organizations: ['kip'],
    });
    assert.ok(certificateExpiry(server.certPem).getTime() > Date.now() + 300 * 86400_000);

    const srv = https.createServer(
      {
        cert: server.certPem,
        key: server.keyPem,
        ca: ca.certPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (_req, res) => res.end('ok'),
    );
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as AddressInfo;
    try {
      assert.equal(await get(port, { ca: ca.certPem, cert: client.certPem, key: client.keyPem }), 200);
      await assert.rejects(get(port, { ca: ca.certPem }));
      await assert.rejects(get(port, { ca: ca.certPem, cert: other.certPem, key: other.keyPem }));
    } finally {
      srv.close();
    }
  });
});
