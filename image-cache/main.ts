import { CommanderError } from 'commander';
import express from 'express';
import type { AddressInfo } from 'node:net';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../lib/kube-config.ts';
import { createLogger } from '../lib/log.ts';
import { metricsHandler } from '../lib/metrics.ts';
import { printReadyLine } from '../lib/ready-line.ts';
import { onShutdown } from '../lib/shutdown.ts';
import { CacheController } from './cache-filler.ts';
import { checkWritableDir, ensureNfsMount, resolveFilestoreShare, ShareError } from './filestore-share.ts';
import { parseFlags, type ImageCacheFlags } from './flags.ts';
import { LeaderElector } from './leader-election.ts';
import { createImageCacheMetrics } from './metrics.ts';

let flags: ImageCacheFlags;
try {
  flags = parseFlags(process.argv.slice(2));
} catch (e) {
  if (e instanceof CommanderError && e.exitCode === 0) process.exit(0);
  // commander has already printed its own errors; ours get one line here.
  if (!(e instanceof CommanderError)) console.error(`image-cache: ${(e as Error).message}`);
  process.exit(2);
}

const log = createLogger('image-cache');

/** The directory the cache lives in: the mounted share (or, in the lab, the emulator's directory). */
async function cacheRoot(f: ImageCacheFlags): Promise<{ root: string; share: Record<string, string> }> {
  if (f.nfsServer) {
    // The Deployment mounts the export at --mount-path as an nfs volume.
    await checkWritableDir(f.mountPath, '--mount-path');
    return { root: f.mountPath, share: { server: f.nfsServer, path: f.nfsPath! } };
  }
  const s = await resolveFilestoreShare(f.filestoreInstance!, f.filestoreEndpoint);
  const share = { instance: s.instance, server: s.ipAddress, path: `/${s.shareName}` };
  if (s.localDir) {
    await checkWritableDir(s.localDir, `the emulator's share directory for ${s.instance}`);
    return { root: s.localDir, share };
  }
  await ensureNfsMount(s.ipAddress, `/${s.shareName}`, f.mountPath);
  await checkWritableDir(f.mountPath, '--mount-path');
  return { root: f.mountPath, share };
}

async function main(f: ImageCacheFlags): Promise<void> {
  const { root, share } = await cacheRoot(f);
  const kc = new PooledKubeConfig();
  if (f.kubeconfig) kc.loadFromFile(f.kubeconfig);
  else kc.loadFromCluster();
  const core = kc.makeApiClient(CoreV1Api);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  const metrics = createImageCacheMetrics();

  const app = express();
  app.get('/metrics', metricsHandler(metrics.registry));
  const server = app.listen(f.metricsPort, f.metricsHost);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });

  const controller = new CacheController({
    kc,
    core,
    root,
    log,
    metrics,
    insecureRegistries: f.insecureRegistries,
    pruneAfterMs: f.pruneAfterMs,
    pruneIntervalMs: f.pruneIntervalMs,
  });
  await controller.start();
  const elector = new LeaderElector({
    coordination,
    namespace: f.namespace,
    leaseName: f.leaseName,
    identity: f.identity,
    leaseDurationMs: f.leaseDurationMs,
    log,
    onStartedLeading: (signal) => controller.lead(signal),
  });
  elector.start();

  onShutdown(log, async () => {
    await elector.stop();
    await controller.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ root, ...share, identity: f.identity }, 'image cache controller started');
  printReadyLine({
    pid: process.pid,
    metrics: `http://${f.metricsHost}:${port}/metrics`,
    root,
    identity: f.identity,
  });
}

main(flags).catch((err: unknown) => {
  if (!(err instanceof ShareError)) log.error({ err }, 'image cache controller failed to start');
  console.error(`image-cache: ${(err as Error).message}`);
  process.exit(1);
});
