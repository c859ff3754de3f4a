import { parseStreamOptions } from './stream-protocol.ts';
import { InvalidInputError } from './types.ts';

/**
 * Checks an attach request before the WebSocket upgrade. A terminal is refused here, as the cell
 * agent refuses it: containers run without one, so a TTY attach has nothing to attach to.
 */
export function prepareAttach(q: URLSearchParams) {
  const opts = parseStreamOptions(q);
  if (opts.tty)
    throw new InvalidInputError('query parameter "tty": terminals are not supported; attach without -t');
  return { command: [] as string[], opts };
}
