/**
 * Assembles the emulator: store, resource table, controllers (namespaces, CRDs, optional
 * scheduler) and the HTTP server. `startKubeEmulator` is what main.ts runs; tests and benchmarks
 * can also run it in-process.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Counter, Gauge } from 'prom-client';
import type { Logger } from '../../lib/log.ts';
import { createMetricsRegistry } from '../../lib/metrics.ts';
import { AccessRules, type AuthzConfig } from './access-review.ts';
import { CRD_KEY, CrdController, establish, validateCrd } from './crd.ts';
import { NamespaceLifecycle } from './namespaces.ts';
import { ObjectService } from './objects.ts';
import { OpenApiDocuments } from './openapi.ts';
import { ResourceRegistry } from './resources.ts';
import { Scheduler } from './scheduler.ts';
import { createHandler } from './server.ts';
import { Store } from './store.ts';
import { TokenIssuer } from './tokens.ts';
import { activeWatchCount } from './watch-handler.ts';

export interface KubeEmulatorOptions {
  log: Logger;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Port; 0 (default) picks a free one. */
  port?: number;
  /** Run the built-in scheduler. */
  scheduler?: boolean;
  /** Watch history length in events; older resourceVersions get 410 Expired. Default 20000. */
  historySize?: number;
  /** Interval between BOOKMARK events on watches that allow them. Default 10 s. */
  bookmarkIntervalMs?: number;
  /** Watches without timeoutSeconds end after this times a random factor in [1, 2). Default 30 min. */
  minRequestTimeoutMs?: number;
  /** SubjectAccessReview deny rules. */
  authz?: AuthzConfig;
  /** The bearer token written into the kubeconfig; random when absent. */
  adminToken?: string;
}

export interface KubeEmulator {
  url: string;
  port: number;
  adminToken: string;
  store: Store;
  registry: ResourceRegistry;
  objects: ObjectService;
  rules: AccessRules;
  server: Server;
  close(): Promise<void>;
}

export async function startKubeEmulator(opts: KubeEmulatorOptions): Promise<KubeEmulator> {
  const log = opts.log;
  const registry = new ResourceRegistry();
  const crdDef = registry.get('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')!;
  crdDef.validate = validateCrd;
  crdDef.prepareCreate = establish;
  crdDef.prepareUpdate = establish;
  const store = new Store(opts.historySize ?? 20_000);
  const objects = new ObjectService(store);
  const rules = new AccessRules(opts.authz);
  const tokens = new TokenIssuer();
  const openapi = new OpenApiDocuments(registry);
  const stops: (() => void)[] = [];
  stops.push(new CrdController(registry, store).start());
  const namespaces = new NamespaceLifecycle(registry, store, objects, log);
  stops.push(namespaces.start());
  if (opts.scheduler) stops.push(new Scheduler(store, log).start());

  const metrics = createMetricsRegistry('kube_emulator');
  const requests = new Counter({
    name: 'kube_emulator_requests_total',
    help: 'API requests by verb, resource and HTTP code',
    labelNames: ['verb', 'resource', 'code'] as const,
    registers: [metrics],
  });
  const watchEvents = new Counter({
    name: 'kube_emulator_watch_events_total',
    help: 'Watch events sent to clients',
    registers: [metrics],
  });
  const gauges: [name: string, help: string, read: () => number][] = [
    ['kube_emulator_watches', 'Open watch streams', activeWatchCount],
    ['kube_emulator_objects', 'Stored objects', () => store.count()],
    ['kube_emulator_resource_version', 'Current global resourceVersion', () => store.currentRv()],
    ['kube_emulator_crds', 'Stored CustomResourceDefinitions', () => store.count(CRD_KEY)],
  ];
  for (const [name, help, read] of gauges)
    new Gauge({
      name,
      help,
      registers: [metrics],
      collect() {
        this.set(read());
      },
    });

  const adminToken = opts.adminToken ?? randomBytes(24).toString('base64url');
  let address = '';
  const handlers = createHandler({
    registry,
    store,
    objects,
    namespaces,
    openapi,
    tokens,
    rules,
    log,
    requests,
    watchEvents,
    watch: {
      bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 10_000,
      minRequestTimeoutMs: opts.minRequestTimeoutMs ?? 1_800_000,
      maxBufferedBytes: 64 * 1024 * 1024,
    },
    metricsText: async () => ({ contentType: metrics.contentType, body: await metrics.metrics() }),
    serverAddress: () => address,
  });
  const server = createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, handlers.request);
  server.on('upgrade', handlers.upgrade);
  // Every socket, including streaming watches and spliced exec streams, so a stop never waits.
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  address = `${opts.host ?? '127.0.0.1'}:${port}`;
  const url = `http://${address}`;
  return {
    url,
    port,
    adminToken,
    store,
    registry,
    objects,
    rules,
    server,
    close: async () => {
      for (const s of stops) s();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
