import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Gauge, type Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import { EXEC_PROTOCOLS, statusBody, type ApiStatus } from '../lib/cell-agent-api.ts';
import type { Logger } from '../lib/log.ts';
import { serveAttach } from './attach-session.ts';
import type { Cell } from './cell.ts';

const ATTACH_PATH = /^\/v1\/pod\/containers\/([^/]+)\/attach$/;

function reject(socket: Duplex, code: number, reason: ApiStatus['reason'], message: string): void {
  const body = JSON.stringify(statusBody(code, reason, message));
  socket.end(
    `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

const flag = (v: string | null) => v === '1' || v === 'true' || v === '';

/** Why a container has no running instance, for the refusal's message. */
function notRunning(state: { waiting?: { reason?: string }; terminated?: { reason?: string } }): string {
  if (state.waiting?.reason) return ` (waiting: ${state.waiting.reason})`;
  if (state.terminated?.reason) return ` (terminated: ${state.terminated.reason})`;
  return '';
}

/**
 * Handles `GET /v1/pod/containers/<name>/attach?stdin=1&stdout=1&stderr=1&tty=0` upgrades: checks
 * the request, then attaches the WebSocket to the running instance's streams. Other upgrade
 * paths go to `next` (exec's handler).
 */
export function attachUpgradeHandler(
  cell: Cell,
  log: Logger,
  next: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
  metrics?: Registry,
) {
  const sessions = new Gauge({
    name: 'kip_cell_agent_attach_sessions',
    help: 'Clients attached to containers now',
    registers: metrics ? [metrics] : [],
  });
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => EXEC_PROTOCOLS.find((p) => protocols.has(p)) ?? false,
  });
  return (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'https://cell');
    const m = ATTACH_PATH.exec(url.pathname);
    if (!m) return next(req, socket, head);
    socket.on('error', () => undefined);
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim());
    const protocol = EXEC_PROTOCOLS.find((p) => offered.includes(p));
    if (!protocol)
      return reject(
        socket,
        400,
        'BadRequest',
        `Sec-WebSocket-Protocol must offer one of ${EXEC_PROTOCOLS.join(', ')}`,
      );
    const q = (n: string) => flag(url.searchParams.get(n));
    const [stdin, stdout, stderr, tty] = [
      q('stdin') || q('input'),
      q('stdout') || q('output'),
      q('stderr') || q('error'),
      q('tty'),
    ];
    // Same reason as exec: containers run without a terminal, so there is none to attach to.
    if (tty)
      return reject(
        socket,
        400,
        'BadRequest',
        'query parameter "tty": terminals are not supported; run without -t',
      );
    if (!stdin && !stdout && !stderr)
      return reject(socket, 400, 'BadRequest', 'at least one of stdin, stdout and stderr must be set');
    const pod = cell.current;
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      return reject(socket, 400, 'BadRequest', `container name in ${url.pathname} is not valid`);
    }
    const c = pod?.containers().find((x) => x.name === name);
    if (!pod || !c) return reject(socket, 404, 'NotFound', `container "${name}" not found on this cell`);
    const inst = c.current;
    if (!inst || inst.done || inst.streams.ended)
      return reject(socket, 400, 'BadRequest', `container "${c.name}" is not running${notRunning(c.state)}`);
    const refused = inst.streams.refusal(c.name, stdin);
    if (refused) return reject(socket, refused.code, 'BadRequest', refused.message);
    wss.handleUpgrade(req, socket, head, (ws) => {
      sessions.inc();
      ws.once('close', () => sessions.dec());
      serveAttach(
        ws,
        ws.protocol || protocol,
        inst.streams,
        { container: c.name, stdin, stdout, stderr },
        log,
      );
    });
  };
}
