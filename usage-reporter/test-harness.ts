import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startNpmScript, type StartedProcess } from '../test/support/process.ts';
import { UsageReporterClient, type ReporterStatus } from '../lib/usage-reporter-client.ts';
import type { MetricTotal, RecordedOperation } from '../emulators/servicecontrol/operations.ts';
import type { Fault } from '../emulators/servicecontrol/faults.ts';

/** Test and benchmark plumbing: the emulator and the reporter as child processes, as a user runs them. */

/**
 * Stops a server started through npm by signalling its own process (the `pid` of its ready line):
 * npm runs it under `sh -c`, which does not pass signals on, so signalling npm would orphan it.
 * Resolves with the exit code npm passes on; SIGKILL after `graceMs`.
 */
export async function stopServer(proc: StartedProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 8000) {
  const child = proc.proc;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const pid = Number(proc.ready.pid);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const signalPid = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      // already gone
    }
  };
  signalPid(signal);
  const t = setTimeout(() => signalPid('SIGKILL'), graceMs);
  const code = await exited;
  clearTimeout(t);
  return code;
}

export const SERVICE = 'kip.mp-kip-test.appspot.com';
export const CONSUMER = 'project:acme-billing';

export interface Recorded {
  operations: RecordedOperation[];
  totals: Record<string, MetricTotal>;
  duplicates: number;
  checks: number;
  reports: number;
}

export class EmulatorHandle {
  constructor(
    readonly proc: StartedProcess,
    readonly rootUrl: string,
  ) {}

  static async start(args: string[] = []): Promise<EmulatorHandle> {
    const proc = await startNpmScript('servicecontrol-emulator', ['--port', '0', ...args], {
      env: { LOG_LEVEL: 'warn' },
    });
    return new EmulatorHandle(proc, String(proc.ready.rootUrl));
  }

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(new URL(path, this.rootUrl), {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.json()) as unknown;
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }

  recorded(): Promise<Recorded> {
    return this.call('GET', '/admin/operations') as Promise<Recorded>;
  }

  setFaults(faults: Fault[]): Promise<unknown> {
    return this.call('PUT', '/admin/faults', { faults });
  }

  setConsumer(consumerId: string, checkError: string | null): Promise<unknown> {
    return this.call('PUT', `/admin/consumers/${encodeURIComponent(consumerId)}`, { checkError });
  }

  /** The billed int64 total of `<SERVICE>/<metric>`, as a bigint (0 when nothing billed). */
  async total(metric: string): Promise<bigint> {
    const t = (await this.recorded()).totals[`${SERVICE}/${metric}`];
    return BigInt(t?.int64Value ?? 0);
  }

  stop(): Promise<number | null> {
    return stopServer(this.proc);
  }
}

/** A temporary directory holding the agent's config, state dir and report dir. */
export class ReporterHome {
  readonly dir = mkdtempSync(join(tmpdir(), `kip-usage-${process.pid}-`));
  readonly config = join(this.dir, 'agent.yaml');
  readonly stateDir = join(this.dir, 'state');
  readonly reportDir = join(this.dir, 'reports');

  /** The reporter's flags for this home: its config, its state dir, the local API on a free port. */
  flags(): string[] {
    return ['--config', this.config, '--state-dir', this.stateDir, '--local-port', '0'];
  }

  writeConfig(cfg: unknown): void {
    writeFileSync(this.config, typeof cfg === 'string' ? cfg : stringify(cfg));
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A config with an aggregated int metric `requests`, a passthrough int metric `cell_seconds`, to Service Control. */
export function baseConfig(rootUrl: string, opts: { bufferSeconds?: number; extra?: object } = {}): object {
  return {
    identities: [{ name: 'gcp', gcp: { encodedServiceAccountKey: '$AGENT_ENCODED_KEY' } }],
    metrics: [
      {
        name: 'requests',
        type: 'int',
        endpoints: [{ name: 'servicecontrol' }],
        aggregation: { bufferSeconds: opts.bufferSeconds ?? 0.3 },
      },
      { name: 'cell_seconds', type: 'int', endpoints: [{ name: 'servicecontrol' }], passthrough: {} },
      {
        name: 'memory_gib_seconds',
        type: 'double',
        endpoints: [{ name: 'servicecontrol' }],
        passthrough: {},
      },
    ],
    endpoints: [
      {
        name: 'servicecontrol',
        servicecontrol: { identity: 'gcp', serviceName: SERVICE, consumerId: '$AGENT_CONSUMER_ID', rootUrl },
      },
    ],
    ...opts.extra,
  };
}

export class ReporterHandle {
  readonly client: UsageReporterClient;

  constructor(
    readonly proc: StartedProcess,
    readonly url: string,
    readonly pid: number,
  ) {
    this.client = new UsageReporterClient({ baseUrl: url, timeoutMs: 5000 });
  }

  /** `npm run -s usage-reporter` with fast retry settings unless `args` says otherwise. */
  static async start(
    home: ReporterHome,
    args: string[] = [],
    env: NodeJS.ProcessEnv = {},
  ): Promise<ReporterHandle> {
    const proc = await startNpmScript(
      'usage-reporter',
      [
        ...home.flags(),
        '--min-retry-delay',
        '50ms',
        '--max-retry-delay',
        '200ms',
        '--shutdown-drain',
        '3s',
        ...args,
      ],
      {
        env: {
          LOG_LEVEL: 'info',
          AGENT_ENCODED_KEY: 'placeholder-not-a-key',
          AGENT_CONSUMER_ID: CONSUMER,
          ...env,
        },
      },
    );
    return new ReporterHandle(proc, String(proc.ready.url), Number(proc.ready.pid));
  }

  status(): Promise<ReporterStatus> {
    return this.client.status();
  }

  /** SIGTERM to the reporter's own process (as Kubernetes sends it); resolves with its exit code. */
  terminate(): Promise<number | null> {
    return stopServer(this.proc, 'SIGTERM');
  }

  /** kill -9 of the reporter's node process; resolves when it is gone. */
  async kill9(): Promise<void> {
    await stopServer(this.proc, 'SIGKILL');
  }

  /** Waits until nothing is aggregating or queued on any endpoint. */
  async settled(timeoutMs = 15000): Promise<ReporterStatus> {
    return waitFor(
      async () => {
        const s = await this.status();
        const idle =
          Object.keys(s.aggregating).length === 0 && Object.values(s.endpoints).every((e) => e.queued === 0);
        return idle ? s : undefined;
      },
      timeoutMs,
      'reporter to send everything',
    );
  }
}

/** Polls `probe` until it returns a value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function report(name: string, value: number | string, labels: Record<string, string> = {}) {
  const now = new Date().toISOString();
  return { name, startTime: now, endTime: now, value: { int64Value: value }, labels };
}
