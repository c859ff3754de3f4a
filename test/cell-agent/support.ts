import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { PodStatusReply } from '../../lib/cell-agent-api.ts';
import { CellAgentClient } from '../../lib/cell-agent-client.ts';
import { createCA, issueCertificate, type KeyPair } from '../../lib/tls.ts';
import { splitHostPort } from '../../lib/listen-address.ts';
import { buildImage, pushImage, type ImageSpec } from '../support/images.ts';
import { startProcess, type StartedProcess } from '../support/process.ts';
import { startRegistry, type StartedRegistry } from '../support/registry.ts';

const ROOT = resolve(import.meta.dirname, '../..');
let seq = 0;

export interface TestCellNetwork {
  /** Network namespace name (in /var/run/netns). */
  name: string;
  /** Address of the host end of the veth pair; the cell reaches the host's forwarders there. */
  hostIP: string;
  /** The cell's address (the pod IP). */
  cellIP: string;
  remove(): void;
}

/**
 * A cell like the lab's: a network namespace with its own address on a veth pair to the host.
 * Names and a /30 from 100.64.0.0/10 are derived from the pid, so parallel suites never collide.
 */
export function createCellNetwork(): TestCellNetwork {
  const n = seq++;
  const id = process.pid * 16 + n;
  const name = `kca${process.pid}n${n}`;
  const host = `kca${process.pid}h${n}`;
  const peer = `kca${process.pid}c${n}`;
  const base = (id % (1 << 20)) * 4;
  const addr = (k: number) => `100.${64 + ((base >> 16) & 63)}.${(base >> 8) & 255}.${(base & 255) + k}`;
  const hostIP = addr(1);
  const cellIP = addr(2);
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  ip('netns', 'add', name);
  try {
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer, 'netns', name);
    ip('addr', 'add', `${hostIP}/30`, 'dev', host);
    ip('link', 'set', host, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    ip('-n', name, 'addr', 'add', `${cellIP}/30`, 'dev', peer);
    ip('-n', name, 'link', 'set', peer, 'up');
    ip('-n', name, 'route', 'add', 'default', 'via', hostIP);
  } catch (e) {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    throw e;
  }
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    // A removed cell needs no exit hook; a long run would otherwise pile them up.
    process.off('exit', remove);
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      execFileSync('ip', ['link', 'del', host], { stdio: 'ignore' });
    } catch {
      // the veth goes with the namespace
    }
  };
  process.once('exit', remove);
  return { name, hostIP, cellIP, remove };
}

/** Forwards TCP from `listenHost:<port>` to `target` (a loopback server the cell cannot reach). */
export async function forwardTcp(
  listenHost: string,
  target: string,
): Promise<{ host: string; close(): void }> {
  const { host: th, port: tp } = splitHostPort(target);
  const socks = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect(tp, th);
    socks.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = () => (c.destroy(), up.destroy());
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, listenHost, r));
  return {
    host: `${listenHost}:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      for (const s of socks) s.destroy();
      server.close();
    },
  };
}

export interface TestPki {
  ca: KeyPair;
  server: KeyPair;
  client: KeyPair;
}

export async function makePki(cellIP: string): Promise<TestPki> {
  const ca = await createCA('kip-test-cells');
  const server = await issueCertificate(ca, { commonName: 'cell', hosts: [cellIP], usage: 'server' });
  const client = await issueCertificate(ca, { commonName: 'kip-provider', usage: 'client' });
  return { ca, server, client };
}

export interface TestAgent {
  proc: StartedProcess;
  client: CellAgentClient;
  baseUrl: string;
  dataDir: string;
  pki: TestPki;
  stop(): Promise<void>;
}

/**
 * Starts the real cell agent inside the cell's network namespace, the way the Compute Engine
 * emulator boots a cell: a config file with inline PEMs, then `nsenter --net=...`.
 */
export async function startAgent(
  cell: TestCellNetwork,
  config: Record<string, unknown> = {},
  reuse?: { dataDir: string; pki: TestPki },
): Promise<TestAgent> {
  const pki = reuse?.pki ?? (await makePki(cell.cellIP));
  const dataDir = reuse?.dataDir ?? mkdtempSync(join(tmpdir(), 'kip-cell-agent-'));
  const file = join(dataDir, 'config.yaml');
  writeFileSync(
    file,
    stringify({
      listen: `${cell.cellIP}:0`,
      tls: { certPem: pki.server.certPem, keyPem: pki.server.keyPem, clientCaPem: pki.ca.certPem },
      restartBackoff: { initialSeconds: 0.5, maxSeconds: 2, resetSeconds: 600 },
      imagePullBackoff: { initialSeconds: 0.5, maxSeconds: 2 },
      statsIntervalSeconds: 1,
      ...config,
    }),
  );
  const proc = await startProcess(
    'nsenter',
    [
      `--net=/var/run/netns/${cell.name}`,
      join(ROOT, 'node_modules/.bin/tsx'),
      join(ROOT, 'cell-agent/main.ts'),
      '--config',
      file,
      '--data-dir',
      join(dataDir, 'data'),
    ],
    { cwd: ROOT, env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' }, timeoutMs: 30_000 },
  );
  const baseUrl = `https://${cell.cellIP}:${proc.ready.port as number}`;
  const client = new CellAgentClient({
    baseUrl,
    ca: pki.ca.certPem,
    cert: pki.client.certPem,
    key: pki.client.keyPem,
  });
  return {
    proc,
    client,
    baseUrl,
    dataDir,
    pki,
    async stop() {
      await client.close();
      await terminateAgent(proc);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * SIGTERM to the agent's own node process (as a cell's init would send it), then waits for the
 * tsx wrapper to exit with it. Signalling the wrapper instead can make tsx repeat the signal.
 */
export async function terminateAgent(proc: StartedProcess, timeoutMs = 15_000): Promise<number | null> {
  if (proc.proc.exitCode !== null || proc.proc.signalCode !== null) return proc.proc.exitCode;
  const exited = new Promise<number | null>((r) => proc.proc.once('exit', (code) => r(code)));
  try {
    process.kill(proc.ready.pid as number, 'SIGTERM');
  } catch {
    // already gone
  }
  const code = await Promise.race([
    exited,
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs)),
  ]);
  if (code === 'timeout') return proc.stop(1000);
  return code;
}

/** Long-polls the agent's status until `pred` holds; throws with the last status after `timeoutMs`. */
export async function waitForStatus(
  client: CellAgentClient,
  pred: (s: PodStatusReply) => boolean,
  timeoutMs = 20_000,
): Promise<PodStatusReply> {
  const deadline = Date.now() + timeoutMs;
  let s = await client.getStatus();
  while (!pred(s)) {
    const left = deadline - Date.now();
    if (left <= 0)
      throw new Error(
        `status condition not met within ${timeoutMs} ms; last status:\n${JSON.stringify(s, null, 1)}`,
      );
    s = await client.getStatus({ after: s.version, wait: Math.min(5, Math.ceil(left / 1000)) });
  }
  return s;
}

/** A minimal v1 Pod with a fresh UID. */
export function makePod(
  name: string,
  spec: Record<string, unknown>,
): { metadata: { name: string; namespace: string; uid: string }; spec: Record<string, unknown> } {
  return { metadata: { name, namespace: 'default', uid: crypto.randomUUID() }, spec };
}

/** Whether the pod on the cell has finished. */
export const isTerminal = (s: PodStatusReply): boolean => s.phase === 'Succeeded' || s.phase === 'Failed';

/** Deletes the agent's pod unless it has finished, and waits until it has: the cell is free again. */
export async function freeCell(client: CellAgentClient): Promise<void> {
  const s = await client.getStatus().catch(() => undefined);
  if (s && !isTerminal(s)) {
    await client.deletePod(0);
    await waitForStatus(client, isTerminal);
  }
}

/** A cell network that pulls a busybox image from a real registry through a host forwarder. */
export interface TestImageCell {
  cell: TestCellNetwork;
  /** The registry as the cell reaches it (host:port), for the agent's `insecureRegistries`. */
  registryHost: string;
  /** `<registryHost>/kip-test/busybox:1` */
  image: string;
  /** Closes the forwarder, stops the registry and removes the network. */
  stop(): Promise<void>;
}

/** Starts a cell network and a registry holding kip-test/busybox:1 (`sh`, plus `spec`'s extras). */
export async function startImageCell(spec: Partial<ImageSpec> = {}): Promise<TestImageCell> {
  const cell = createCellNetwork();
  let registry: StartedRegistry | undefined;
  let fwd: { host: string; close(): void } | undefined;
  const stop = async () => {
    fwd?.close();
    await registry?.stop();
    cell.remove();
  };
  try {
    registry = await startRegistry();
    fwd = await forwardTcp(cell.hostIP, registry.host);
    const layout = await buildImage({ name: 'kip-test/busybox', tag: '1', cmd: ['sh'], ...spec });
    await pushImage(layout, '1', registry.host);
  } catch (err) {
    await stop();
    throw err;
  }
  return { cell, registryHost: fwd.host, image: `${fwd.host}/kip-test/busybox:1`, stop };
}

/** What `useImageAgent` hands its suite once the cell and agent are up. */
export interface ImageAgentSuite {
  site: TestImageCell;
  agent: TestAgent;
  image: string;
}

/**
 * Registers the hooks of a suite that runs pods on one agent: before all tests, a cell pulling
 * from a registry (`startImageCell(spec)`) and an agent trusting that registry, handed to
 * `onStart`; after each test, `freeCell`; after all, both stopped. Hooks the suite registers
 * before this call run before these (mocha keeps registration order).
 */
export function useImageAgent(onStart: (s: ImageAgentSuite) => void, spec: Partial<ImageSpec> = {}): void {
  let site: TestImageCell | undefined;
  let agent: TestAgent | undefined;
  before(async () => {
    site = await startImageCell(spec);
    agent = await startAgent(site.cell, { insecureRegistries: [site.registryHost] });
    onStart({ site, agent, image: site.image });
  });
  after(async () => {
    await agent?.stop();
    await site?.stop();
  });
  afterEach(() => freeCell(agent!.client));
}
