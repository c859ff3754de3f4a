import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Gauge, type Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import { EXEC_PROTOCOLS } from '../lib/cell-agent-api.ts';
import type { Logger } from '../lib/log.ts';
import { serveAttach } from './attach-session.ts';
import type { Cell } from './cell.ts';
import { rejectUpgrade as reject, streamRequest } from './stream-upgrade.ts';

const ATTACH_PATH = /^\/v1\/pod\/containers\/([^/]+)\/attach$/;

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
    const asked = streamRequest(req, url);
    if ('refused' in asked) return reject(socket, 400, asked.refused);
    const { protocol, stdin, stdout, stderr } = asked;
    const pod = cell.current;
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      return reject(socket, 400, `container name in ${url.pathname} is not valid`);
    }
    const c = pod?.containers().find((x) => x.name === name);
    if (!pod || !c) return reject(socket, 404, `container "${name}" not found on this cell`);
    const inst = c.current;
    if (!inst || inst.done || inst.streams.ended)
      return reject(socket, 400, `container "${c.name}" is not running${notRunning(c.state)}`);
    const refused = inst.streams.refusal(c.name, stdin);
    if (refused) return reject(socket, refused.code, refused.message);
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
