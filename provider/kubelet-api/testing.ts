import { Readable } from 'node:stream';
import { WebSocket } from 'ws';
import {
  NotFoundError,
  type ContainerRef,
  type KubeletApiHandlers,
  type LogOptions,
  type StatsSummary,
  type TerminalSize,
} from './types.ts';

/** Test fixtures: a stats summary, handlers behaving like a tiny runtime, and a channel-protocol client. */
export const summary: StatsSummary = {
  node: {
    nodeName: 'kip',
    startTime: '2026-01-01T00:00:00Z',
    cpu: { time: '2026-01-01T00:10:00Z', usageNanoCores: 5e8, usageCoreNanoSeconds: 3e11 },
    memory: { time: '2026-01-01T00:10:00Z', workingSetBytes: 2e9 },
  },
  pods: [
    {
      podRef: { name: 'web', namespace: 'default', uid: 'u1' },
      startTime: '2026-01-01T00:01:00Z',
      cpu: { time: '2026-01-01T00:10:00Z', usageCoreNanoSeconds: 1.5e9 },
      memory: { time: '2026-01-01T00:10:00Z', workingSetBytes: 1048576 },
      containers: [
        {
          name: 'nginx',
          startTime: '2026-01-01T00:01:05Z',
          cpu: { time: '2026-01-01T00:10:00Z', usageCoreNanoSeconds: 1.5e9 },
          memory: { time: '2026-01-01T00:10:00Z', workingSetBytes: 1048576 },
        },
        { name: 'idle', startTime: '2026-01-01T00:01:05Z' },
      ],
    },
  ],
};

/** Handlers that behave like a tiny container runtime and record what they were asked. */
export function testHandlers() {
  const seen: {
    logs: { target: ContainerRef; opts: LogOptions }[];
    exec: { target: ContainerRef; command: string[] }[];
    resizes: TerminalSize[];
  } = {
    logs: [],
    exec: [],
    resizes: [],
  };
  let followStopped: () => void = () => {};
  const followEnded = new Promise<void>((r) => (followStopped = r));
  const handlers: KubeletApiHandlers = {
    containerLogs: {
      async containerLogs(target, opts, signal) {
        seen.logs.push({ target, opts });
        if (target.pod !== 'web') throw new NotFoundError(`pod "${target.pod}" not found`);
        const lines = ['line 1\n', 'line 2\n', 'line 3\n'];
        const tail = opts.tailLines === undefined ? lines : lines.slice(-opts.tailLines);
        if (!opts.follow) return Readable.from(tail.map((l) => Buffer.from(l)));
        return Readable.from(
          (async function* () {
            yield* tail.map((l) => Buffer.from(l));
            for (let i = 4; !signal.aborted; i++) {
              yield Buffer.from(`line ${i}\n`);
              await new Promise((r) => setTimeout(r, 20));
            }
            followStopped();
          })(),
        );
      },
    },
    exec: {
      async exec(target, command, opts, streams) {
        seen.exec.push({ target, command });
        if (target.container === 'missing') throw new NotFoundError(`container "missing" not found`);
        streams.onResize((s) => seen.resizes.push(s));
        if (command[0] === 'cat' && streams.stdin) {
          for await (const chunk of streams.stdin)
            streams.stdout?.write((chunk as Buffer).toString().toUpperCase());
          return { exitCode: 0 };
        }
        streams.stdout?.write(`ran ${command.join(' ')} tty=${opts.tty}\n`);
        streams.stderr?.write('to stderr\n');
        return { exitCode: Number(command[1] ?? 0) };
      },
    },
    stats: { statsSummary: async () => summary },
    pods: {
      listPods: () => [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default' } }],
    },
  };
  return { handlers, seen, followEnded };
}

/** Opens a channel-protocol WebSocket and collects what arrives per channel. */
export async function wsSession(
  url: string,
  opts: {
    ca: string;
    cert?: string;
    key?: string;
    token?: string;
    protocol?: string;
    send?: (ws: WebSocket) => void;
  },
): Promise<{ status: number; channels: Record<number, string>; protocol?: string; body?: string }> {
  const ws = new WebSocket(url, [opts.protocol ?? 'v4.channel.k8s.io'], {
    ca: opts.ca,
    cert: opts.cert,
    key: opts.key,
    headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
  });
  const channels: Record<number, string> = {};
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, channels, body }));
    });
    ws.on('open', () => opts.send?.(ws));
    ws.on('message', (data: Buffer) => {
      const ch = data[0]!;
      channels[ch] = (channels[ch] ?? '') + data.subarray(1).toString();
    });
    ws.on('close', () => resolve({ status: 101, channels, protocol: ws.protocol }));
    ws.on('error', reject);
  });
}
