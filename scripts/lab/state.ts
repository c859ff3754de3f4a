/** The lab's state file (`<dir>/lab.json`): every endpoint, pid and log file of a running lab. */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GceReadyLine } from '../../emulators/gce/ready-line.ts';

export interface LabProcess {
  pid: number;
  log: string;
}

export interface LabState {
  version: 1;
  dir: string;
  startedAt: string;
  /** Set once every part is up. */
  complete: boolean;
  kubeconfig: string;
  etcd?: LabProcess & { endpoint: string; dataDir: string };
  compute?: LabProcess &
    Pick<
      GceReadyLine,
      'host' | 'port' | 'url' | 'project' | 'region' | 'zones' | 'admin' | 'metrics' | 'network'
    > & {
      /** Network namespaces of this emulator's cells start with it. */
      netnsPrefix: string;
      stateDir: string;
    };
  registry?: LabProcess & { host: string; dataDir: string; config: string };
  kube?: LabProcess & { url: string; port: number; metrics: string };
  provider?: LabProcess & {
    node: string;
    clusterId: string;
    config: string;
    kubeletApi: string;
    kubeletPort: number;
    metrics: string;
  };
  /** The example image pushed to the lab registry. */
  image?: string;
}

export const STATE_FILE = 'lab.json';

export function statePath(dir: string): string {
  return join(dir, STATE_FILE);
}

export function readLabState(dir: string): LabState | undefined {
  const file = statePath(dir);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

/** Written aside and renamed, so a reader never sees half a file. */
export function writeLabState(state: LabState): void {
  mkdirSync(state.dir, { recursive: true });
  const file = statePath(state.dir);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** The parts of a lab in start order. */
export const PARTS = ['etcd', 'compute', 'registry', 'kube', 'provider'] as const;
export type LabPart = (typeof PARTS)[number];
