import { parseStreamOptions } from './stream-protocol.ts';

/** Checks an attach request before the WebSocket upgrade. */
export function prepareAttach(q: URLSearchParams) {
  return { command: [] as string[], opts: parseStreamOptions(q) };
}
