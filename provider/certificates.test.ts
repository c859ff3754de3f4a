import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { certificateSubject, createCA } from '../lib/tls.ts';
import {
  cellServerCertificate,
  kubeletServingCertificate,
  providerClientCertificate,
} from './certificates.ts';

describe('provider certificates', () => {
  it('a cell server certificate and the provider client certificate complete mutual TLS by cell name', async () => {
    const ca = await createCA('Kip cell CA');
    const cell = await cellServerCertificate(ca, {
      cellName: 'kip-abc-0123456789abcdef',
      address: '198.18.0.9',
    });
    const client = await providerClientCertificate(ca, 'kip-abc');
    assert.deepEqual(certificateSubject(client.certPem), {
      commonName: 'kip-provider',
      organizations: ['kip-abc'],
    });
    const san = new X509Certificate(cell.certPem).subjectAltName ?? '';
    assert.match(san, /DNS:kip-abc-0123456789abcdef/);
    assert.match(san, /IP Address:198.18.0.9/);

    const srv = createServer(
      { cert: cell.certPem, key: cell.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
      (req, res) => res.end((req.socket as TLSSocket).getPeerCertificate().subject.CN),
    );
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    try {
      const body = await new Promise<string>((resolve, reject) => {
        request(
          {
            host: '127.0.0.1',
            port: (srv.address() as AddressInfo).port,
            servername: 'kip-abc-0123456789abcdef',
            ca: ca.certPem,
            cert: client.certPem,
            key: client.keyPem,
          },
          (res) => {
            let b = '';
            res.on('data', (d: Buffer) => (b += d.toString()));
            res.on('end', () => resolve(b));
          },
        )
          .on('error', reject)
          .end();
      });
      assert.equal(body, 'kip-provider');
    } finally {
      srv.close();
    }
  });

  it('the kubelet serving certificate looks like a kubelet’s', async () => {
    const ca = await createCA('Kip cell CA');
    const cert = await kubeletServingCertificate(ca, 'kip', ['10.0.0.5', 'kip']);
    assert.deepEqual(certificateSubject(cert.certPem), {
      commonName: 'system:node:kip',
      organizations: ['system:nodes'],
    });
    const x = new X509Certificate(cert.certPem);
    assert.match(x.subjectAltName ?? '', /DNS:kip, IP Address:10.0.0.5/);
    assert.ok(x.checkIssued(new X509Certificate(ca.certPem)));
  });
});
