import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('issues certificates openssl verifies, with the names, addresses and usages asked for', async () => {
    const ca = await createCA('kip-test-ca');
    const leaf = await issueCertificate(ca, {
      commonName: 'kip-cell-1',
      organizations: ['group-a', 'group-b'],
      hosts: ['kip-cell-1', '10.128.0.7', 'fd00::1:2'],
      usage: 'both',
    });
    const cert = new X509Certificate(leaf.certPem);
    const caCert = new X509Certificate(ca.certPem);
    assert.ok(cert.checkIssued(caCert));
    assert.ok(cert.verify(caCert.publicKey));
    assert.equal(cert.ca, false);
    assert.equal(cert.subjectAltName, 'DNS:kip-cell-1, IP Address:10.128.0.7, IP Address:FD00:0:0:0:0:0:1:2');
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.deepEqual(certificateSubject(leaf.certPem), {
      commonName: 'kip-cell-1',
      organizations: ['group-a', 'group-b'],
    });
    const dir = mkdtempSync(join(tmpdir(), 'kip-tls-'));
    try {
      writeFileSync(join(dir, 'ca.pem'), ca.certPem);
      writeFileSync(join(dir, 'leaf.pem'), leaf.certPem);
      for (const purpose of ['sslserver', 'sslclient']) {
        const out = execFileSync(
          'openssl',
          ['verify', '-purpose', purpose, '-CAfile', 'ca.pem', 'leaf.pem'],
          {
            cwd: dir,
            encoding: 'utf8',
          },
        );
        assert.equal(out.trim(), 'leaf.pem: OK');
      }
      const text = execFileSync('openssl', ['x509', '-in', 'leaf.pem', '-noout', '-text'], {
        cwd: dir,
        encoding: 'utf8',
      });
      assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
      assert.match(text, /Key Usage: critical\s+Digital Signature, Key Encipherment/);
      assert.match(text, /Authority Key Identifier:/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
