import { readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { PodDnsConfig } from '../lib/cell-agent-api.ts';

/** The first non-loopback IPv4 address of the agent's network namespace (the cell's address). */
export function detectPodIP(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

export interface PodNetworkFiles {
  hosts: string;
  hostname: string;
  resolvConf: string;
}

/** /etc/hosts as the kubelet writes it for a pod that is not on the host network. */
function hostsFile(pod: V1Pod, hostname: string, podIP: string | undefined): string {
  const lines = [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  const sub = pod.spec?.subdomain;
  if (podIP)
    lines.push(
      sub
        ? `${podIP}\t${hostname}.${sub}.${pod.metadata?.namespace ?? 'default'}.svc.cluster.local\t${hostname}`
        : `${podIP}\t${hostname}`,
    );
  const aliases = pod.spec?.hostAliases ?? [];
  if (aliases.length > 0) {
    lines.push('', '# Entries added by HostAliases.');
    for (const a of aliases) lines.push(`${a.ip}\t${(a.hostnames ?? []).join('\t')}`);
  }
  return `${lines.join('\n')}\n`;
}

/** resolv.conf from the provider's DNS settings, the pod's dnsConfig, or the cell's own file. */
export function resolvConf(pod: V1Pod, dns: PodDnsConfig | undefined): string {
  let nameservers = dns?.nameservers ?? [];
  let searches = dns?.searches ?? [];
  let options = dns?.options ?? [];
  if (!dns && pod.spec?.dnsPolicy !== 'None') {
    let host = '';
    try {
      host = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      // no resolv.conf on the cell: the pod gets only what its dnsConfig says
    }
    for (const line of host.split('\n')) {
      const [key, ...rest] = line.trim().split(/\s+/);
      if (key === 'nameserver' && rest[0]) nameservers.push(rest[0]);
      if (key === 'search') searches = rest;
      if (key === 'options') options = rest.map((o) => ({ name: o.split(':')[0]!, value: o.split(':')[1] }));
    }
  }
  const extra = pod.spec?.dnsConfig;
  if (extra) {
    nameservers = [...nameservers, ...(extra.nameservers ?? [])];
    searches = [...searches, ...(extra.searches ?? [])];
    const byName = new Map(options.map((o) => [o.name, o]));
    for (const o of extra.options ?? []) if (o.name) byName.set(o.name, { name: o.name, value: o.value });
    options = [...byName.values()];
  }
  const lines: string[] = [];
  if (searches.length > 0) lines.push(`search ${[...new Set(searches)].join(' ')}`);
  for (const ns of [...new Set(nameservers)].slice(0, 3)) lines.push(`nameserver ${ns}`);
  if (options.length > 0)
    lines.push(
      `options ${options.map((o) => (o.value !== undefined ? `${o.name}:${o.value}` : o.name)).join(' ')}`,
    );
  return `${lines.join('\n')}\n`;
}

/** Writes the pod's hosts, hostname and resolv.conf into `dir`; every container bind-mounts them. */
export function writePodNetworkFiles(
  dir: string,
  pod: V1Pod,
  hostname: string,
  podIP: string | undefined,
  dns: PodDnsConfig | undefined,
): PodNetworkFiles {
  const files = {
    hosts: join(dir, 'hosts'),
    hostname: join(dir, 'hostname'),
    resolvConf: join(dir, 'resolv.conf'),
  };
  writeFileSync(files.hosts, hostsFile(pod, hostname, podIP));
  writeFileSync(files.hostname, `${hostname}\n`);
  writeFileSync(files.resolvConf, resolvConf(pod, dns));
  return files;
}
