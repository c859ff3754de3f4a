import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../lib/log.ts';
import { AddressPool, blockOf, type AddressBlock } from './address-pool.ts';
import type { CellBoot, CellInfo, Hypervisor } from './hypervisor.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** Where emulator processes record which address block and bridge they own. */
export const LOCK_DIR = '/run/kip-gce-emulator';

/** Block 0 is the lab's canonical 198.18.0.0/15; further emulators on the host get /20s of 198.19/16. */
export function candidateBlock(k: number): AddressBlock {
  return k === 0 ? blockOf('198.18.0.0/15') : blockOf(`198.19.${(k - 1) * 16}.0/20`);
}
const MAX_BLOCKS = 17;

/** Runs a command; rejects with its stderr when it fails. */
export function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0
        ? resolvePromise(out)
        : reject(new Error(`${cmd} ${args.join(' ')}: ${err.trim() || `exit ${code}`}`)),
    );
    if (p.stdin) {
      // A command that fails early closes its stdin; its exit status reports the failure.
      p.stdin.on('error', () => undefined);
      p.stdin.end(input);
    }
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Lock {
  pid: number;
  bridge: string;
  nsPrefix: string;
}

interface Cell {
  info: CellInfo;
  ip: string;
  booting?: Promise<void>;
  proc?: ChildProcess;
  exited?: Promise<void>;
}

/**
 * The netns hypervisor: every RUNNING instance is a network namespace with the instance's
 * networkIP on a veth attached to a bridge this process owns, running the real cell agent (or a
 * configured boot command) under `nsenter --net`.
 */
export class NetnsHypervisor implements Hypervisor {
  readonly kind = 'netns' as const;
  block!: AddressBlock;
  pool!: AddressPool;
  bridge!: string;
  private nsPrefix!: string;
  private lockPath?: string;
  private seq = 0;
  private readonly cells = new Map<string, Cell>();
  private readonly tag = process.pid.toString(36);

  private constructor(
    private readonly opts: {
      stateDir: string;
      bootCommand: () => string[];
      agentEntry: () => string;
      stopGraceMs: () => number;
      log: Logger;
    },
  ) {}

  /** Claims an address block and creates the bridge. */
  static async create(opts: NetnsHypervisor['opts']): Promise<NetnsHypervisor> {
    const h = new NetnsHypervisor(opts);
    await h.claim();
    return h;
  }

  private async addressesInUse(): Promise<Set<string>> {
    const json = JSON.parse(await run('ip', ['-j', 'addr', 'show'])) as {
      addr_info?: { local?: string }[];
    }[];
    return new Set(json.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')));
  }

  /** Removes the namespaces and bridges of every emulator that died without tearing down. */
  private async sweepStale(): Promise<void> {
    for (const file of readdirSync(LOCK_DIR).filter((f) => /^block-\d+\.json$/.test(f))) {
      const path = join(LOCK_DIR, file);
      let owner: Lock | undefined;
      try {
        owner = JSON.parse(readFileSync(path, 'utf8')) as Lock;
      } catch {
        continue;
      }
      if (alive(owner.pid)) continue;
      await this.cleanupStale(owner);
      try {
        unlinkSync(path);
      } catch {
        // another emulator swept it first
      }
    }
  }

  private async claim(): Promise<void> {
    mkdirSync(LOCK_DIR, { recursive: true });
    await this.sweepStale();
    const lock: Lock = { pid: process.pid, bridge: `kgce${this.tag}`, nsPrefix: `kgce-${this.tag}-` };
    for (let k = 0; k < MAX_BLOCKS; k++) {
      const path = join(LOCK_DIR, `block-${k}.json`);
      if (!(await this.takeLock(path, lock))) continue;
      const block = candidateBlock(k);
      // A bridge made by something other than an emulator (a test, an operator) may hold the address.
      if ((await this.addressesInUse()).has(block.gateway)) {
        unlinkSync(path);
        continue;
      }
      this.lockPath = path;
      this.block = block;
      this.pool = new AddressPool(block);
      this.bridge = lock.bridge;
      this.nsPrefix = lock.nsPrefix;
      await run('ip', ['link', 'del', this.bridge]).catch(() => undefined);
      await run(
        'ip',
        ['-batch', '-'],
        `link add name ${this.bridge} type bridge\naddr add ${block.gateway}/${block.prefix} dev ${this.bridge}\nlink set ${this.bridge} up\n`,
      );
      this.opts.log.info({ bridge: this.bridge, block: block.cidr }, 'cell network ready');
      return;
    }
    throw new Error(
      `no free cell address block: ${MAX_BLOCKS} emulators already own bridges (see ${LOCK_DIR})`,
    );
  }

  /** Exclusive-create the lock; a lock left by a dead emulator is cleaned up and taken over. */
  private async takeLock(path: string, lock: Lock): Promise<boolean> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx');
        writeFileSync(fd, JSON.stringify(lock));
        closeSync(fd);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let owner: Lock | undefined;
      try {
        owner = JSON.parse(readFileSync(path, 'utf8')) as Lock;
      } catch {
        owner = undefined;
      }
      if (owner && alive(owner.pid)) return false;
      if (owner) await this.cleanupStale(owner);
      try {
        unlinkSync(path);
      } catch {
        // another emulator cleaned it first
      }
    }
    return false;
  }

  private async cleanupStale(owner: Lock): Promise<void> {
    this.opts.log.warn({ owner }, 'removing the cell network of a dead emulator');
    const names = (await run('ip', ['netns', 'list']).catch(() => ''))
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith(owner.nsPrefix));
    for (const ns of names) await this.removeNetns(ns);
    await run('ip', ['link', 'del', owner.bridge]).catch(() => undefined);
  }

  private async removeNetns(ns: string): Promise<void> {
    const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => ''))
      .split('\n')
      .filter(Boolean)
      .map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }

  boot(cell: CellBoot): Promise<CellInfo> {
    const key = `${cell.zone}/${cell.name}`;
    const n = (this.seq++).toString(36);
    const netns = `${this.nsPrefix}${n}`;
    const cellDir = join(this.opts.stateDir, 'cells', cell.zone, cell.name);
    mkdirSync(cellDir, { recursive: true });
    const logFile = join(cellDir, 'agent.log');
    const entry: Cell = { info: { netns, logFile, state: 'idle' }, ip: cell.ip };
    this.cells.set(key, entry);
    // A stop that arrives mid-boot waits for it, so nothing is created after the teardown.
    const booting = this.bootInto(entry, cell, { key, netns, n, cellDir, logFile });
    entry.booting = booting.then(
      () => undefined,
      () => undefined,
    );
    return booting;
  }

  private async bootInto(
    entry: Cell,
    cell: CellBoot,
    at: { key: string; netns: string; n: string; cellDir: string; logFile: string },
  ): Promise<CellInfo> {
    const { key, netns, cellDir, logFile } = at;
    const hostVeth = `kg${this.tag}v${at.n}`.slice(0, 15);
    await run('ip', ['netns', 'add', netns]);
    await run('ip', [
      'link',
      'add',
      'name',
      hostVeth,
      'up',
      'master',
      this.bridge,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      netns,
    ]);
    await run(
      'ip',
      ['-n', netns, '-batch', '-'],
      `link set lo up\naddr add ${cell.ip}/${this.block.prefix} dev eth0\nlink set eth0 up\nroute add default via ${this.block.gateway}\n`,
    );
    const command = this.commandFor(cell, cellDir, logFile);
    if (!command) {
      this.opts.log.info(
        { cell: key, netns, ip: cell.ip },
        'cell booted without an agent (no kip-cell-agent-config metadata)',
      );
      return entry.info;
    }
    const fd = openSync(logFile, 'a');
    const proc = spawn('nsenter', [`--net=/var/run/netns/${netns}`, ...command], {
      cwd: REPO_ROOT,
      // Its own process group: stop() signals the launcher and the agent together.
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, LOG_LEVEL: process.env.CELL_LOG_LEVEL ?? 'info' },
    });
    closeSync(fd);
    entry.proc = proc;
    entry.info = { ...entry.info, pid: proc.pid, state: 'running', command };
    entry.exited = new Promise((done) =>
      proc.once('exit', (code, signal) => {
        entry.info.state = 'exited';
        entry.info.exitCode = code;
        this.opts.log.info({ cell: key, code, signal }, 'cell process exited');
        done();
      }),
    );
    proc.once('error', (err) => this.opts.log.error({ cell: key, err }, 'cell process failed to start'));
    this.opts.log.info({ cell: key, netns, ip: cell.ip, pid: proc.pid }, 'cell booted');
    return entry.info;
  }

  private commandFor(cell: CellBoot, cellDir: string, logFile: string): string[] | undefined {
    const boot = this.opts.bootCommand();
    if (boot.length > 0) {
      const vars: Record<string, string> = {
        ip: cell.ip,
        name: cell.name,
        zone: cell.zone,
        dataDir: cell.dataDir,
        cellDir,
        logFile,
      };
      return boot.map((a) => a.replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m));
    }
    if (cell.agentConfig === undefined) return undefined;
    const configFile = join(cellDir, 'agent-config.yaml');
    writeFileSync(configFile, cell.agentConfig, { mode: 0o600 });
    const tsxCli = createRequire(import.meta.url).resolve('tsx/cli');
    return [
      process.execPath,
      tsxCli,
      resolve(REPO_ROOT, this.opts.agentEntry()),
      '--config',
      configFile,
      '--data-dir',
      cell.dataDir,
    ];
  }

  info(zone: string, name: string): CellInfo | undefined {
    return this.cells.get(`${zone}/${name}`)?.info;
  }

  /**
   * SIGTERM; after the grace period SIGINT, on which the agent exits at once and removes its
   * containers and mounts (as a VM's power-off would leave nothing running); SIGKILL to the whole
   * process group if even that hangs. Then the namespace (and with it the veth) goes. The signals
   * go to the cell's process group, so they reach the agent behind its launcher.
   */
  async stop(zone: string, name: string): Promise<void> {
    const key = `${zone}/${name}`;
    const cell = this.cells.get(key);
    if (!cell) return;
    this.cells.delete(key);
    await cell.booting;
    if (cell.proc && cell.info.state === 'running') {
      const group = (signal: NodeJS.Signals) => {
        try {
          process.kill(-cell.proc!.pid!, signal);
        } catch {
          // already gone
        }
      };
      group('SIGTERM');
      const grace = this.opts.stopGraceMs();
      const interrupt = setTimeout(() => group('SIGINT'), grace);
      const kill = setTimeout(() => group('SIGKILL'), grace + 10_000);
      await cell.exited;
      clearTimeout(interrupt);
      clearTimeout(kill);
    }
    if (cell.info.netns) await this.removeNetns(cell.info.netns);
  }

  async close(): Promise<void> {
    await Promise.all([...this.cells.keys()].map((k) => this.stop(...(k.split('/') as [string, string]))));
    await run('ip', ['link', 'del', this.bridge]).catch(() => undefined);
    if (this.lockPath) {
      try {
        unlinkSync(this.lockPath);
      } catch {
        // already removed
      }
    }
  }
}
