import type { WebSocket } from 'ws';
import { parseStreamOptions, runSession } from './stream-protocol.ts';
import type { AttachHandler, ContainerRef } from './types.ts';

/** Checks an attach request before the WebSocket upgrade. */
export function prepareAttach(q: URLSearchParams) {
  return { command: [] as string[], opts: parseStreamOptions(q) };
}

/** /attach/{namespace}/{pod}/[{uid}/]{container} over an upgraded WebSocket. */
export function serveAttach(
  handler: AttachHandler,
  target: ContainerRef,
  prepared: ReturnType<typeof prepareAttach>,
  ws: WebSocket,
): Promise<void> {
  return runSession(ws, prepared.opts, [], (streams) => handler.attach(target, prepared.opts, streams));
}
