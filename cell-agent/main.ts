import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, Histogram } from 'prom-client';
import { ConfigError } from '../lib/config-file.ts';
import { createLogger } from '../lib/log.ts';
import { createMetricsRegistry } from '../lib/metrics.ts';
import { ImageStore } from '../lib/oci/image-store.ts';
import { printReadyLine } from '../lib/ready-line.ts';
import { onShutdown } from '../lib/shutdown.ts';
import { Cell } from './cell.ts';
import { cellIdOf, loadCellAgentConfig, readTlsMaterial } from './config.ts';
import { removeCgroupTree } from './cgroups.ts';
import { mountsUnder, unmount } from './mounts.ts';
import { detectPodIP } from './network.ts';
import { Runc } from './runc.ts';
import { createServer, listen } from './server.ts';
import { StatsCollector } from './stats.ts';

async function main(): Promise<void> {
  const log = createLogger('cell-agent');
  // One failed background task must not take the pod's other containers down with the agent.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  let cfg;
  let tls;
  try {
    cfg = loadCellAgentConfig(process.argv.slice(2));
    tls = readTlsMaterial(cfg);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`cell-agent: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  const cellId = cellIdOf(cfg);
  for (const d of ['pods', 'images', 'runc']) mkdirSync(join(cfg.dataDir, d), { recursive: true });
  const runc = new Runc(cfg.runc, join(cfg.dataDir, 'runc'));
  await cleanLeftovers(runc, cfg.dataDir, cellId, log);
  const images = new ImageStore({
    root: join(cfg.dataDir, 'images'),
    cacheDir: cfg.imageCacheDir,
    insecureRegistries: cfg.insecureRegistries,
    caCerts: cfg.registryCaPems,
    log,
  });
  const podIP = cfg.podIP ?? detectPodIP();
  const metrics = createMetricsRegistry('kip_cell_agent');
  const pullSeconds = new Histogram({
    name: 'kip_cell_agent_image_pull_seconds',
    help: 'Time to pull and unpack an image from a registry',
    buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [metrics],
  });
  const pullBytes = new Counter({
    name: 'kip_cell_agent_image_pull_bytes_total',
    help: 'Compressed bytes of images pulled from registries',
    registers: [metrics],
  });
  const cell = new Cell({
    onImagePulled: (ms, image) => {
      pullSeconds.observe(ms / 1000);
      pullBytes.inc(image.sizeBytes);
    },
    runc,
    images,
    log,
    cellId,
    dataDir: cfg.dataDir,
    podIP,
    restartBackoff: cfg.restartBackoff,
    imagePullBackoff: cfg.imagePullBackoff,
    maxLogFileBytes: cfg.logs.maxFileBytes,
  });
  const stats = new StatsCollector();
  new Gauge({
    name: 'kip_cell_agent_containers_running',
    help: 'Containers of the pod currently running',
    registers: [metrics],
    collect() {
      this.set(cell.current?.containers().filter((c) => c.current && !c.current.done).length ?? 0);
    },
  });
  // Sampling on an interval gives the first stats request a CPU rate to report.
  const sampler = setInterval(() => {
    if (cell.current) stats.podStats(cell.current);
  }, cfg.statsIntervalSeconds * 1000);
  sampler.unref();
  const server = createServer({
    cell,
    runc,
    stats,
    log,
    metrics,
    tls,
    maxStatusWaitSeconds: cfg.maxStatusWaitSeconds,
  });
  let addr;
  try {
    addr = await listen(server, cfg.listen);
  } catch (e) {
    console.error(`cell-agent: cannot listen on ${cfg.listen}: ${(e as Error).message}`);
    process.exit(1);
  }
  const listenAddr = `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  log.info({ listen: listenAddr, cellId, podIP, dataDir: cfg.dataDir }, 'cell agent serving');
  let stopped = false;
  onShutdown(log, async () => {
    clearInterval(sampler);
    server.close();
    server.closeAllConnections();
    await cell.shutdown();
    await images.close();
    stopped = true;
  });
  // Exiting without the orderly stop (a second signal, a fatal error): remove containers and
  // mounts synchronously, so nothing of the pod outlives the agent.
  process.once('exit', () => {
    if (!stopped) emergencyCleanup(cfg.runc, join(cfg.dataDir, 'runc'), cfg.dataDir, cellId);
  });
  printReadyLine({
    service: 'cell-agent',
    listen: listenAddr,
    port: addr.port,
    cellId,
    podIP,
    pid: process.pid,
  });
}

function emergencyCleanup(runcBin: string, root: string, dataDir: string, cellId: string): void {
  try {
    const ids = execFileSync(runcBin, ['--root', root, 'list', '-q'], { timeout: 5000 })
      .toString()
      .split('\n');
    for (const id of ids.filter(Boolean))
      execFileSync(runcBin, ['--root', root, 'delete', '--force', id], { timeout: 5000, stdio: 'ignore' });
  } catch {
    // best effort: the next start cleans up the rest
  }
  for (const m of mountsUnder(join(dataDir, 'pods'))) {
    try {
      execFileSync('umount', ['-l', m], { timeout: 5000, stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  removeCgroupTree(`kip-${cellId}`);
}

/** Removes containers, mounts and cgroups a previous run of this agent left (it crashed or was killed). */
async function cleanLeftovers(
  runc: Runc,
  dataDir: string,
  cellId: string,
  log: ReturnType<typeof createLogger>,
): Promise<void> {
  const left = await runc.list().catch(() => []);
  for (const c of left) {
    log.warn({ container: c.id }, 'removing a container left by a previous run');
    await runc.delete(c.id).catch(() => undefined);
  }
  for (const m of mountsUnder(join(dataDir, 'pods'))) await unmount(m);
  removeCgroupTree(`kip-${cellId}`);
}

main().catch((err: unknown) => {
  console.error(`cell-agent: ${(err as Error)?.stack ?? String(err)}`);
  process.exit(1);
});
