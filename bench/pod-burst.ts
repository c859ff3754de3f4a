// Pod burst: N pods (default 1000) created already bound to the virtual node at once, with every
// cell served by the cell simulator (emulators/cell-sim) speaking the real agent API over mutual
// TLS, so what is measured is the provider's own cost: bind → Running latency with no boot delay
// (the Compute Engine emulator's delays are 0), pods per second, Compute API calls and Kubernetes
// API requests per pod (counted by the emulators), provider RSS and CPU seconds per 1000 pods.
//
// The whole lab runs in a private network namespace where 198.18.0.0/15 is local (an AnyIP
// route on its loopback), so the provider's connections to <cell IP>:6421 reach the simulator and
// nothing touches the host's network. Needs root.
//
//   npx tsx bench/pod-burst.ts [--pods 1000] [--concurrency 64] [--rate <pods/s>] [--timeout 600]
//
// Without --rate every pod is created as fast as the API takes them (the burst); with it, pods
// arrive at that steady rate, which shows the provider's per-pod latency without a queue ahead.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, Watch, type V1Pod } from '@kubernetes/client-node';
import { Command, InvalidArgumentError } from 'commander';
import { startDaemon, stopPid } from '../scripts/lab/daemon.ts';
import { labDown, labUp, REPO_ROOT } from '../scripts/lab/lab.ts';
import { tsxCommand } from '../scripts/lab/compute.ts';
import { pct } from './percentile.ts';

const CELL_BLOCK = '198.18.0.0/15';
/** After the last pod is Running, how long trailing events and status writes get before counting. */
const SETTLE_MS = 5000;

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return n;
}

const opts = new Command('pod-burst')
  .option('--pods <n>', 'pods created at once', positive, 1000)
  .option('--concurrency <n>', 'concurrent creates', positive, 64)
  .option('--rate <n>', 'create at this many pods per second instead of all at once', positive)
  .option('--timeout <s>', 'seconds to wait for every pod to run', positive, 600)
  .option('--provider-node-options <opts>', 'NODE_OPTIONS for the provider (e.g. an --import profiler)')
  .option('--inside', 'internal: already in the private network namespace')
  .parse()
  .opts<{
    pods: number;
    concurrency: number;
    rate?: number;
    timeout: number;
    providerNodeOptions?: string;
    inside?: boolean;
  }>();

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

/** Creates the namespace, re-runs this script inside it, removes it whatever happens. */
async function outside(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('needs root (it creates a network namespace)');
  const ns = `kpb-${process.pid.toString(36)}`;
  ip(['netns', 'add', ns]);
  try {
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    ip(['-n', ns, 'route', 'add', 'local', CELL_BLOCK, 'dev', 'lo']);
    const self = fileURLToPath(import.meta.url);
    const child = spawn(
      'nsenter',
      [
        `--net=/var/run/netns/${ns}`,
        process.execPath,
        '--import',
        'tsx',
        self,
        '--inside',
        '--pods',
        String(opts.pods),
        '--concurrency',
        String(opts.concurrency),
        ...(opts.rate ? ['--rate', String(opts.rate)] : []),
        '--timeout',
        String(opts.timeout),
        ...(opts.providerNodeOptions ? ['--provider-node-options', opts.providerNodeOptions] : []),
      ],
      { stdio: 'inherit', cwd: REPO_ROOT },
    );
    return await new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  } finally {
    // Anything the inner run left behind (it stops its lab itself unless it was killed).
    for (const pid of ip(['netns', 'pids', ns]).split('\n').filter(Boolean)) await stopPid(Number(pid), 3000);
    ip(['netns', 'delete', ns]);
  }
}

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat (12 and 13 after the command), in clock ticks (100/s).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function memoryMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Requests the Kubernetes API emulator served, in total and by verb and resource. */
async function kubeRequests(metricsUrl: string): Promise<{ total: number; byKind: Record<string, number> }> {
  const text = await (await fetch(metricsUrl)).text();
  let total = 0;
  const byKind: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('kube_emulator_requests_total{')) continue;
    const n = Number(line.split(' ').pop());
    total += n;
    const label = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(line)?.[1] ?? '';
    const kind = `${label('verb')} ${label('resource')}`;
    byKind[kind] = (byKind[kind] ?? 0) + n;
  }
  return { total, byKind };
}

/** The provider's JS heap and off-heap (external) memory, MiB, from its Prometheus metrics. */
async function providerHeap(metricsUrl: string): Promise<{ heapUsed: number; external: number }> {
  const text = await (await fetch(metricsUrl)).text();
  const gauge = (name: string) =>
    Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 1024 / 1024;
  return {
    heapUsed: Math.round(gauge('kip_provider_nodejs_heap_size_used_bytes')),
    external: Math.round(gauge('kip_provider_nodejs_external_memory_bytes')),
  };
}

async function computeCalls(
  adminUrl: string,
): Promise<{ total: number; byMethod: Record<string, { total: number }> }> {
  return (await (await fetch(`${adminUrl}/calls`)).json()) as {
    total: number;
    byMethod: Record<string, { total: number }>;
  };
}

async function inside(): Promise<void> {
  const n = opts.pods;
  const dir = mkdtempSync(join(tmpdir(), `kip-bench-pod-burst-${process.pid}-`));
  console.log(`pod-burst: starting a lab (none hypervisor, cell simulator) in ${dir}`);
  const { state } = await labUp({
    dir,
    registryPort: 0,
    seedImage: false,
    compute: {
      hypervisor: 'none',
      config: {
        delays: { operationPendingMs: 0, provisioningMs: 0, stagingMs: 0, deleteMs: 0, otherMs: 0 },
        quotas: { limits: { CPUS: 1e7, INSTANCES: 1e7, DISKS_TOTAL_GB: 1e9, SSD_TOTAL_GB: 1e9 } },
      },
    },
    // The client-side limiter is sized to a project's quota; here the quota is unlimited.
    providerConfig: { cloud: { readRequestsPerMinute: 1_000_000, writeRequestsPerMinute: 1_000_000 } },
    providerEnv: {
      LOG_LEVEL: 'warn',
      ...(opts.providerNodeOptions ? { NODE_OPTIONS: opts.providerNodeOptions } : {}),
    },
  });
  const sim = await startDaemon({
    part: 'cell-sim',
    ...tsxCommand(REPO_ROOT, 'emulators/cell-sim/main.ts', [
      '--compute-admin',
      state.compute!.admin,
      '--zones',
      state.compute!.zones.join(','),
      '--listen',
      '0.0.0.0:6421',
    ]),
    cwd: REPO_ROOT,
    env: { LOG_LEVEL: 'warn' },
    logFile: join(dir, 'logs', 'cell-sim.log'),
    ready: 'line',
  });
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(state.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const providerPid = state.provider!.pid;
    const bound = new Map<string, number>();
    const running = new Map<string, number>();
    let allRunning!: () => void;
    const done = new Promise<void>((r) => (allRunning = r));
    const watch = await new Watch(kc).watch(
      '/api/v1/namespaces/default/pods',
      {},
      (_type: string, pod: V1Pod) => {
        const name = pod.metadata?.name ?? '';
        if (pod.status?.phase === 'Running' && !running.has(name)) {
          running.set(name, performance.now());
          if (running.size === n) allRunning();
        }
      },
      () => undefined,
    );
    await new Promise((r) => setTimeout(r, 500));
    const cpu0 = cpuSeconds(providerPid);
    // Every part of the lab shares the machine's cores: their CPU says how much of the burst is
    // the provider's and how much the emulators' and etcd's.
    const parts: Record<string, number> = {
      'kube emulator': state.kube!.pid,
      'compute emulator': state.compute!.pid,
      'cell simulator': sim.pid,
      etcd: state.etcd!.pid,
    };
    const partsCpu0 = Object.fromEntries(Object.entries(parts).map(([k, pid]) => [k, cpuSeconds(pid)]));
    const rss0 = memoryMiB(providerPid, 'VmRSS');
    const calls0 = await computeCalls(state.compute!.admin);
    const kube0 = await kubeRequests(state.kube!.metrics);

    const pod = (i: number): V1Pod => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `burst-${i}`, namespace: 'default' },
      spec: {
        nodeName: state.provider!.node,
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
        containers: [
          {
            name: 'c',
            image: `${state.registry!.host}/kip-examples/busybox:1`,
            command: ['sleep', '3600'],
            resources: { requests: { cpu: '100m', memory: '64Mi' } },
          },
        ],
      },
    });
    console.log(
      `pod-burst: creating ${n} pods bound to node ${state.provider!.node} (${opts.rate ? `${opts.rate}/s` : `${opts.concurrency} at a time`})`,
    );
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        while (next < n) {
          const i = next++;
          if (opts.rate) {
            const due = t0 + (i * 1000) / opts.rate - performance.now();
            if (due > 0) await new Promise((r) => setTimeout(r, due));
          }
          await core.createNamespacedPod({ namespace: 'default', body: pod(i) });
          bound.set(`burst-${i}`, performance.now());
        }
      }),
    );
    const createdIn = (performance.now() - t0) / 1000;
    const timeout = new Promise<'timeout'>((r) =>
      setTimeout(() => r('timeout'), opts.timeout * 1000).unref(),
    );
    // Progress every 2 s: pods Running, the provider's cells by state and its queues' depth.
    const progress = setInterval(() => {
      void (async () => {
        const text = await (await fetch(state.provider!.metrics)).text();
        const series = (name: string, label: string) =>
          [...text.matchAll(new RegExp(`^${name}\\{[^}]*${label}="([^"]+)"[^}]*\\} (\\S+)`, 'gm'))]
            .filter((m) => Number(m[2]) > 0)
            .map((m) => `${m[1]} ${m[2]}`)
            .join(', ');
        console.log(
          `  ${((performance.now() - t0) / 1000).toFixed(0)} s: ${running.size}/${n} Running; cells: ${series('kip_cells', 'state')}; queues: ${series('kip_workqueue_depth', 'queue') || 'empty'}`,
        );
      })().catch(() => undefined);
    }, 2000);
    const outcome = await Promise.race([done.then(() => 'ok' as const), timeout]);
    clearInterval(progress);
    const t1 = performance.now();
    watch.abort();
    // Events and the last status writes trail the Running status; count them too.
    console.log(
      `pod-burst: all Running after ${((t1 - t0) / 1000).toFixed(1)} s; ${SETTLE_MS / 1000} s for trailing writes`,
    );
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const cpu1 = cpuSeconds(providerPid);
    const labCpu: Record<string, number> = { provider: Number((cpu1 - cpu0).toFixed(1)) };
    for (const [k, pid] of Object.entries(parts))
      labCpu[k] = Number((cpuSeconds(pid) - partsCpu0[k]!).toFixed(1));
    const rss1 = memoryMiB(providerPid, 'VmRSS');
    const hwm = memoryMiB(providerPid, 'VmHWM');
    const heap = await providerHeap(state.provider!.metrics);
    const calls1 = await computeCalls(state.compute!.admin);
    // The bench's own requests: n creates and one watch.
    const kube1 = await kubeRequests(state.kube!.metrics);
    kube1.total -= n + 1;
    const kubeByKind: Record<string, number> = {};
    for (const [k, v] of Object.entries(kube1.byKind)) {
      const d = v - (kube0.byKind[k] ?? 0) - (k === 'create pods' ? n : 0);
      if (d / n >= 0.005) kubeByKind[k] = Number((d / n).toFixed(2));
    }

    const latencies = [...running].map(([name, t]) => (t - bound.get(name)!) / 1000);
    const seconds = (Math.max(...running.values()) - t0) / 1000;
    const computePerPod = (calls1.total - calls0.total) / n;
    const byMethod: Record<string, number> = {};
    for (const [m, v] of Object.entries(calls1.byMethod)) {
      const d = v.total - (calls0.byMethod[m]?.total ?? 0);
      if (d > 0) byMethod[m] = Number((d / n).toFixed(3));
    }
    const result = {
      bench: 'pod-burst',
      pods: n,
      running: running.size,
      complete: outcome === 'ok',
      createSeconds: Number(createdIn.toFixed(2)),
      bindToRunningP50Seconds: Number(pct(latencies, 50).toFixed(3)),
      bindToRunningP99Seconds: Number(pct(latencies, 99).toFixed(3)),
      bindToRunningMaxSeconds: Number(Math.max(...latencies).toFixed(3)),
      podsPerSecond: Number((running.size / seconds).toFixed(1)),
      computeCallsPerPod: Number(computePerPod.toFixed(2)),
      computeCallsPerPodByMethod: byMethod,
      kubeRequestsPerPod: Number(((kube1.total - kube0.total) / n).toFixed(2)),
      kubeRequestsPerPodByKind: kubeByKind,
      providerRssMiB: { before: Math.round(rss0), after: Math.round(rss1), peak: Math.round(hwm) },
      providerRssMiBPer1000Pods: Math.round(((rss1 - rss0) * 1000) / n),
      providerHeapMiB: heap,
      providerCpuSecondsPer1000Pods: Number((((cpu1 - cpu0) * 1000) / n).toFixed(1)),
      wallSeconds: Number(((t1 - t0) / 1000).toFixed(1)),
      labCpuSeconds: labCpu,
    };
    console.log(
      `pods Running:                ${running.size}/${n}${outcome === 'ok' ? '' : ` (timed out after ${opts.timeout} s)`}`,
    );
    console.log(`creates took:                ${result.createSeconds} s`);
    console.log(
      `bind → Running (no boot):    p50 ${result.bindToRunningP50Seconds} s, p99 ${result.bindToRunningP99Seconds} s, max ${result.bindToRunningMaxSeconds} s`,
    );
    console.log(`pods per second:             ${result.podsPerSecond}`);
    console.log(`Compute API calls per pod:   ${result.computeCallsPerPod} ${JSON.stringify(byMethod)}`);
    console.log(`Kubernetes requests per pod: ${result.kubeRequestsPerPod} ${JSON.stringify(kubeByKind)}`);
    console.log(
      `provider RSS:                ${result.providerRssMiB.before} → ${result.providerRssMiB.after} MiB (peak ${result.providerRssMiB.peak})`,
    );
    console.log(`provider heap after:         ${heap.heapUsed} MiB used, ${heap.external} MiB external`);
    console.log(`provider CPU per 1000 pods:  ${result.providerCpuSecondsPer1000Pods} s`);
    console.log(
      `lab CPU during the run:      ${Object.entries(labCpu)
        .map(([k, v]) => `${k} ${v} s`)
        .join(', ')} (${result.wallSeconds} s of wall time)`,
    );
    console.log(JSON.stringify(result));
    if (outcome !== 'ok') process.exitCode = 1;
  } finally {
    await stopPid(sim.pid, 5000);
    await labDown(dir);
  }
}

(opts.inside ? inside().then(() => Number(process.exitCode ?? 0)) : outside()).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`pod-burst: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
