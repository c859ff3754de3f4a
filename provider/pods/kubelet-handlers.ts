/**
 * The kubelet API's handlers for the pod path: logs, exec, attach and stats go to the pod's cell
 * agent over mutual TLS (`/metrics/resource` is built from the same stats). The logs of a pod
 * that finished, whose VM is gone, come from what the provider kept (finished-logs.ts).
 */
import type { Readable } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';
import type { ApiStatus, LogOptions as AgentLogOptions } from '../../lib/cell-agent-api.ts';
import { CellAgentError, type CellAgentClient, type ExecSession } from '../../lib/cell-agent-client.ts';
import type { Logger } from '../../lib/log.ts';
import {
  InvalidInputError,
  NotFoundError,
  type AttachHandler,
  type ContainerLogsHandler,
  type ContainerRef,
  type ExecHandler,
  type LogOptions,
  type PodStats,
  type SessionResult,
  type SessionStreams,
  type StatsHandler,
  type StatsSummary,
  type StreamOptions,
} from '../kubelet-api/types.ts';
import type { FinishedLogs } from './finished-logs.ts';
import { isTerminalPhase } from './pod-status.ts';

/** Where the handlers find a pod's agent (the cell manager). */
export interface AgentDirectory {
  agentFor(namespace: string, name: string): { client: CellAgentClient; pod: V1Pod } | undefined;
  dispatchedAgents(): { client: CellAgentClient; pod: V1Pod }[];
}

export interface KubeletHandlersOptions {
  agents: AgentDirectory;
  nodeName: string;
  log: Logger;
  /** Per-cell stats timeout. Default 5 s: one slow cell must not stall metrics-server's scrape. */
  statsTimeoutMs?: number;
  /** The logs kept of finished pods whose VMs are gone; without it those pods have no logs. */
  finishedLogs?: Pick<FinishedLogs, 'get' | 'read'>;
  /** The pod as Kubernetes has it (the pod informer), to tell a finished pod from an unknown one. */
  lookupPod?: (namespace: string, name: string) => V1Pod | undefined;
}

function findTarget(agents: AgentDirectory, target: ContainerRef) {
  const found = agents.agentFor(target.namespace, target.pod);
  if (!found || (target.podUid && found.pod.metadata?.uid !== target.podUid))
    throw new NotFoundError(`pod ${target.namespace}/${target.pod} is not running on a cell of this node`);
  const container = [...(found.pod.spec?.containers ?? []), ...(found.pod.spec?.initContainers ?? [])].find(
    (c) => c.name === target.container,
  );
  if (!container) throw new NotFoundError(`container ${target.container} is not valid for pod ${target.pod}`);
  return { client: found.client, container };
}

function resolveTarget(agents: AgentDirectory, target: ContainerRef): CellAgentClient {
  return findTarget(agents, target).client;
}

/**
 * Wires an agent exec/attach session to the client's streams until it ends; resolves with the
 * Status the agent sent on channel 3 and its exit code.
 */
async function bridge(session: ExecSession, tty: boolean, streams: SessionStreams) {
  if (streams.stdout) session.stdout.pipe(streams.stdout, { end: false });
  else session.stdout.resume();
  const errOut = streams.stderr ?? (tty ? streams.stdout : null);
  if (errOut) session.stderr.pipe(errOut, { end: false });
  else session.stderr.resume();
  if (streams.stdin) {
    streams.stdin.on('data', (d: Buffer) => session.write(d));
    streams.stdin.on('end', () => session.end());
  }
  streams.onResize((s) => session.resize(s.width, s.height));
  const onAbort = () => session.close();
  streams.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const r = await session.done;
    // Let the last output frames reach the client before the status.
    await new Promise((res) => setImmediate(res));
    return r;
  } catch (err) {
    return translate(err);
  } finally {
    streams.signal.removeEventListener('abort', onAbort);
  }
}

/** Maps the agent's 404 onto the kubelet API's; other agent errors pass through. */
function translate(err: unknown): never {
  if (err instanceof CellAgentError && err.code === 404) throw new NotFoundError(err.message);
  if (err instanceof CellAgentError && err.code === 400) throw new InvalidInputError(err.message);
  throw err;
}

export function kubeletHandlers(o: KubeletHandlersOptions): {
  containerLogs: ContainerLogsHandler;
  exec: ExecHandler;
  attach: AttachHandler;
  stats: StatsHandler;
} {
  const startTime = new Date().toISOString();
  return {
    containerLogs: {
      async containerLogs(target: ContainerRef, opts: LogOptions, signal: AbortSignal): Promise<Readable> {
        const found = o.agents.agentFor(target.namespace, target.pod);
        const kept = o.finishedLogs?.get(target.namespace, target.pod);
        const live = o.lookupPod?.(target.namespace, target.pod);
        // Kept logs are the pod's own only while no other pod of that name exists; they also serve
        // while the finished pod's VM is being deleted.
        const keptFits =
          kept &&
          (!found || found.pod.metadata?.uid === kept.uid) &&
          (!o.lookupPod || live?.metadata?.uid === kept.uid);
        if (opts.stream !== 'All' && (found || keptFits))
          throw new InvalidInputError(`stream: only All is supported by Kip cells (got ${opts.stream})`);
        if (keptFits) return o.finishedLogs!.read(target.namespace, target.pod, target.container, opts);
        if (!found && live && isTerminalPhase(live.status?.phase))
          throw new NotFoundError(
            `pod ${target.namespace}/${target.pod} has finished (${live.status!.phase}) and its VM was deleted; its logs are no longer available (the provider keeps finished pods' logs in memory until it restarts, within cells.finishedLogBudgetBytes)`,
          );
        const client = resolveTarget(o.agents, target);
        const q: AgentLogOptions = {
          follow: opts.follow,
          previous: opts.previous,
          timestamps: opts.timestamps,
        };
        if (opts.tailLines !== undefined) q.tailLines = opts.tailLines;
        if (opts.limitBytes !== undefined) q.limitBytes = opts.limitBytes;
        if (opts.sinceSeconds !== undefined) q.sinceSeconds = opts.sinceSeconds;
        if (opts.sinceTime) q.sinceTime = opts.sinceTime.toISOString();
        try {
          return await client.logs(target.container, q, signal);
        } catch (err) {
          return translate(err);
        }
      },
    },
    exec: {
      async exec(
        target: ContainerRef,
        command: string[],
        opts: StreamOptions,
        streams: SessionStreams,
      ): Promise<SessionResult> {
        const client = resolveTarget(o.agents, target);
        const session = client.exec(target.container, command, {
          stdin: opts.stdin,
          stdout: opts.stdout,
          // A tty merges stderr into stdout on the client side.
          stderr: opts.stderr || opts.tty,
        });
        const r = await bridge(session, opts.tty, streams);
        return { exitCode: r.exitCode };
      },
    },
    attach: {
      async attach(
        target: ContainerRef,
        opts: StreamOptions,
        streams: SessionStreams,
      ): Promise<SessionResult> {
        const { client, container } = findTarget(o.agents, target);
        // Checked here too, so the answer does not depend on reaching the cell.
        if (opts.stdin && !container.stdin)
          throw new InvalidInputError(
            `container ${container.name} was not started with stdin: true, so it has no stdin to attach to; attach without -i`,
          );
        const session = client.attach(target.container, {
          stdin: opts.stdin,
          stdout: opts.stdout,
          stderr: opts.stderr,
        });
        const r = await bridge(session, false, streams);
        // The attach ends with Success when the container exits; a Failure is the agent refusing
        // or detaching us, and its code (a 400 for a container that just exited) goes to the client.
        if (r.status.status !== 'Success')
          throw new CellAgentError(
            Number(r.status.code) || 500,
            String(r.status.message ?? 'the cell agent ended the attach'),
            r.status as unknown as ApiStatus,
          );
        return { exitCode: 0 };
      },
    },
    stats: {
      async statsSummary(): Promise<StatsSummary> {
        const timeout = o.statsTimeoutMs ?? 5000;
        const results = await Promise.all(
          o.agents.dispatchedAgents().map(async ({ client, pod }) => {
            try {
              return (await Promise.race([
                client.stats(),
                new Promise<never>((_, rej) =>
                  setTimeout(() => rej(new Error('timed out')), timeout).unref(),
                ),
              ])) as PodStats;
            } catch (err) {
              o.log.debug({ pod: pod.metadata?.name, err: (err as Error).message }, 'no stats from cell');
              return null;
            }
          }),
        );
        const pods = results.filter((p): p is PodStats => p !== null);
        const time = new Date().toISOString();
        let cores = 0;
        let coreSeconds = 0;
        let working = 0;
        let usage = 0;
        for (const p of pods) {
          cores += p.cpu?.usageNanoCores ?? 0;
          coreSeconds += p.cpu?.usageCoreNanoSeconds ?? 0;
          working += p.memory?.workingSetBytes ?? 0;
          usage += p.memory?.usageBytes ?? 0;
        }
        return {
          node: {
            nodeName: o.nodeName,
            startTime,
            cpu: { time, usageNanoCores: cores, usageCoreNanoSeconds: coreSeconds },
            memory: { time, usageBytes: usage, workingSetBytes: working },
          },
          pods,
        };
      },
    },
  };
}
