import type { DisksClient, SnapshotsClient, ZoneOperationsClient, protos } from '@google-cloud/compute';
import type * as K8s from '@kubernetes/client-node';
import { type Command, Option } from 'commander';

/**
 * `kip backup create|list|restore`: Persistent Disk snapshots of the disk behind the provider's
 * etcd claim, and restore of a snapshot into a new disk with a PersistentVolume pre-bound to the
 * StatefulSet's claim. Documented in docs/backup-restore.md.
 */

type IOperation = protos.google.cloud.compute.v1.IOperation;
type ISnapshot = protos.google.cloud.compute.v1.ISnapshot;

/** A failure the operator can act on; main.ts prints it as one line. */
export class BackupError extends Error {
  override name = 'BackupError';
}

/** Label on every snapshot Kip makes, so `backup list` shows only Kip's. */
export const BACKUP_LABEL = 'kip-backup';
/** The StatefulSet claim template that holds etcd's data (chart/kip). */
export const ETCD_CLAIM_TEMPLATE = 'etcd-data';

export interface ComputeClients {
  disks: DisksClient;
  snapshots: SnapshotsClient;
  zoneOps: ZoneOperationsClient;
}

export interface KubeClients {
  core: K8s.CoreV1Api;
  apps: K8s.AppsV1Api;
}

/**
 * Compute clients: application default credentials in production; with `endpoint`
 * (`http://host:port`, the lab's Compute Engine emulator) plain HTTP and no credentials.
 * The client libraries load lazily: they take seconds to import, and a typo should fail at once.
 */
export async function computeClients(endpoint?: string): Promise<ComputeClients> {
  let opts: NonNullable<ConstructorParameters<typeof DisksClient>[0]> = {};
  if (endpoint) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new BackupError(`--endpoint "${endpoint}" is not a URL like http://127.0.0.1:8443`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new BackupError(`--endpoint "${endpoint}" must start with http:// or https://`);
    opts = {
      apiEndpoint: url.hostname,
      port: Number(url.port || (url.protocol === 'http:' ? 80 : 443)),
      protocol: url.protocol.slice(0, -1),
      authClient: new (await import('google-auth-library')).PassThroughClient(),
    };
  }
  const { DisksClient, SnapshotsClient, ZoneOperationsClient } = await import('@google-cloud/compute');
  return {
    disks: new DisksClient(opts),
    snapshots: new SnapshotsClient(opts),
    zoneOps: new ZoneOperationsClient(opts),
  };
}

/** Kubernetes clients from --kubeconfig, else KUBECONFIG / ~/.kube/config / in-cluster. */
export async function kubeClients(kubeconfig?: string): Promise<KubeClients> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new BackupError('no Kubernetes cluster configured (give --kubeconfig)');
  return { core: kc.makeApiClient(k8s.CoreV1Api), apps: kc.makeApiClient(k8s.AppsV1Api) };
}

/** One readable line from a client library error (gax errors carry the API's message). */
function describe(e: unknown): string {
  if (e instanceof BackupError) return e.message;
  const err = e as { code?: number | string; message?: string; body?: unknown };
  if (err && typeof err.body === 'string') {
    try {
      const status = JSON.parse(err.body) as { message?: string };
      if (status.message) return `${err.code ?? ''} ${status.message}`.trim();
    } catch {
      // not a Status body
    }
  }
  return String(err?.message ?? e).split('\n')[0]!;
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw new BackupError(`${what}: ${describe(e)}`);
  }
}

function isNotFound(e: unknown): boolean {
  const err = e as { code?: number | string };
  return err?.code === 404 || err?.code === 5 || /not ?found/i.test(String((e as Error)?.message));
}

/** Waits for a zonal operation to finish (the client never polls by itself); throws its error. */
export async function waitZoneOperation(
  zoneOps: ZoneOperationsClient,
  project: string,
  zone: string,
  op: IOperation,
  timeoutMs = 10 * 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let current = op;
  while (current.status !== 'DONE') {
    if (Date.now() > deadline)
      throw new BackupError(`operation ${op.name} did not finish within ${timeoutMs / 1000} s`);
    const [next] = await call(`waiting for operation ${op.name}`, () =>
      zoneOps.wait({ project, zone, operation: String(op.name) }),
    );
    current = next;
  }
  const err = current.error?.errors?.[0];
  if (err)
    throw new BackupError(`${current.operationType ?? 'operation'} failed: ${err.code}: ${err.message}`);
}

/** The operation a mutating call returned (`[LROperation, ...]`, whose latestResponse is the Operation). */
function operationOf(result: unknown): IOperation {
  const first = (result as Array<{ latestResponse?: IOperation } & IOperation>)[0];
  return (first?.latestResponse ?? first) as IOperation;
}

export interface DiskRef {
  project: string;
  zone: string;
  disk: string;
}

/** Parses a PD CSI volume handle `projects/P/zones/Z/disks/D`. */
export function parseVolumeHandle(handle: string): DiskRef | undefined {
  const m = /^projects\/([^/]+)\/zones\/([^/]+)\/disks\/([^/]+)$/.exec(handle);
  return m ? { project: m[1]!, zone: m[2]!, disk: m[3]! } : undefined;
}

/** Finds the Persistent Disk behind a claim: PVC → bound PV → CSI handle (or in-tree pdName). */
export async function resolveClaimDisk(
  kube: KubeClients,
  namespace: string,
  pvc: string,
  project: string,
): Promise<DiskRef> {
  let claim: K8s.V1PersistentVolumeClaim;
  try {
    claim = await kube.core.readNamespacedPersistentVolumeClaim({ name: pvc, namespace });
  } catch (e) {
    if (isNotFound(e)) throw new BackupError(`PersistentVolumeClaim ${namespace}/${pvc} not found`);
    throw new BackupError(`reading PersistentVolumeClaim ${namespace}/${pvc}: ${describe(e)}`);
  }
  const volume = claim.spec?.volumeName;
  if (!volume)
    throw new BackupError(`PersistentVolumeClaim ${namespace}/${pvc} is not bound to a volume yet`);
  const pv = await call(`reading PersistentVolume ${volume}`, () =>
    kube.core.readPersistentVolume({ name: volume }),
  );
  const handle = pv.spec?.csi?.volumeHandle;
  if (handle) {
    const ref = parseVolumeHandle(handle);
    if (!ref)
      throw new BackupError(`PersistentVolume ${volume}: volume handle "${handle}" is not a Persistent Disk`);
    return ref;
  }
  const pdName = pv.spec?.gcePersistentDisk?.pdName;
  const labels = pv.metadata?.labels ?? {};
  const zone = labels['topology.kubernetes.io/zone'] ?? labels['failure-domain.beta.kubernetes.io/zone'];
  if (pdName && zone) return { project, zone, disk: pdName };
  throw new BackupError(`PersistentVolume ${volume} is not backed by a Persistent Disk Kip can snapshot`);
}

/** A snapshot name from the disk and the time: lowercase, at most 63 characters. */
export function snapshotName(disk: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15).toLowerCase();
  return `${disk.slice(0, 63 - stamp.length - 1)}-${stamp}`.replace(/-+/g, '-');
}

export interface CreateOptions {
  project: string;
  zone?: string;
  disk?: string;
  namespace: string;
  pvc?: string;
  snapshot?: string;
}

export interface BackupRecord {
  snapshot: string;
  sourceDisk: string;
  zone: string;
  diskSizeGb: number;
  status: string;
  created: string;
}

function recordOf(s: ISnapshot): BackupRecord {
  const source = String(s.sourceDisk ?? '');
  return {
    snapshot: String(s.name),
    sourceDisk: source.split('/').pop() ?? '',
    zone: /\/zones\/([^/]+)\//.exec(source)?.[1] ?? '',
    diskSizeGb: Number(s.diskSizeGb ?? 0),
    status: String(s.status ?? ''),
    created: String(s.creationTimestamp ?? ''),
  };
}

/** Snapshots the disk (given directly, or behind --pvc) and waits until the snapshot is made. */
export async function createBackup(
  o: CreateOptions,
  compute: ComputeClients,
  kube?: () => Promise<KubeClients>,
): Promise<BackupRecord> {
  let ref: DiskRef;
  if (o.disk) {
    if (!o.zone) throw new BackupError('--disk needs --zone');
    ref = { project: o.project, zone: o.zone, disk: o.disk };
  } else if (o.pvc) {
    ref = await resolveClaimDisk(await kube!(), o.namespace, o.pvc, o.project);
    if (o.zone && o.zone !== ref.zone)
      throw new BackupError(`claim ${o.pvc} is on disk ${ref.disk} in zone ${ref.zone}, not ${o.zone}`);
  } else
    throw new BackupError('give --pvc <claim> (e.g. etcd-data-kip-provider-0) or --disk <name> with --zone');
  const name = o.snapshot ?? snapshotName(ref.disk);
  if (!/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name))
    throw new BackupError(`--snapshot "${name}" must be lowercase letters, digits and dashes, at most 63`);
  const result = await call(`snapshotting disk ${ref.disk} in ${ref.zone}`, () =>
    compute.disks.createSnapshot({
      project: ref.project,
      zone: ref.zone,
      disk: ref.disk,
      snapshotResource: {
        name,
        description: `Kip backup of ${ref.disk}${o.pvc ? ` (claim ${o.namespace}/${o.pvc})` : ''}`,
        labels: { [BACKUP_LABEL]: 'true' },
      },
    }),
  );
  await waitZoneOperation(compute.zoneOps, ref.project, ref.zone, operationOf(result));
  const [snap] = await call(`reading snapshot ${name}`, () =>
    compute.snapshots.get({ project: ref.project, snapshot: name }),
  );
  return recordOf(snap);
}

/** Kip's snapshots (labelled kip-backup=true), newest first, optionally only of one disk. */
export async function listBackups(
  o: { project: string; disk?: string },
  compute: ComputeClients,
): Promise<BackupRecord[]> {
  const [snaps] = await call('listing snapshots', () => compute.snapshots.list({ project: o.project }));
  return snaps
    .filter((s) => s.labels?.[BACKUP_LABEL] === 'true')
    .map(recordOf)
    .filter((r) => !o.disk || r.sourceDisk === o.disk)
    .sort((a, b) => b.created.localeCompare(a.created) || b.snapshot.localeCompare(a.snapshot));
}

export interface RestoreOptions {
  project: string;
  zone: string;
  snapshot: string;
  namespace: string;
  release: string;
  pvc?: string;
  disk?: string;
  storageClass?: string;
  diskType?: string;
}

export interface RestoreRecord {
  snapshot: string;
  disk: string;
  zone: string;
  persistentVolume: string;
  persistentVolumeClaim: string;
  sizeGb: number;
}

/**
 * Restores a snapshot: checks first that nothing would be overwritten (the StatefulSet is scaled
 * to 0 and its claim is gone), then makes a disk from the snapshot and a PV + PVC pre-bound to the
 * StatefulSet's claim name, so scaling back to 1 mounts the restored state.
 */
export async function restoreBackup(
  o: RestoreOptions,
  compute: ComputeClients,
  kube: KubeClients,
): Promise<RestoreRecord> {
  const sts = `${o.release}-provider`;
  const claimName = o.pvc ?? `${ETCD_CLAIM_TEMPLATE}-${sts}-0`;
  const diskName = o.disk ?? `${o.snapshot.slice(0, 54)}-restored`;
  const [snap] = await call(`reading snapshot ${o.snapshot}`, () =>
    compute.snapshots.get({ project: o.project, snapshot: o.snapshot }),
  );
  if (snap.status !== 'READY') throw new BackupError(`snapshot ${o.snapshot} is ${snap.status}, not READY`);
  const sizeGb = Number(snap.diskSizeGb ?? 0);

  // Refuse before creating anything, so a refused restore leaves nothing behind.
  let storageClass = o.storageClass;
  try {
    const set = await kube.apps.readNamespacedStatefulSet({ name: sts, namespace: o.namespace });
    const replicas = set.spec?.replicas ?? 1;
    if (replicas > 0)
      throw new BackupError(
        `StatefulSet ${o.namespace}/${sts} has ${replicas} replica(s); scale it to 0 first: kubectl scale statefulset ${sts} --namespace ${o.namespace} --replicas=0`,
      );
    storageClass ??= set.spec?.volumeClaimTemplates?.find((t) => t.metadata?.name === ETCD_CLAIM_TEMPLATE)
      ?.spec?.storageClassName;
  } catch (e) {
    if (e instanceof BackupError) throw e;
    if (!isNotFound(e)) throw new BackupError(`reading StatefulSet ${o.namespace}/${sts}: ${describe(e)}`);
  }
  try {
    await kube.core.readNamespacedPersistentVolumeClaim({ name: claimName, namespace: o.namespace });
    throw new BackupError(
      `PersistentVolumeClaim ${o.namespace}/${claimName} still exists; delete it first (its data stays on its disk): kubectl delete pvc ${claimName} --namespace ${o.namespace}`,
    );
  } catch (e) {
    if (e instanceof BackupError) throw e;
    if (!isNotFound(e))
      throw new BackupError(`reading PersistentVolumeClaim ${o.namespace}/${claimName}: ${describe(e)}`);
  }
  try {
    await kube.core.readPersistentVolume({ name: diskName });
    throw new BackupError(`PersistentVolume ${diskName} already exists; pick another --disk name`);
  } catch (e) {
    if (e instanceof BackupError) throw e;
    if (!isNotFound(e)) throw new BackupError(`reading PersistentVolume ${diskName}: ${describe(e)}`);
  }

  const result = await call(`creating disk ${diskName} from snapshot ${o.snapshot}`, () =>
    compute.disks.insert({
      project: o.project,
      zone: o.zone,
      diskResource: {
        name: diskName,
        sourceSnapshot: `projects/${o.project}/global/snapshots/${o.snapshot}`,
        sizeGb: String(sizeGb),
        ...(o.diskType ? { type: `zones/${o.zone}/diskTypes/${o.diskType}` } : {}),
        labels: { 'kip-restored-from': o.snapshot.slice(0, 63) },
      },
    }),
  );
  await waitZoneOperation(compute.zoneOps, o.project, o.zone, operationOf(result));

  const size = `${sizeGb}Gi`;
  const labels = { 'app.kubernetes.io/name': o.release, 'app.kubernetes.io/component': 'provider' };
  await call(`creating PersistentVolume ${diskName}`, () =>
    kube.core.createPersistentVolume({
      body: {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: {
          name: diskName,
          labels: { 'app.kubernetes.io/part-of': 'kip', 'kip-restored-from': o.snapshot.slice(0, 63) },
        },
        spec: {
          capacity: { storage: size },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: storageClass ?? '',
          claimRef: { namespace: o.namespace, name: claimName },
          csi: {
            driver: 'pd.csi.storage.gke.io',
            volumeHandle: `projects/${o.project}/zones/${o.zone}/disks/${diskName}`,
            fsType: 'ext4',
          },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: 'topology.gke.io/zone', operator: 'In', values: [o.zone] }] },
              ],
            },
          },
        },
      },
    }),
  );
  await call(`creating PersistentVolumeClaim ${o.namespace}/${claimName}`, () =>
    kube.core.createNamespacedPersistentVolumeClaim({
      namespace: o.namespace,
      body: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: claimName, namespace: o.namespace, labels },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: storageClass ?? '',
          volumeName: diskName,
          resources: { requests: { storage: size } },
        },
      },
    }),
  );
  return {
    snapshot: o.snapshot,
    disk: diskName,
    zone: o.zone,
    persistentVolume: diskName,
    persistentVolumeClaim: claimName,
    sizeGb,
  };
}

/** Results go to stdout (one JSON line, or the table); notes and errors to stderr. */
const out = (line: string) => process.stdout.write(`${line}\n`);

const common = (c: Command) =>
  c
    .requiredOption('--project <id>', 'Google Cloud project of the disk and snapshots')
    .option(
      '--endpoint <url>',
      'Compute Engine API endpoint (lab: the emulator, e.g. http://127.0.0.1:8443)',
    );

/** Registers `kip backup create|list|restore`. */
export function backupCommand(program: Command): void {
  const backup = program
    .command('backup')
    .description("snapshot and restore Kip's state disk (docs/backup-restore.md)");

  common(backup.command('create'))
    .description('snapshot the Persistent Disk behind the etcd claim (or a named disk)')
    .option('--namespace <ns>', 'namespace of the claim', 'default')
    .option('--pvc <claim>', 'the claim to back up, e.g. etcd-data-kip-provider-0')
    .option('--disk <name>', 'a disk name instead of --pvc (needs --zone)')
    .option('--zone <zone>', "the disk's zone")
    .option('--snapshot <name>', 'snapshot name (default: <disk>-<UTC time>)')
    .option(
      '--kubeconfig <file>',
      'kubeconfig for resolving --pvc (default: KUBECONFIG, ~/.kube/config, in-cluster)',
    )
    .action(async (o: CreateOptions & { endpoint?: string; kubeconfig?: string }) => {
      const rec = await createBackup(o, await computeClients(o.endpoint), () => kubeClients(o.kubeconfig));
      out(JSON.stringify(rec));
    });

  common(backup.command('list'))
    .description("list Kip's snapshots, newest first")
    .option('--disk <name>', 'only snapshots of this disk')
    .addOption(
      new Option('--output <format>', 'table or json (one JSON line per snapshot)')
        .choices(['table', 'json'])
        .default('table'),
    )
    .action(async (o: { project: string; disk?: string; endpoint?: string; output: string }) => {
      const recs = await listBackups(o, await computeClients(o.endpoint));
      if (o.output === 'json') {
        for (const r of recs) out(JSON.stringify(r));
        return;
      }
      const rows = [['SNAPSHOT', 'SOURCE DISK', 'ZONE', 'SIZE GB', 'STATUS', 'CREATED']].concat(
        recs.map((r) => [r.snapshot, r.sourceDisk, r.zone, String(r.diskSizeGb), r.status, r.created]),
      );
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows)
        out(
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join('  ')
            .trimEnd(),
        );
    });

  common(backup.command('restore'))
    .description("restore a snapshot into a new disk bound to the StatefulSet's etcd claim")
    .requiredOption('--snapshot <name>', 'the snapshot to restore')
    .requiredOption('--zone <zone>', 'zone for the new disk (where the provider pod runs)')
    .option('--namespace <ns>', "the instance's namespace", 'default')
    .option('--release <name>', "the instance's name (the Application name)", 'kip')
    .option('--pvc <claim>', 'claim name to bind (default: etcd-data-<release>-provider-0)')
    .option('--disk <name>', 'name of the new disk and PV (default: <snapshot>-restored)')
    .option('--storage-class <name>', "storage class of the PV and claim (default: the StatefulSet's)")
    .option('--disk-type <type>', 'disk type, e.g. pd-ssd (default: the zone default)')
    .option('--kubeconfig <file>', 'kubeconfig (default: KUBECONFIG, ~/.kube/config, in-cluster)')
    .action(async (o: RestoreOptions & { endpoint?: string; kubeconfig?: string }) => {
      const rec = await restoreBackup(o, await computeClients(o.endpoint), await kubeClients(o.kubeconfig));
      out(JSON.stringify(rec));
      console.error(
        `restored: scale the provider back up with: kubectl scale statefulset ${o.release}-provider --namespace ${o.namespace} --replicas=1`,
      );
    });
}
