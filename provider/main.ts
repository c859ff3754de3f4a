/**
 * `npm run -s provider -- --config <file>`: the Kip provider. Loads and checks the config,
 * connects to etcd (cluster id and CA created once), registers the virtual node and keeps its
 * status and lease, serves the kubelet API and Prometheus metrics, and watches the node's pods.
 *
 * The pod path: the pod controller (provider/pods/pod-controller.ts) takes `podInformer` and the
 * cell manager (provider/pods/cell-manager.ts), which creates cells through the GCE cloud layer and
 * talks to their agents; the kubelet API's logs, exec and stats handlers proxy to those agents
 * (attach answers 501: the agent has no attach). The cloud layer adds a `cloud` health check.
 */
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command } from 'commander';
import { CoordinationV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { ConfigError } from '../lib/config-file.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { PooledKubeConfig } from '../lib/kube-config.ts';
import type { KeyPair } from '../lib/tls.ts';
import { printReadyLine } from '../lib/ready-line.ts';
import { onShutdown } from '../lib/shutdown.ts';
import { kubeletServingCertificate, providerClientCertificate } from './certificates.ts';
import { gceCloudProviderFromConfig } from './cloud/from-config.ts';
import { InstanceObserver } from './cloud/instance-observer.ts';
import { OrphanCollector } from './cloud/orphan-collector.ts';
import { waitAtMost } from './clock.ts';
import { loadProviderConfig, type ProviderConfig } from './config.ts';
import { Informer } from './informer.ts';
import { splitHostPort } from '../lib/listen-address.ts';
import { KubeletAuth, kubernetesReviewers } from './kubelet-api/auth.ts';
import { startKubeletApiServer } from './kubelet-api/server.ts';
import { createProviderMetrics, setCounts, type ProviderMetrics } from './metrics.ts';
import { LeaseController } from './node/lease-controller.ts';
import { NodeController, type HealthCheck } from './node/node-controller.ts';
import { desiredNode } from './node/node-object.ts';
import { CellManager } from './pods/cell-manager.ts';
import { FinishedLogs } from './pods/finished-logs.ts';
import { StandbyPool, isStandbyVm } from './pods/standby-pool.ts';
import { KubeEventRecorder } from './pods/events.ts';
import { kubeletHandlers } from './pods/kubelet-handlers.ts';
import { PodController } from './pods/pod-controller.ts';
import { KubeDnsAddress } from './pods/cluster-dns.ts';
import { resolveDispatch } from './pods/pod-dispatch.ts';
import type { CellUsageMeter } from './pods/types.ts';
import { UsageMeter } from './metering/usage-meter.ts';
import { CELL_STATES, CellStore } from './state/cells.ts';
import { StandbyStore } from './state/standby.ts';
import { ensureCA, ensureClusterId } from './state/identity.ts';
import { StateStore } from './state/store.ts';

const POD_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;

/** Reads a file named by a config field; the error names the field. */
function readConfigFile(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`field "${field}": cannot read ${path}: ${(e as Error).message}`, field);
  }
}

function loadKubeConfig(cfg: ProviderConfig): PooledKubeConfig {
  const kc = new PooledKubeConfig();
  if (cfg.kubeconfig) {
    readConfigFile(cfg.kubeconfig, 'kubeconfig');
    kc.loadFromFile(cfg.kubeconfig);
  } else {
    kc.loadFromCluster();
  }
  return kc;
}

/**
 * In a cluster, the service account's CA is the cluster CA, which on GKE also signs the API
 * server's kubelet client certificate: the default client CA when none is configured.
 */
function inClusterCA(cfg: ProviderConfig): string | undefined {
  if (cfg.kubeconfig) return undefined;
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', 'utf8');
  } catch {
    return undefined;
  }
}

/** Whether a Compute API can be called without probing the network for credentials. */
function cloudReachable(cfg: ProviderConfig): boolean {
  if (cfg.cloud.endpoint) return true;
  if (process.env.GOOGLE_APPLICATION_CREDENTIALS) return true;
  // In the cluster (GKE), credentials come from the metadata server (Workload Identity).
  if (!cfg.kubeconfig) return true;
  return existsSync(join(homedir(), '.config/gcloud/application_default_credentials.json'));
}

/** The cloud layer, the VM observer (feeding the orphan collector), the cell manager and the pod controller. */
async function startPodPath(o: {
  cfg: ProviderConfig;
  clusterId: string;
  ca: KeyPair;
  cells: CellStore;
  standbyCells: StandbyStore;
  core: CoreV1Api;
  podInformer: Informer<V1Pod>;
  metrics: ProviderMetrics;
  log: Logger;
  /** Set when usageReporter.url is (provider/metering/). */
  meter?: CellUsageMeter;
}) {
  const { cfg, clusterId, ca, cells, standbyCells, core, metrics, log } = o;
  const cloud = gceCloudProviderFromConfig(cfg, clusterId, {
    log,
    onCall: (method, code) => metrics.cloudApiCalls.inc({ method, code }),
  });
  const orphans = new OrphanCollector({
    provider: cloud,
    claims: async () => {
      const [records, standbys] = await Promise.all([cells.list(), standbyCells.list()]);
      const podUids = new Set(records.map((c) => c.record.podUid));
      const cellNames = new Set(records.map((c) => c.record.cellName));
      const standbyNames = new Set(standbys.map((s) => s.record.name));
      return (vm) => {
        if (vm.pod?.uid) return podUids.has(vm.pod.uid);
        if (!isStandbyVm(vm)) return true;
        // A standby cell is owned while its record exists, or once claimed (not yet relabelled)
        // by the pod cell record that names it.
        return standbyNames.has(vm.name) || cellNames.has(vm.name);
      };
    },
    log,
  });
  const listIntervalMs = cfg.cloud.listIntervalSeconds * 1000;
  const observer = new InstanceObserver({
    provider: cloud,
    intervalMs: listIntervalMs,
    onObserve: (vms) => orphans.observe(vms).then(() => undefined),
    log,
  });
  cloud
    .ensureFirewall()
    .catch((err: unknown) =>
      log.warn(
        { err: (err as Error).message },
        'cannot ensure the cell agent firewall rule; cells may be unreachable',
      ),
    );
  const meter = o.meter;
  // The pool and the cell manager share the bootstrap and agent client; the pool is built first.
  const late: { manager?: CellManager } = {};
  const standby = new StandbyPool({
    cloud,
    observer,
    store: standbyCells,
    clusterId,
    shapes: cfg.cells.standby,
    bootstrap: (name) => late.manager!.bootstrap(name),
    agentClient: (name, address) => late.manager!.agentClient(name, address),
    log,
    registry: metrics.registry,
    intervalMs: Math.max(1000, listIntervalMs),
  });
  const kubeDns = new KubeDnsAddress(core);
  const events = new KubeEventRecorder({
    core,
    nodeName: cfg.nodeName,
    log,
    onEvent: (type, reason) => metrics.podEvents.inc({ type, reason }),
  });
  const finishedLogs = new FinishedLogs({
    perContainerBytes: cfg.cells.finishedLogBytes,
    budgetBytes: cfg.cells.finishedLogBudgetBytes,
    podExists: (ns, name, uid) => o.podInformer.get(`${ns}/${name}`)?.metadata?.uid === uid,
    log,
    registry: metrics.registry,
  });
  // Kept logs go with the pod. Its deletion cannot be told apart in the cell manager: a finished
  // pod's VM is removed through deletePod too.
  o.podInformer.onChange((key, event) => {
    if (event === 'delete')
      finishedLogs.forget(key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1));
  });
  const cellManager = new CellManager({
    finishedLogs,
    ...(standby.enabled ? { standby } : {}),
    cloud,
    observer,
    cells,
    clusterId,
    ca,
    client: await providerClientCertificate(ca, clusterId),
    agentPort: cfg.cells.agentPort,
    insecureRegistries: cfg.cells.insecureRegistries,
    resolveDispatch: (pod) => resolveDispatch(pod, { core, kubeDns }),
    volumeRefresh: { core, ...cfg.volumes },
    events,
    ...(meter ? { meter } : {}),
    log,
    onBooted: (machineType, seconds) => metrics.bootDuration.observe({ machine_type: machineType }, seconds),
  });
  const podController = new PodController({
    informer: o.podInformer,
    core,
    provider: cellManager,
    log,
    metrics: metrics.queue,
    onRunning: (seconds) => metrics.podStartDuration.observe(seconds),
  });
  late.manager = cellManager;
  observer.start();
  if (standby.enabled) standby.start();
  const cloudHealth: HealthCheck = {
    // A recent listing is proof enough; only a stale one costs a Compute API call.
    name: 'cloud',
    ping: async () => {
      if (Date.now() - observer.snapshot().at > 3 * listIntervalMs + 10_000) await observer.refresh();
    },
  };
  return { cloud, observer, cellManager, standby, podController, cloudHealth, finishedLogs, events };
}

async function main(): Promise<void> {
  const program = new Command('provider')
    .description('Kip: a Virtual Kubelet provider running every pod on its own Compute Engine VM')
    .requiredOption('--config <file>', 'provider YAML config (docs/provider-config.md)')
    .showHelpAfterError()
    .parse();
  const cfg = loadProviderConfig(program.opts<{ config: string }>().config);
  const log = createLogger('provider');
  const kc = loadKubeConfig(cfg);
  const tlsFiles = cfg.kubeletApi.tls;
  const clientCAPem = tlsFiles?.clientCAFile
    ? readConfigFile(tlsFiles.clientCAFile, 'kubeletApi.tls.clientCAFile')
    : inClusterCA(cfg);
  const servingFiles = tlsFiles?.certFile
    ? {
        certPem: readConfigFile(tlsFiles.certFile, 'kubeletApi.tls.certFile'),
        keyPem: readConfigFile(tlsFiles.keyFile!, 'kubeletApi.tls.keyFile'),
      }
    : undefined;
  const metrics = createProviderMetrics();

  const state = await StateStore.open({ endpoints: cfg.etcd.endpoints, prefix: cfg.etcd.prefix, log });
  const clusterId = await ensureClusterId(state.ns, cfg.clusterId);
  const ca = await ensureCA(state.ns);
  const cells = new CellStore(state.ns);
  const standbyCells = new StandbyStore(state.ns);
  log.info({ clusterId }, 'cluster identity ready');

  const stop = new AbortController();
  const stoppers: (() => Promise<void> | void)[] = [];
  onShutdown(log, async () => {
    stop.abort();
    for (const s of stoppers.reverse()) await s();
    state.close();
  });

  const internalIP = cfg.node.internalIP || process.env.POD_IP || '127.0.0.1';
  const core = kc.makeApiClient(CoreV1Api);

  // The node's pods, as Kubernetes has them: served on /pods, counted by phase, and the pod
  // controller's input once it is wired.
  const podInformer = new Informer<V1Pod>({
    kc,
    name: 'pods',
    path: '/api/v1/pods',
    fieldSelector: `spec.nodeName=${cfg.nodeName}`,
    list: () => core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${cfg.nodeName}` }),
    log,
  });
  const countPods = () => {
    const counts: Record<string, number> = {};
    for (const p of podInformer.list()) {
      const phase = p.status?.phase ?? 'Pending';
      counts[phase] = (counts[phase] ?? 0) + 1;
    }
    setCounts(metrics.podsByPhase, 'phase', counts, POD_PHASES);
  };
  podInformer.onChange(countPods);
  podInformer.start();
  stoppers.push(() => podInformer.stop());

  // Metering (docs/metering.md): stopped after the cell manager (stoppers run reversed), so the
  // final flush bills the last stops.
  const meter = cfg.usageReporter.url
    ? new UsageMeter({
        ns: state.ns,
        reporterUrl: cfg.usageReporter.url,
        intervalSeconds: cfg.usageReporter.intervalSeconds,
        log,
        registry: metrics.registry,
      })
    : undefined;
  if (meter) {
    meter.start();
    stoppers.push(() => meter.stop());
  }
  // The pod path needs a Compute API: the configured endpoint (the lab's emulator) or Google's
  // with credentials. Without either it stays off, rather than crash or probe for credentials.
  const podPath = cloudReachable(cfg)
    ? await startPodPath({ cfg, clusterId, ca, cells, standbyCells, core, podInformer, metrics, log, meter })
    : null;
  if (!podPath)
    log.warn(
      'no cloud.endpoint and no Google credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud ADC or in-cluster): pods bound to this node get no cells',
    );

  const serving =
    servingFiles ?? (await kubeletServingCertificate(ca, cfg.nodeName, [internalIP, '127.0.0.1']));
  const kubeletApi = await startKubeletApiServer({
    listen: cfg.kubeletApi.listen,
    tls: { ...serving, clientCAPem },
    auth:
      cfg.kubeletApi.authentication === 'webhook'
        ? new KubeletAuth({ nodeName: cfg.nodeName, ...kubernetesReviewers(kc) })
        : null,
    handlers: {
      pods: { listPods: () => podInformer.list() },
      ...(podPath
        ? kubeletHandlers({
            agents: podPath.cellManager,
            nodeName: cfg.nodeName,
            log,
            finishedLogs: podPath.finishedLogs,
            lookupPod: (ns, name) => podInformer.get(`${ns}/${name}`),
          })
        : {}),
    },
    log,
    requests: metrics.kubeletApiRequests,
  });
  stoppers.push(() => kubeletApi.close());
  if (cfg.kubeletApi.authentication === 'none') log.warn('kubelet API authentication is off (lab only)');

  // Without a Compute API the node says so (Ready=False with the reason) instead of taking pods
  // it cannot run.
  const noCloud: HealthCheck = {
    name: 'cloud',
    ping: () =>
      Promise.reject(new Error('no Compute API: set cloud.endpoint or give the provider Google credentials')),
  };
  const health: HealthCheck[] = [{ name: 'etcd', ping: () => state.ping() }, podPath?.cloudHealth ?? noCloud];
  const nodeCtl = new NodeController({
    core,
    node: desiredNode(cfg, { internalIP, kubeletPort: kubeletApi.port, clusterId }),
    health,
    log,
  });
  const leaseCtl = new LeaseController({
    coordination: kc.makeApiClient(CoordinationV1Api),
    nodeName: cfg.nodeName,
    nodeUid: () => nodeCtl.nodeUid(),
    log,
  });
  const loops = Promise.all([
    nodeCtl.run(stop.signal),
    leaseCtl.run(stop.signal),
    podPath?.podController.run(stop.signal),
  ]);
  // Reversed at shutdown: cell tasks stop first (cells and VMs stay for the next start to adopt),
  // then the loops get a few seconds to finish the work in hand.
  stoppers.push(async () => {
    await waitAtMost(loops, 5000);
  });
  stoppers.push(async () => {
    await Promise.all([podPath?.cellManager.stop(), podPath?.standby.stop()]);
    podPath?.observer.stop();
    // Events still queued get a moment to be written.
    await waitAtMost(podPath?.events.flush(), 2000);
  });

  const metricsServer: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    void (async () => {
      try {
        setCounts(metrics.cellsByState, 'state', await cells.countByState(), CELL_STATES);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'cannot count cells for metrics');
      }
      res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
      res.end(await metrics.registry.metrics());
    })();
  });
  const m = splitHostPort(cfg.metrics.listen);
  metricsServer.listen(m.port, m.host);
  await once(metricsServer, 'listening');
  stoppers.push(() => new Promise<void>((r) => metricsServer.close(() => r())));
  const metricsPort = (metricsServer.address() as AddressInfo).port;

  await Promise.race([Promise.all([nodeCtl.ready, podInformer.ready]), once(stop.signal, 'abort')]);
  if (stop.signal.aborted) return;
  log.info({ node: cfg.nodeName }, 'provider ready');
  printReadyLine({
    node: cfg.nodeName,
    clusterId,
    kubeletApi: `${kubeletApi.host}:${kubeletApi.port}`,
    kubeletPort: kubeletApi.port,
    metrics: `http://${m.host === '0.0.0.0' ? '127.0.0.1' : m.host}:${metricsPort}/metrics`,
  });
}

main().catch((err: unknown) => {
  console.error(`provider: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
