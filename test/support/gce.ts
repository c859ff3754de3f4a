import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { protos, ZoneOperationsClient } from '@google-cloud/compute';
import { PassThroughClient } from 'google-auth-library';
import type { GceReadyLine } from '../../emulators/gce/ready-line.ts';
import { stringify } from 'yaml';
import { stopPid } from '../../scripts/lab/daemon.ts';
import { startNpmScript, type StartedProcess } from './process.ts';

/** Options every `@google-cloud/compute` client needs to talk to the emulator. */
// A type alias, not an interface: the client's options type needs an index signature.
export type GceClientOptions = {
  apiEndpoint: string;
  port: number;
  protocol: string;
  authClient: PassThroughClient;
};

export interface CallCounts {
  total: number;
  byMethod: Record<string, { total: number; codes: Record<string, number> }>;
}

export interface GceEmulator {
  host: string;
  port: number;
  project: string;
  region: string;
  zones: string[];
  /** The cell address block and its gateway (the bridge's address). */
  network: { block: string; gateway: string; bridge: string | null };
  stateDir: string;
  clientOptions: GceClientOptions;
  admin: {
    state(): Promise<Record<string, unknown>>;
    calls(): Promise<CallCounts>;
    resetCalls(): Promise<void>;
    /** Merges into the `faults` section (errorRate, errorKinds, methods, stockouts, bootDelayMs, ...). */
    setFaults(patch: Record<string, unknown>): Promise<void>;
    /** Merges into the `quotas` section (limits, readRequestsPerMinute, writeRequestsPerMinute, windowMs). */
    setQuotas(patch: Record<string, unknown>): Promise<void>;
    setDelays(patch: Record<string, unknown>): Promise<void>;
    instance(
      zone: string,
      name: string,
    ): Promise<{
      instance: Record<string, unknown>;
      cell: Record<string, unknown> | null;
      dataDir: string | null;
    }>;
    preempt(zone: string, name: string): Promise<string>;
    /** A disk's resource and the directory holding its content. */
    disk(zone: string, name: string): Promise<{ disk: Record<string, unknown>; dir: string }>;
  };
  proc: StartedProcess;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * Starts `npm run gce-emulator` as a child process on a free port. `config` is written to a
 * temporary YAML file (docs/gce-emulator.md lists its fields).
 */
export async function startGceEmulator(
  opts: {
    config?: Record<string, unknown>;
    hypervisor?: 'none' | 'netns';
    project?: string;
    env?: NodeJS.ProcessEnv;
  } = {},
): Promise<GceEmulator> {
  const dir = mkdtempSync(join(tmpdir(), 'kip-gce-test-'));
  const args = ['--port', '0', '--hypervisor', opts.hypervisor ?? 'none', '--state-dir', join(dir, 'state')];
  if (opts.config) {
    writeFileSync(join(dir, 'config.yaml'), stringify(opts.config));
    args.push('--config', join(dir, 'config.yaml'));
  }
  if (opts.project) args.push('--project', opts.project);
  let proc: StartedProcess;
  try {
    proc = await startNpmScript('gce-emulator', args, {
      env: { LOG_LEVEL: 'warn', ...opts.env },
      timeoutMs: 30000,
    });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const r = proc.ready as GceReadyLine;
  const base = `http://${r.host}:${r.port}/admin`;
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`admin ${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    host: r.host,
    port: r.port,
    project: r.project,
    region: r.region,
    zones: r.zones,
    network: r.network,
    stateDir: r.stateDir,
    clientOptions: {
      apiEndpoint: r.host,
      port: r.port,
      protocol: 'http',
      authClient: new PassThroughClient(),
    },
    admin: {
      state: () => call('GET', '/state'),
      calls: async () => (await call('GET', '/calls')) as unknown as CallCounts,
      resetCalls: async () => void (await call('POST', '/calls/reset')),
      setFaults: async (p) => void (await call('PATCH', '/faults', p)),
      setQuotas: async (p) => void (await call('PATCH', '/quotas', p)),
      setDelays: async (p) => void (await call('PATCH', '/delays', p)),
      instance: async (zone, name) => (await call('GET', `/instances/${zone}/${name}`)) as never,
      preempt: async (zone, name) =>
        String((await call('POST', `/instances/${zone}/${name}/preempt`)).result),
      disk: async (zone, name) => (await call('GET', `/disks/${zone}/${name}`)) as never,
    },
    proc,
    stderr: () => proc.stderr(),
    async stop() {
      // Signal the emulator itself (its ready line names its pid) and wait until it has torn its
      // cells and bridge down (SIGKILL after 15 s), whatever the launcher chain does with signals.
      await stopPid(r.pid, 15_000);
      await proc.stop(15000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Instance = protos.google.cloud.compute.v1.IInstance;
type Operation = protos.google.cloud.compute.v1.IOperation;

/** A cell VM as the provider inserts it: e2-small from the kip-cell image family; `extra` adds fields. */
export function cellInstance(zone: string, name: string, extra: Instance = {}): Instance {
  return {
    name,
    machineType: `zones/${zone}/machineTypes/e2-small`,
    disks: [
      {
        boot: true,
        autoDelete: true,
        initializeParams: { sourceImage: 'projects/kip-cells/global/images/family/kip-cell' },
      },
    ],
    networkInterfaces: [{}],
    ...extra,
  };
}

/** Waits on a zonal operation until it is DONE; returns it (its `error` set if it failed). */
export async function waitZoneOperation(
  ops: ZoneOperationsClient,
  project: string,
  zone: string,
  op: Operation,
): Promise<Operation> {
  let cur = op;
  while (cur.status !== 'DONE') [cur] = await ops.wait({ project, zone, operation: cur.name! });
  return cur;
}
