import { Command, InvalidArgumentError } from 'commander';

/** The controller's command line (the chart passes --namespace, --lease-name, --mount-path and the share). */
export interface ImageCacheFlags {
  namespace: string;
  leaseName: string;
  /** Where the share is (or gets) mounted; the cache's ImageStore root. */
  mountPath: string;
  nfsServer?: string;
  nfsPath?: string;
  /** `projects/P/locations/L/instances/I`, resolved through the Filestore API. */
  filestoreInstance?: string;
  /** Filestore API endpoint for the lab's emulator (`http://127.0.0.1:PORT`); default the real API. */
  filestoreEndpoint?: string;
  /** Kubeconfig file; default the in-cluster service account. */
  kubeconfig?: string;
  metricsHost: string;
  metricsPort: number;
  /** Images no pod has used for this long are pruned. */
  pruneAfterMs: number;
  pruneIntervalMs: number;
  leaseDurationMs: number;
  /** This replica's identity in the Lease (default the hostname, i.e. the pod name). */
  identity: string;
  insecureRegistries: string[];
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `500ms`, `2s`, `10m`, `3h`, `7d` into milliseconds. */
export function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`"${v}" is not a duration such as 500ms, 2s, 10m, 3h or 7d`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

function port(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError(`"${v}" is not a port number 0-65535`);
  return n;
}

const INSTANCE_RE = /^projects\/[^/]+\/locations\/[^/]+\/instances\/[a-z][a-z0-9-]{0,62}$/;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A flag error: main prints `image-cache: <message>` and exits 2. */
export class FlagError extends Error {}

/**
 * Parses argv. Throws FlagError (or commander's own error, already printed) naming the bad flag.
 */
export function parseFlags(
  argv: string[],
  hostname = process.env.HOSTNAME ?? 'image-cache',
): ImageCacheFlags {
  const program = new Command('image-cache')
    .description('Keeps the images pods use on an NFS (Filestore) share that cells mount read-only')
    .option('--namespace <ns>', "namespace of the controller's Lease")
    .option('--lease-name <name>', 'Lease that elects the one replica that writes the cache')
    .option('--mount-path <dir>', 'where the share is mounted: the cache root')
    .option('--nfs-server <host>', 'NFS server holding the cache (with --nfs-path)')
    .option('--nfs-path <path>', 'exported path on --nfs-server')
    .option('--filestore-instance <name>', 'projects/P/locations/L/instances/I holding the cache')
    .option('--filestore-endpoint <url>', 'Filestore API endpoint (the lab emulator); default the real API')
    .option('--kubeconfig <file>', 'kubeconfig; default the in-cluster service account')
    .option('--metrics-host <host>', 'address /metrics listens on', '0.0.0.0')
    .option('--metrics-port <port>', 'port /metrics listens on (0: any)', port, 9090)
    .option(
      '--prune-after <duration>',
      'prune images no pod has used for this long',
      parseDuration,
      7 * 86_400_000,
    )
    .option('--prune-interval <duration>', 'how often pruning runs', parseDuration, 3_600_000)
    .option(
      '--lease-duration <duration>',
      'how long a leader holds the Lease without renewing',
      parseDuration,
      15_000,
    )
    .option('--identity <id>', 'holder identity in the Lease (default the hostname)', hostname)
    .option(
      '--insecure-registry <host:port>',
      'registry reached over plain http (repeatable)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .parse(argv, { from: 'user' });
  const o = program.opts<Record<string, unknown>>();
  const str = (k: string): string | undefined => {
    const v = o[k] as string | undefined;
    return v === undefined || v === '' ? undefined : v;
  };
  const need = (k: string, flag: string, why: string): string => {
    const v = str(k);
    if (v === undefined) throw new FlagError(`${flag} is required: ${why}`);
    return v;
  };
  const namespace = need('namespace', '--namespace', "the Lease's namespace");
  if (!DNS_LABEL_RE.test(namespace))
    throw new FlagError(`--namespace "${namespace}" is not a namespace name`);
  const leaseName = need('leaseName', '--lease-name', 'the Lease electing the writing replica');
  if (!DNS_SUBDOMAIN_RE.test(leaseName) || leaseName.length > 253)
    throw new FlagError(`--lease-name "${leaseName}" is not a valid object name`);
  const mountPath = need('mountPath', '--mount-path', 'where the cache share is mounted');
  if (!mountPath.startsWith('/')) throw new FlagError(`--mount-path "${mountPath}" must be an absolute path`);
  const nfsServer = str('nfsServer');
  const nfsPath = str('nfsPath');
  const filestoreInstance = str('filestoreInstance');
  if (nfsServer && filestoreInstance)
    throw new FlagError('--nfs-server and --filestore-instance are exclusive: give one share');
  if (!nfsServer && !filestoreInstance)
    throw new FlagError(
      '--nfs-server (with --nfs-path) or --filestore-instance is required: the cache share',
    );
  if (nfsServer && !nfsPath) throw new FlagError('--nfs-path is required with --nfs-server');
  if (nfsPath && !nfsServer) throw new FlagError('--nfs-server is required with --nfs-path');
  if (nfsPath && !nfsPath.startsWith('/'))
    throw new FlagError(`--nfs-path "${nfsPath}" must be an absolute path`);
  if (filestoreInstance && !INSTANCE_RE.test(filestoreInstance))
    throw new FlagError(
      `--filestore-instance "${filestoreInstance}" is not of the form projects/P/locations/L/instances/I`,
    );
  const filestoreEndpoint = str('filestoreEndpoint');
  if (filestoreEndpoint) {
    let u: URL | undefined;
    try {
      u = new URL(filestoreEndpoint);
    } catch {
      u = undefined;
    }
    if (!u || !/^https?:$/.test(u.protocol))
      throw new FlagError(`--filestore-endpoint "${filestoreEndpoint}" is not an http(s) URL`);
  }
  const pruneAfterMs = o.pruneAfter as number;
  const pruneIntervalMs = o.pruneInterval as number;
  const leaseDurationMs = o.leaseDuration as number;
  if (pruneIntervalMs <= 0) throw new FlagError('--prune-interval must be above zero');
  if (leaseDurationMs < 1000) throw new FlagError('--lease-duration must be at least 1s');
  return {
    namespace,
    leaseName,
    mountPath,
    nfsServer,
    nfsPath,
    filestoreInstance,
    filestoreEndpoint,
    kubeconfig: str('kubeconfig'),
    metricsHost: o.metricsHost as string,
    metricsPort: o.metricsPort as number,
    pruneAfterMs,
    pruneIntervalMs,
    leaseDurationMs,
    identity: o.identity as string,
    insecureRegistries: o.insecureRegistry as string[],
  };
}
