import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DisksClient, ZoneOperationsClient } from '@google-cloud/compute';
import { startKubeEmulator, type KubeEmulatorHandle } from '../support/kube.ts';
import { startGceEmulator, type GceEmulator } from '../support/gce.ts';
import {
  BackupError,
  computeClients,
  createBackup,
  kubeClients,
  listBackups,
  restoreBackup,
  waitZoneOperation,
  type CreateOptions,
} from '../../provider/cli/backup.ts';
import { renderChart, runCommand, type CommandResult } from './render.ts';

const project = 'kip-test-project';
const zone = 'us-central1-a';

/** `npm run -s kip -- ...args`, as an operator runs it. */
async function kip(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CommandResult> {
  const r = await runCommand('npm', ['run', '-s', 'kip', '--', ...args], env);
  return { ...r, stderr: r.stderr.replace(/^npm warn .*\n/gm, '') };
}

/** The Compute Engine emulator (test/support/gce.ts), its disk clients, and helpers to reach disk contents. */
export class GceLab {
  emu!: GceEmulator;
  url = '';
  disks!: DisksClient;
  zoneOps!: ZoneOperationsClient;

  async start(): Promise<void> {
    this.emu = await startGceEmulator({ project });
    this.url = `http://${this.emu.host}:${this.emu.port}`;
    this.disks = new DisksClient(this.emu.clientOptions);
    this.zoneOps = new ZoneOperationsClient(this.emu.clientOptions);
  }

  /** A blank disk, as the PD CSI driver provisions one for a claim. */
  async createDisk(name: string, sizeGb = 10): Promise<void> {
    const [op] = await this.disks.insert({ project, zone, diskResource: { name, sizeGb: String(sizeGb) } });
    await waitZoneOperation(this.zoneOps, project, zone, (op as { latestResponse: object }).latestResponse);
  }

  /** Where the emulator keeps a disk's content (its admin API says). */
  async diskDir(name: string): Promise<string> {
    return (await this.emu.admin.disk(zone, name)).dir;
  }

  async writeState(disk: string, text: string): Promise<void> {
    const d = join(await this.diskDir(disk), 'member');
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'db'), text);
  }

  async readState(disk: string): Promise<string> {
    return readFileSync(join(await this.diskDir(disk), 'member', 'db'), 'utf8');
  }

  async stop(): Promise<void> {
    await this.disks?.close();
    await this.zoneOps?.close();
    await this.emu?.stop();
  }
}

describe('kip backup against the Compute Engine emulator', function () {
  this.timeout(120000);
  let lab: GceLab;

  before(async () => {
    lab = new GceLab();
    await lab.start();
    await lab.createDisk('pvc-etcd-data-1');
    await lab.writeState('pvc-etcd-data-1', 'state-v1');
  });
  after(async () => {
    await lab?.stop();
  });

  it('create snapshots a named disk and prints one JSON line; list (a table) shows only Kip snapshots', async () => {
    const created = await kip([
      'backup',
      'create',
      '--project',
      project,
      '--zone',
      zone,
      '--disk',
      'pvc-etcd-data-1',
      '--snapshot',
      'kip-backup-1',
      '--endpoint',
      lab.url,
    ]);
    assert.equal(created.code, 0, created.stderr);
    const rec = JSON.parse(created.stdout) as Record<string, unknown>;
    assert.deepEqual(
      {
        snapshot: rec.snapshot,
        sourceDisk: rec.sourceDisk,
        zone: rec.zone,
        status: rec.status,
        diskSizeGb: rec.diskSizeGb,
      },
      { snapshot: 'kip-backup-1', sourceDisk: 'pvc-etcd-data-1', zone, status: 'READY', diskSizeGb: 10 },
    );

    // A snapshot someone else made is not Kip's, so list leaves it out.
    const [op] = await lab.disks.createSnapshot({
      project,
      zone,
      disk: 'pvc-etcd-data-1',
      snapshotResource: { name: 'someone-elses' },
    });
    await waitZoneOperation(lab.zoneOps, project, zone, (op as { latestResponse: object }).latestResponse);
    const compute = await computeClients(lab.url);
    const auto = await createBackup(
      { project, zone, disk: 'pvc-etcd-data-1', namespace: 'default' },
      compute,
    );
    assert.match(auto.snapshot, /^pvc-etcd-data-1-\d{8}-\d{6}$/);

    const names = (await listBackups({ project }, compute)).map((r) => r.snapshot);
    assert.deepEqual(names.sort(), ['kip-backup-1', auto.snapshot].sort());

    const table = await kip([
      'backup',
      'list',
      '--project',
      project,
      '--endpoint',
      lab.url,
      '--disk',
      'pvc-etcd-data-1',
    ]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^SNAPSHOT\s+SOURCE DISK\s+ZONE\s+SIZE GB\s+STATUS\s+CREATED\n/);
    assert.match(table.stdout, /kip-backup-1\s+pvc-etcd-data-1\s+us-central1-a\s+10\s+READY/);
    assert.deepEqual(await listBackups({ project, disk: 'another-disk' }, compute), []);
  });

  it('refuses bad input with one line and a non-zero exit', async () => {
    // Through the command line: the line an operator sees.
    const cli: Array<[string[], RegExp]> = [
      [['backup', 'list', '--endpoint', lab.url], /^error: required option '--project <id>' not specified/],
      [
        ['backup', 'list', '--project', project, '--endpoint', 'localhost:1'],
        /^kip: --endpoint "localhost:1" must start with http/,
      ],
    ];
    for (const [args, expected] of cli) {
      const r = await kip(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, expected, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    // The same errors, cheaper, straight from the functions the command calls.
    const compute = await computeClients(lab.url);
    const base = { project, namespace: 'default' };
    const cases: Array<[CreateOptions, RegExp]> = [
      [base, /^give --pvc <claim>/],
      [
        { ...base, zone, disk: 'no-such-disk' },
        /^snapshotting disk no-such-disk in us-central1-a: .*not found/i,
      ],
      [{ ...base, disk: 'pvc-etcd-data-1' }, /^--disk needs --zone/],
      [
        { ...base, zone, disk: 'pvc-etcd-data-1', snapshot: 'Bad_Name' },
        /^--snapshot "Bad_Name" must be lowercase/,
      ],
      [
        { ...base, zone, disk: 'pvc-etcd-data-1', snapshot: 'kip-backup-1' },
        /^snapshotting disk .*already exists/i,
      ],
    ];
    for (const [opts, expected] of cases)
      await assert.rejects(
        createBackup(opts, compute),
        (e: Error) => e instanceof BackupError && expected.test(e.message) && !e.message.includes('\n'),
      );
  });
});

describe('kip backup of the etcd claim and restore into the StatefulSet claim (Compute and Kubernetes emulators)', function () {
  this.timeout(120000);
  const ns = 'kip-system';
  const claim = 'etcd-data-kip-provider-0';
  let lab: GceLab;
  let kube: KubeEmulatorHandle;
  let snapshot: string;

  const apply = (objs: object[]) =>
    kube.kubectlOk(['apply', '-f', '-'], { input: objs.map((o) => `---\n${JSON.stringify(o)}\n`).join('') });
  const getJson = async <T>(args: string[]): Promise<T> =>
    JSON.parse(await kube.kubectlOk([...args, '-o', 'json'])) as T;

  before(async () => {
    lab = new GceLab();
    [kube] = await Promise.all([startKubeEmulator(), lab.start()]);
    // What GKE has after install: the disk the CSI driver made, its PV, the bound claim, the StatefulSet.
    await lab.createDisk('pvc-0a1b2c');
    await lab.writeState('pvc-0a1b2c', 'cells: 3, ca: original');
    const sts = renderChart({ namespace: ns })
      .filter((o) => o.obj.kind === 'StatefulSet')
      .map((o) => o.obj);
    await apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: 'pvc-0a1b2c' },
        spec: {
          capacity: { storage: '10Gi' },
          accessModes: ['ReadWriteOnce'],
          storageClassName: 'kip-system-kip-etcd-persistence-storageclass',
          claimRef: { namespace: ns, name: claim },
          csi: {
            driver: 'pd.csi.storage.gke.io',
            volumeHandle: `projects/${project}/zones/${zone}/disks/pvc-0a1b2c`,
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: claim, namespace: ns, labels: { 'app.kubernetes.io/name': 'kip' } },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: 'kip-system-kip-etcd-persistence-storageclass',
          volumeName: 'pvc-0a1b2c',
          resources: { requests: { storage: '10Gi' } },
        },
      },
      ...sts.map((s) => ({ ...s, metadata: { ...s.metadata, namespace: ns } })),
    ]);
  });
  after(async () => {
    await Promise.all([lab?.stop(), kube?.stop()]);
  });

  it('create resolves the claim to its Persistent Disk and snapshots it', async () => {
    const r = await kip([
      'backup',
      'create',
      '--project',
      project,
      '--namespace',
      ns,
      '--pvc',
      claim,
      '--endpoint',
      lab.url,
      '--kubeconfig',
      kube.kubeconfigPath,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const rec = JSON.parse(r.stdout) as {
      snapshot: string;
      sourceDisk: string;
      zone: string;
      status: string;
    };
    assert.equal(rec.sourceDisk, 'pvc-0a1b2c');
    assert.equal(rec.zone, zone);
    assert.equal(rec.status, 'READY');
    snapshot = rec.snapshot;
    // The state moves on after the backup.
    await lab.writeState('pvc-0a1b2c', 'cells: 5, ca: original');

    const kc = await kubeClients(kube.kubeconfigPath);
    await assert.rejects(
      createBackup(
        { project, namespace: ns, pvc: 'etcd-data-nope-0' },
        await computeClients(lab.url),
        async () => kc,
      ),
      /PersistentVolumeClaim kip-system\/etcd-data-nope-0 not found/,
    );
  });

  it('restore refuses while the StatefulSet runs or the claim exists, and creates nothing then', async () => {
    const compute = await computeClients(lab.url);
    const kc = await kubeClients(kube.kubeconfigPath);
    const opts = { project, zone, snapshot, namespace: ns, release: 'kip' };
    await assert.rejects(
      restoreBackup(opts, compute, kc),
      /StatefulSet kip-system\/kip-provider has 1 replica\(s\); scale it to 0 first/,
    );
    // What `kubectl scale --replicas=0` does (the emulator serves no scale subresource).
    await kube.kubectlOk([
      'patch',
      'statefulset',
      'kip-provider',
      '--namespace',
      ns,
      '--type=merge',
      '-p',
      '{"spec":{"replicas":0}}',
    ]);
    await assert.rejects(
      restoreBackup(opts, compute, kc),
      /PersistentVolumeClaim kip-system\/etcd-data-kip-provider-0 still exists; delete it first/,
    );
    await assert.rejects(
      restoreBackup({ ...opts, disk: 'pvc-0a1b2c' }, compute, kc),
      /PersistentVolumeClaim kip-system\/etcd-data-kip-provider-0 still exists/,
    );
    await assert.rejects(
      restoreBackup({ ...opts, pvc: 'etcd-data-other-0', disk: 'pvc-0a1b2c' }, compute, kc),
      /PersistentVolume pvc-0a1b2c already exists; pick another --disk name/,
    );
    await assert.rejects(
      restoreBackup({ ...opts, snapshot: 'no-such-snapshot' }, compute, kc),
      /reading snapshot no-such-snapshot: .*not found/i,
    );
    const disk = await fetch(`${lab.url}/admin/disks/${zone}/${snapshot.slice(0, 54)}-restored`);
    assert.equal(disk.status, 404, 'a refused restore leaves no disk behind');
    await disk.text();
  });

  it('restore makes a disk from the snapshot and a PV + claim bound for the StatefulSet', async () => {
    await kube.kubectlOk(['delete', 'pvc', claim, '--namespace', ns]);
    const r = await kip([
      'backup',
      'restore',
      '--project',
      project,
      '--zone',
      zone,
      '--snapshot',
      snapshot,
      '--namespace',
      ns,
      '--release',
      'kip',
      '--disk',
      'kip-restored-1',
      '--endpoint',
      lab.url,
      '--kubeconfig',
      kube.kubeconfigPath,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      snapshot,
      disk: 'kip-restored-1',
      zone,
      persistentVolume: 'kip-restored-1',
      persistentVolumeClaim: claim,
      sizeGb: 10,
    });
    assert.match(r.stderr, /kubectl scale statefulset kip-provider --namespace kip-system --replicas=1/);
    // The restored disk holds the state as it was at the backup, not the later one.
    assert.equal(await lab.readState('kip-restored-1'), 'cells: 3, ca: original');
    assert.equal(await lab.readState('pvc-0a1b2c'), 'cells: 5, ca: original');

    const pv = await getJson<{ spec: Record<string, any> }>(['get', 'pv', 'kip-restored-1']); // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(pv.spec.csi.volumeHandle, `projects/${project}/zones/${zone}/disks/kip-restored-1`);
    assert.deepEqual(
      { namespace: pv.spec.claimRef.namespace, name: pv.spec.claimRef.name },
      { namespace: ns, name: claim },
    );
    assert.equal(
      pv.spec.storageClassName,
      'kip-system-kip-etcd-persistence-storageclass',
      "the StatefulSet template's class",
    );
    assert.equal(pv.spec.persistentVolumeReclaimPolicy, 'Retain');
    const pvc = await getJson<{ spec: Record<string, any> }>(['get', 'pvc', claim, '--namespace', ns]); // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(pvc.spec.volumeName, 'kip-restored-1');
    assert.equal(pvc.spec.resources.requests.storage, '10Gi');
  });
});
