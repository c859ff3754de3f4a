import type { WebSocket } from 'ws';
import type { Logger } from '../lib/log.ts';
import type { Runc } from './runc.ts';

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const ERROR = 3;
export const RESIZE = 4;
// v5.channel.k8s.io: a frame of [255, channel] closes that channel (stdin EOF).
export const CLOSE = 255;

/** Sends `data` as one frame on `channel` while the socket is open (dropped once it closes). */
export function channelWriter(ws: WebSocket): (channel: number, data: Buffer | string) => void {
  return (channel, data) => {
    if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([channel]), Buffer.from(data)]));
  };
}

export interface ExecRequest {
  runcId: string;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** The Kubernetes Status an exec reports on channel 3 when the command ends. */
function execStatus(command: string[], exitCode: number): Record<string, unknown> {
  if (exitCode === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

/**
 * Runs a command in the container over an accepted WebSocket speaking the Kubernetes channel
 * protocol (v4 or v5): stdin on 0, stdout on 1, stderr on 2, the final Status on 3, resize on 4
 * (accepted and ignored: there is no TTY).
 */
export function serveExec(ws: WebSocket, protocol: string, runc: Runc, req: ExecRequest, log: Logger): void {
  const child = runc.exec(req.runcId, req.command, {
    stdio: [req.stdin ? 'pipe' : 'ignore', req.stdout ? 'pipe' : 'ignore', req.stderr ? 'pipe' : 'ignore'],
  });
  const send = channelWriter(ws);
  child.stdout?.on('data', (d: Buffer) => send(STDOUT, d));
  child.stderr?.on('data', (d: Buffer) => send(STDERR, d));
  child.stdin?.on('error', () => undefined);
  ws.on('error', (e) => log.debug({ err: e.message }, 'exec websocket error'));
  ws.on('message', (raw: Buffer, isBinary: boolean) => {
    const data = isBinary ? raw : Buffer.from(raw.toString());
    if (data.length === 0) return;
    const channel = data[0];
    if (channel === STDIN) child.stdin?.write(data.subarray(1));
    else if (channel === CLOSE && protocol.startsWith('v5') && data[1] === STDIN) child.stdin?.end();
  });
  ws.on('close', () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
  const streamsClosed = Promise.all(
    [child.stdout, child.stderr]
      .filter((s) => s !== null)
      .map((s) => new Promise((r) => s!.once('close', r))),
  );
  let spawnError: Error | undefined;
  child.once('error', (e) => (spawnError = e));
  child.once('close', async (code) => {
    await streamsClosed;
    const status = spawnError
      ? { metadata: {}, status: 'Failure', reason: 'InternalError', message: spawnError.message }
      : execStatus(req.command, code ?? 1);
    log.debug({ command: req.command, exitCode: code }, 'exec finished');
    send(ERROR, JSON.stringify(status));
    ws.close(1000);
  });
}
