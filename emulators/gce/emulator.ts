import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../lib/log.ts';
import { createMetricsRegistry } from '../../lib/metrics.ts';
import { NetnsHypervisor } from './cell-host.ts';
import type { EmulatorConfig } from './config.ts';
import { NoHypervisor, type Hypervisor } from './hypervisor.ts';
import { MachineCatalog } from './machine-catalog.ts';
import { OperationEngine } from './operations.ts';
import { RegionalQuota } from './quota.ts';
import { createApp } from './server.ts';
import type { EmulatorContext } from './state.ts';

export interface EmulatorOptions {
  config: EmulatorConfig;
  host: string;
  port: number;
  hypervisor: 'none' | 'netns';
  /** Disk, snapshot and cell files; a temporary directory (removed on close) when absent. */
  stateDir?: string;
  log: Logger;
}

export interface RunningEmulator {
  ctx: EmulatorContext;
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Starts the Compute Engine emulator: hypervisor first (it owns the address block), then HTTP. */
export async function startEmulator(opts: EmulatorOptions): Promise<RunningEmulator> {
  const { config, log } = opts;
  const tempState = !opts.stateDir;
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), `kip-gce-${process.pid}-`));
  mkdirSync(stateDir, { recursive: true });
  const hypervisor: Hypervisor =
    opts.hypervisor === 'netns'
      ? await NetnsHypervisor.create({
          stateDir,
          bootCommand: () => config.hypervisor.bootCommand,
          agentEntry: () => config.hypervisor.agentEntry,
          stopGraceMs: () => config.hypervisor.stopGraceMs,
          log,
        })
      : new NoHypervisor();
  const ctx: EmulatorContext = {
    cfg: config,
    project: config.project,
    region: config.region,
    catalog: new MachineCatalog(config.zones),
    ops: new OperationEngine(config.project, () => config.delays.operationPendingMs, log),
    quota: new RegionalQuota(config.region, () => config.quotas.limits),
    hypervisor,
    log,
    stateDir,
    instances: new Map(),
    disks: new Map(),
    snapshots: new Map(),
    firewalls: new Map(),
    requestIds: new Map(),
  };
  const registry = createMetricsRegistry('gce_emulator');
  const { app } = createApp(ctx, registry, log);
  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(opts.port, opts.host, () => resolve(s));
      s.once('error', reject);
    });
  } catch (e) {
    await hypervisor.close();
    throw e;
  }
  // operations.wait holds a request up to two minutes, longer than Node's default timeouts allow.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 5000;
  const port = (server.address() as AddressInfo).port;
  return {
    ctx,
    host: opts.host,
    port,
    async close() {
      ctx.ops.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await hypervisor.close();
      if (tempState) rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
