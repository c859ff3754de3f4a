import { PassThrough, Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import { CellAgentError } from '../../lib/cell-agent-client.ts';
import {
  InvalidInputError,
  type SessionResult,
  type SessionStreams,
  type StreamOptions,
  type TerminalSize,
} from './types.ts';

/**
 * The Kubernetes remote-command channel protocol over WebSocket, as the kubelet serves it for exec
 * and attach. Each binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr,
 * 3 error/status, 4 resize; v5 adds 255 "close channel" so a client can end stdin alone.
 * The base64 variants send text frames: the channel as an ASCII digit, then base64 data.
 */
export const SUBPROTOCOLS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'channel.k8s.io',
  'base64.channel.k8s.io',
] as const;
export type Subprotocol = (typeof SUBPROTOCOLS)[number];

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const CLOSE = 255;

/** The best protocol both sides speak, preferring newer ones; null when none matches. */
export function pickSubprotocol(offered: Set<string>): Subprotocol | null {
  return SUBPROTOCOLS.find((p) => offered.has(p)) ?? null;
}

const TRUE = new Set(['1', 'true', 'True', 'TRUE', 't', 'T']);

/**
 * Reads which streams the session carries. The API server sends `input/output/error`; clients
 * talking to a kubelet directly may use `stdin/stdout/stderr`.
 */
export function parseStreamOptions(q: URLSearchParams): StreamOptions {
  const flag = (a: string, b: string) => TRUE.has(q.get(a) ?? q.get(b) ?? '');
  const opts = {
    stdin: flag('input', 'stdin'),
    stdout: flag('output', 'stdout'),
    stderr: flag('error', 'stderr'),
    tty: flag('tty', 'tty'),
  };
  if (opts.tty && opts.stderr) {
    throw new InvalidInputError(
      '"tty" and "error" cannot both be true: a terminal merges stderr into stdout',
    );
  }
  if (!opts.stdin && !opts.stdout && !opts.stderr) {
    throw new InvalidInputError('at least one of "input", "output" or "error" must be true');
  }
  return opts;
}

/** The Status a v4+ client reads on the error channel when the session ends. */
export function exitStatus(result: SessionResult, command: string[]): Record<string, unknown> {
  if (result.exitCode === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${result.exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(result.exitCode) }] },
  };
}

// Reasons of the Status for a 4xx, as the API server names them (metav1.StatusReason).
const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Gone',
  422: 'Invalid',
  429: 'TooManyRequests',
};

/**
 * The HTTP code a session error stands for: 404 and 400 for the kubelet API's own errors, the
 * agent's code for a 4xx the cell agent answered (CellAgentError carries it), else 500.
 */
function codeOf(err: Error): number {
  if (err.name === 'NotFoundError') return 404;
  if (err.name === 'InvalidInputError') return 400;
  const code = (err as { code?: unknown }).code;
  if (err instanceof CellAgentError && typeof code === 'number' && code >= 400 && code < 500) return code;
  return 500;
}

/**
 * The Status for a session that failed before or while running. A refusal (not found, a bad
 * request, the agent's 4xx with its reason) keeps its code; anything else is an internal error.
 */
export function errorStatus(err: Error): Record<string, unknown> {
  const code = codeOf(err);
  const agentReason = err instanceof CellAgentError ? err.status?.reason : undefined;
  const reason = code === 500 ? 'InternalError' : (agentReason ?? REASONS[code] ?? 'BadRequest');
  return { metadata: {}, status: 'Failure', message: err.message, reason, code };
}

/**
 * Bridges an upgraded WebSocket to SessionStreams, runs `session`, then reports its outcome on the
 * error channel and closes. Output respects WebSocket backpressure.
 */
export async function runSession(
  ws: WebSocket,
  opts: StreamOptions,
  command: string[],
  session: (streams: SessionStreams) => Promise<SessionResult>,
): Promise<void> {
  const protocol = ws.protocol as Subprotocol;
  const base64 = protocol.includes('base64');
  const versioned = protocol.startsWith('v');
  const abort = new AbortController();
  const resizeListeners: ((s: TerminalSize) => void)[] = [];
  const stdin = opts.stdin ? new PassThrough() : null;

  const send = (channel: number, data: Buffer, cb?: (err?: Error) => void) => {
    if (ws.readyState !== ws.OPEN) {
      cb?.(new Error('client went away'));
      return;
    }
    if (base64) ws.send(String(channel) + data.toString('base64'), cb);
    else ws.send(Buffer.concat([Buffer.from([channel]), data]), { binary: true }, cb);
  };
  const output = (channel: number) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        send(channel, chunk, (err) => cb(err ?? null));
      },
    });

  ws.on('message', (raw: Buffer | string, isBinary: boolean) => {
    let data: Buffer;
    let channel: number;
    if (base64 && !isBinary) {
      const text = raw.toString();
      channel = Number(text[0]);
      data = Buffer.from(text.slice(1), 'base64');
    } else {
      const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
      if (buf.length === 0) return;
      channel = buf[0]!;
      data = buf.subarray(1);
    }
    if (channel === STDIN && stdin) stdin.write(data);
    else if (channel === RESIZE) {
      try {
        const size = JSON.parse(data.toString()) as { Width?: number; Height?: number };
        for (const l of resizeListeners) l({ width: size.Width ?? 0, height: size.Height ?? 0 });
      } catch {
        // A malformed resize is ignored, as the kubelet does.
      }
    } else if (channel === CLOSE && protocol === 'v5.channel.k8s.io' && data[0] === STDIN) stdin?.end();
  });
  ws.on('close', () => {
    stdin?.end();
    abort.abort();
  });
  ws.on('error', () => abort.abort());

  const streams: SessionStreams = {
    stdin,
    stdout: opts.stdout ? output(STDOUT) : null,
    stderr: opts.stderr && !opts.tty ? output(STDERR) : null,
    onResize: (l) => resizeListeners.push(l),
    signal: abort.signal,
  };
  let status: Record<string, unknown>;
  try {
    const result = await session(streams);
    status = exitStatus(result, command);
  } catch (err) {
    status = errorStatus(err as Error);
  }
  // Let buffered output reach the socket before the status, so the client sees it all.
  await Promise.all(
    [streams.stdout, streams.stderr].map(
      (w) => w && new Promise<void>((r) => (w.writableFinished ? r() : w.end(() => r()))),
    ),
  );
  if (ws.readyState === ws.OPEN) {
    const payload = versioned
      ? JSON.stringify(status)
      : status.status === 'Success'
        ? ''
        : String(status.message ?? 'error');
    if (payload) await new Promise<void>((r) => send(ERROR, Buffer.from(payload), () => r()));
    ws.close(1000);
  }
}
