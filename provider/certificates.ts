import { issueCertificate, type KeyPair } from '../lib/tls.ts';

/** The common name the provider's client certificate carries; cell agents may check it. */
export const PROVIDER_CLIENT_CN = 'kip-provider';

/**
 * A cell agent's serving certificate, issued from the cluster's CA. The cell's name is its DNS SAN
 * (the provider dials it with that server name), plus its IP when known.
 */
export function cellServerCertificate(
  ca: KeyPair,
  cell: { cellName: string; address?: string },
): Promise<KeyPair> {
  return issueCertificate(ca, {
    commonName: cell.cellName,
    hosts: [cell.cellName, ...(cell.address ? [cell.address] : [])],
    usage: 'server',
  });
}

/** The provider's client certificate for mutual TLS with cell agents (one per provider start). */
export function providerClientCertificate(ca: KeyPair, clusterId: string): Promise<KeyPair> {
  return issueCertificate(ca, {
    commonName: PROVIDER_CLIENT_CN,
    organizations: [clusterId],
    usage: 'client',
  });
}

/**
 * The kubelet API's serving certificate, shaped like a kubelet's (`system:node:<node>` in
 * `system:nodes`), valid for the node name and every address the API server may dial.
 */
export function kubeletServingCertificate(
  ca: KeyPair,
  nodeName: string,
  addresses: string[],
): Promise<KeyPair> {
  return issueCertificate(ca, {
    commonName: `system:node:${nodeName}`,
    organizations: ['system:nodes'],
    hosts: [...new Set([nodeName, ...addresses])],
    usage: 'server',
  });
}
