import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DisksClient, ZoneOperationsClient } from '@google-cloud/compute';
import { PassThroughClient } from 'google-auth-library';
import { startNpmScript, type StartedProcess } from '../support/process.ts';
import {
  BackupError,
  computeClients,
  createBackup,
  listBackups,
  waitZoneOperation,
  type CreateOptions,
} from '../../provider/cli/backup.ts';
import { root } from './render.ts';

const project = 'kip-test-project';
const zone = 'us-central1-a';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npm run -s kip -- ...args`, as an operator runs it. */
export function kip(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn('npm', ['run', '-s', 'kip', '--', ...args], {
      cwd: root,
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr: stderr.replace(/^npm warn .*\n/gm, '') }));
  });
}

/** The Compute Engine emulator with a state dir of our own, and helpers to reach disk contents. */
export class GceLab {
  emu!: StartedProcess;
  url = '';
  disks!: DisksClient;
  zoneOps!: ZoneOperationsClient;
  constructor(readonly dir: string) {}

  async start(): Promise<void> {
    this.emu = await startNpmScript('gce-emulator', [
      '--port',
      '0',
      '--project',
      project,
      '--state-dir',
      join(this.dir, 'gce'),
    ]);
    this.url = String(this.emu.ready.url);
    const u = new URL(this.url);
    const opts = {
      apiEndpoint: u.hostname,
      port: Number(u.port),
      protocol: 'http',
      authClient: new PassThroughClient(),
    };
    this.disks = new DisksClient(opts);
    this.zoneOps = new ZoneOperationsClient(opts);
  }

  /** A blank disk, as the PD CSI driver provisions one for a claim. */
  async createDisk(name: string, sizeGb = 10): Promise<void> {
    const [op] = await this.disks.insert({ project, zone, diskResource: { name, sizeGb: String(sizeGb) } });
    await waitZoneOperation(this.zoneOps, project, zone, (op as { latestResponse: object }).latestResponse);
  }

  /** Where the emulator keeps a disk's content (its admin API says). */
  async diskDir(name: string): Promise<string> {
    const r = await fetch(`${this.url}/admin/disks/${zone}/${name}`);
    const text = await r.text();
    assert.equal(r.status, 200, `disk ${name}: ${text}`);
    return (JSON.parse(text) as { dir: string }).dir;
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
  let dir: string;
  let lab: GceLab;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kip-backup-'));
    lab = new GceLab(dir);
    await lab.start();
    await lab.createDisk('pvc-etcd-data-1');
    await lab.writeState('pvc-etcd-data-1', 'state-v1');
  });
  after(async () => {
    await lab?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('create snapshots a named disk and prints one JSON line; list shows only Kip snapshots', async () => {
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

    const listed = await kip([
      'backup',
      'list',
      '--project',
      project,
      '--endpoint',
      lab.url,
      '--output',
      'json',
    ]);
    assert.equal(listed.code, 0, listed.stderr);
    const names = listed.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { snapshot: string }).snapshot);
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
      [
        [
          'backup',
          'create',
          '--project',
          project,
          '--zone',
          zone,
          '--disk',
          'no-such-disk',
          '--endpoint',
          lab.url,
        ],
        /^kip: snapshotting disk no-such-disk in us-central1-a: .*not found/i,
      ],
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
