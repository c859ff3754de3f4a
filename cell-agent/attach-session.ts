import type { WebSocket } from 'ws';
import type { Logger } from '../lib/log.ts';
import { AttachRefused, type Attachment, type InstanceStreams } from './attach.ts';
import { channelWriter, CLOSE, ERROR, STDERR, STDIN, STDOUT } from './exec.ts';

/**
 * Output a client may fall behind by before it is detached. Flow control (InstanceStreams) keeps
 * clients far below this while the container runs; it bounds what the agent buffers for a slow
 * client while the output of an exited container is read out.
 */
export const MAX_ATTACH_BACKLOG_BYTES = 16 * 1024 * 1024;

export interface AttachRequest {
  container: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

function failure(code: number, message: string): Record<string, unknown> {
  return {
    metadata: {},
    status: 'Failure',
    message,
    reason: code === 400 ? 'BadRequest' : 'InternalError',
    code,
  };
}

/**
 * Attaches an accepted WebSocket to a container instance's live streams, speaking the same
 * channel protocol (v5 or v4) as exec: output written from now on goes out on 1 and 2, frames on
 * 0 go to the container's stdin, v5's [255, 0] ends this client's stdin, 4 (resize) is ignored.
 * When the container exits the client gets a `Success` Status on 3 and the socket closes, as the
 * kubelet's attach ends; the container's exit code is in the pod status.
 */
export function serveAttach(
  ws: WebSocket,
  protocol: string,
  streams: InstanceStreams,
  req: AttachRequest,
  log: Logger,
): void {
  let closed = false;
  let attachment: Attachment | undefined;
  const send = channelWriter(ws);
  const finish = (status: Record<string, unknown>) => {
    if (closed) return;
    closed = true;
    attachment?.detach();
    send(ERROR, JSON.stringify(status));
    ws.close(1000);
  };
  ws.on('error', (e) => log.debug({ err: e.message }, 'attach websocket error'));
  ws.on('close', () => {
    closed = true;
    attachment?.detach();
    log.debug({ container: req.container }, 'attach client detached');
  });
  try {
    attachment = streams.attach(
      req.container,
      {
        output(stream, data) {
          if (closed || (stream === 'stdout' ? !req.stdout : !req.stderr)) return;
          if (ws.bufferedAmount > MAX_ATTACH_BACKLOG_BYTES)
            return finish(
              failure(
                500,
                `attach client fell more than ${MAX_ATTACH_BACKLOG_BYTES} bytes behind the container's output and was detached; the log keeps everything (kubectl logs)`,
              ),
            );
          send(stream === 'stdout' ? STDOUT : STDERR, data);
        },
        ended: () => finish({ metadata: {}, status: 'Success' }),
        backlog: () => ws.bufferedAmount,
        stalled: () =>
          finish(
            failure(
              500,
              "attach client did not keep up with the container's output and was detached; the log keeps everything (kubectl logs)",
            ),
          ),
      },
      req.stdin,
    );
  } catch (err) {
    // The container exited between the request check and the upgrade.
    const code = err instanceof AttachRefused ? err.code : 500;
    return finish(failure(code, (err as Error).message));
  }
  const att = attachment;
  ws.on('message', (raw: Buffer, isBinary: boolean) => {
    const data = isBinary ? raw : Buffer.from(raw.toString());
    if (data.length === 0 || closed) return;
    const channel = data[0];
    if (channel === STDIN && req.stdin) {
      // The pipe is full: stop reading this client until the container catches up.
      if (!att.write(data.subarray(1))) {
        ws.pause();
        att.onDrain(() => ws.resume());
      }
    } else if (channel === CLOSE && protocol.startsWith('v5') && data[1] === STDIN) att.endStdin();
  });
  log.debug({ container: req.container, stdin: req.stdin }, 'attach client attached');
}
