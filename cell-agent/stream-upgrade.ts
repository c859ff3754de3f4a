import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { EXEC_PROTOCOLS, statusBody, type ApiStatus } from '../lib/cell-agent-api.ts';

/** Refuses a WebSocket upgrade with an HTTP error and a Kubernetes Status body. */
export function rejectUpgrade(
  socket: Duplex,
  code: number,
  message: string,
  reason: ApiStatus['reason'] = code === 404 ? 'NotFound' : 'BadRequest',
): void {
  const body = JSON.stringify(statusBody(code, reason, message));
  socket.end(
    `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

const flag = (v: string | null) => v === '1' || v === 'true' || v === '';

/** The streams an exec or attach asks for, and the channel protocol it offered. */
export interface StreamRequest {
  protocol: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/**
 * Reads what exec and attach share: a channel protocol the agent speaks, the stream flags (the
 * kubelet's names and their older aliases), no terminal, at least one stream. Returns the
 * refusal's message when the request cannot be served.
 */
export function streamRequest(req: IncomingMessage, url: URL): StreamRequest | { refused: string } {
  const offered = String(req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((s) => s.trim());
  const protocol = EXEC_PROTOCOLS.find((p) => offered.includes(p));
  if (!protocol) return { refused: `Sec-WebSocket-Protocol must offer one of ${EXEC_PROTOCOLS.join(', ')}` };
  const q = (n: string) => flag(url.searchParams.get(n));
  const [stdin, stdout, stderr] = [
    q('stdin') || q('input'),
    q('stdout') || q('output'),
    q('stderr') || q('error'),
  ];
  // Containers run without a terminal, so there is none to give a session.
  if (q('tty')) return { refused: 'query parameter "tty": terminals are not supported; run without -t' };
  if (!stdin && !stdout && !stderr)
    return { refused: 'at least one of stdin, stdout and stderr must be set' };
  return { protocol, stdin, stdout, stderr };
}
