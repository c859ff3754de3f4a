import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { EXEC_PROTOCOLS } from '../lib/cell-agent-api.ts';
import { rejectUpgrade as reject, streamRequest } from './stream-upgrade.ts';
import type { Logger } from '../lib/log.ts';
import type { Cell } from './cell.ts';
import { serveExec } from './exec.ts';
import type { Runc } from './runc.ts';

/**
 * Handles `GET /v1/pod/containers/<name>/exec?command=..&stdin=1&stdout=1&stderr=1&tty=0`
 * upgrades: checks the request, then hands the WebSocket to serveExec.
 */
export function execUpgradeHandler(cell: Cell, runc: Runc, log: Logger) {
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => EXEC_PROTOCOLS.find((p) => protocols.has(p)) ?? false,
  });
  return (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'https://cell');
    const m = /^\/v1\/pod\/containers\/([^/]+)\/exec$/.exec(url.pathname);
    if (!m) return reject(socket, 404, `no WebSocket endpoint at ${url.pathname}`);
    const asked = streamRequest(req, url);
    if ('refused' in asked) return reject(socket, 400, asked.refused);
    const { protocol, stdin, stdout, stderr } = asked;
    const command = url.searchParams.getAll('command');
    if (command.length === 0) return reject(socket, 400, 'query parameter "command" is required');
    const pod = cell.current;
    const c = pod?.containers().find((x) => x.name === m[1]);
    if (!pod || !c) return reject(socket, 404, `container "${m[1]}" not found on this cell`);
    const inst = c.current;
    if (!inst || inst.done) return reject(socket, 400, `container "${c.name}" is not running`);
    wss.handleUpgrade(req, socket, head, (ws) => {
      serveExec(
        ws,
        ws.protocol || protocol,
        runc,
        { runcId: inst.runcId, command, stdin, stdout, stderr },
        log,
      );
    });
  };
}
