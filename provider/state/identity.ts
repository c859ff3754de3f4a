import { randomBytes } from 'node:crypto';
import type { Namespace } from 'etcd3';
import { createCA, type KeyPair } from '../../lib/tls.ts';

const CLUSTER_ID_KEY = 'cluster/id';
const CA_KEY = 'ca';

/** The configured cluster id differs from the one stored; changing it would orphan every cell. */
export class ClusterIdMismatchError extends Error {
  constructor(
    readonly configured: string,
    readonly stored: string,
  ) {
    super(
      `config clusterId "${configured}" differs from the cluster id "${stored}" stored in etcd; ` +
        `set clusterId to "${stored}" or remove it from the config`,
    );
    this.name = 'ClusterIdMismatchError';
  }
}

/** A new id: `kip-` and 10 characters of [a-z0-9], valid in GCE names and labels. */
export function newClusterId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return `kip-${Array.from(randomBytes(10), (b) => alphabet[b % alphabet.length]).join('')}`;
}

/**
 * The cluster's identity, created once: the configured id on first start (else a generated one),
 * the stored one afterwards. Concurrent first starts agree, because only one create wins.
 */
export async function ensureClusterId(ns: Namespace, configured?: string): Promise<string> {
  const wanted = configured || newClusterId();
  const r = await ns
    .if(CLUSTER_ID_KEY, 'Create', '==', 0)
    .then(ns.put(CLUSTER_ID_KEY).value(wanted))
    .else(ns.get(CLUSTER_ID_KEY))
    .commit();
  const stored = r.succeeded ? wanted : r.responses[0]!.response_range!.kvs[0]!.value.toString();
  if (configured && configured !== stored) throw new ClusterIdMismatchError(configured, stored);
  return stored;
}

/**
 * The CA that signs cell, provider and kubelet API certificates, created once and stored with its
 * key as one value (so a reader never sees a certificate without its key).
 */
export async function ensureCA(ns: Namespace, commonName = 'Kip cell CA'): Promise<KeyPair> {
  const existing = (await ns.get(CA_KEY).json()) as KeyPair | null;
  if (existing) return existing;
  const ca = await createCA(commonName);
  const r = await ns
    .if(CA_KEY, 'Create', '==', 0)
    .then(ns.put(CA_KEY).value(JSON.stringify(ca)))
    .else(ns.get(CA_KEY))
    .commit();
  return r.succeeded ? ca : (JSON.parse(r.responses[0]!.response_range!.kvs[0]!.value.toString()) as KeyPair);
}
