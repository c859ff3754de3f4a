import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { SpdyServerConnection, type SpdyStream } from './spdy.ts';
import { exitStatus, errorStatus } from './stream-protocol.ts';
import {
  InvalidInputError,
  type SessionResult,
  type SessionStreams,
  type StreamOptions,
  type TerminalSize,
} from './types.ts';

/** Remote-command protocols served over SPDY; v5 differs from v4 only for WebSocket, where it adds a close signal. */
const SPDY_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'] as const;

/** How long the client has to open its streams after the upgrade (the kubelet's default). */
const STREAM_CREATION_TIMEOUT_MS = 30_000;

/** The protocol to answer an SPDY upgrade with; throws InvalidInputError when none is shared. */
export function pickSpdyProtocol(req: IncomingMessage): string {
  const offered = String(req.headers['x-stream-protocol-version'] ?? '')
    .split(',')
    .map((s) => s.trim());
  const chosen = SPDY_PROTOCOLS.find((p) => offered.includes(p));
  if (!chosen) {
    throw new InvalidInputError(
      `no supported X-Stream-Protocol-Version offered (${offered.filter(Boolean).join(', ') || 'none'}); this kubelet speaks ${SPDY_PROTOCOLS.join(', ')}`,
    );
  }
  return chosen;
}

/**
 * Answers an SPDY/3.1 upgrade, waits for the client's streams (error, plus stdin/stdout/stderr/
 * resize as requested), runs `session` with them, then writes the outcome on the error stream and
 * closes the connection.
 */
export async function runSpdySession(
  socket: Duplex,
  head: Buffer,
  protocol: string,
  opts: StreamOptions,
  command: string[],
  session: (streams: SessionStreams) => Promise<SessionResult>,
): Promise<void> {
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`,
  );
  const conn = new SpdyServerConnection(socket);
  if (head.length) socket.unshift(head);
  const wanted = new Set(['error']);
  if (opts.stdin) wanted.add('stdin');
  if (opts.stdout) wanted.add('stdout');
  if (opts.stderr && !opts.tty) wanted.add('stderr');
  if (opts.tty) wanted.add('resize');
  const streams = new Map<string, SpdyStream>();
  const abort = new AbortController();
  conn.once('close', () => abort.abort());

  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), STREAM_CREATION_TIMEOUT_MS);
    const onClose = () => {
      clearTimeout(timer);
      resolve(false);
    };
    conn.once('close', onClose);
    conn.on('stream', (s: SpdyStream) => {
      const type = s.headers.streamtype ?? '';
      if (!wanted.has(type)) {
        s.destroy();
        return;
      }
      streams.set(type, s);
      if ([...wanted].every((w) => streams.has(w))) {
        clearTimeout(timer);
        conn.off('close', onClose);
        resolve(true);
      }
    });
  });
  if (!ready) {
    conn.close();
    return;
  }

  const resizeListeners: ((s: TerminalSize) => void)[] = [];
  const resize = streams.get('resize');
  if (resize) {
    let pending = '';
    resize.on('data', (d: Buffer) => {
      pending += d.toString();
      // The client writes one JSON object per resize, back to back.
      let end: number;
      while ((end = pending.indexOf('}')) >= 0) {
        const text = pending.slice(0, end + 1);
        pending = pending.slice(end + 1);
        try {
          const size = JSON.parse(text) as { Width?: number; Height?: number };
          for (const l of resizeListeners) l({ width: size.Width ?? 0, height: size.Height ?? 0 });
        } catch {
          // A malformed resize is ignored, as the kubelet does.
        }
      }
    });
  }
  const stdout = streams.get('stdout') ?? null;
  const stderr = streams.get('stderr') ?? null;
  let status: Record<string, unknown>;
  try {
    const result = await session({
      stdin: streams.get('stdin') ?? null,
      stdout,
      stderr,
      onResize: (l) => resizeListeners.push(l),
      signal: abort.signal,
    });
    status = exitStatus(result, command);
  } catch (err) {
    status = errorStatus(err as Error);
  }
  await Promise.all(
    [stdout, stderr].map(
      (w) => w && !w.destroyed && new Promise<void>((r) => (w.writableFinished ? r() : w.end(() => r()))),
    ),
  );
  const error = streams.get('error')!;
  if (!error.destroyed) await new Promise<void>((r) => error.end(JSON.stringify(status), () => r()));
  conn.close();
}
