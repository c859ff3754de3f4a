import { parseStreamOptions } from './stream-protocol.ts';
import { InvalidInputError } from './types.ts';

/** The command of an exec request: every `command` query parameter, in order. */
export function parseCommand(q: URLSearchParams): string[] {
  const command = q.getAll('command');
  if (command.length === 0) throw new InvalidInputError('query parameter "command" is required');
  return command;
}

/** Checks an exec request before the WebSocket upgrade, so a bad one gets a plain 400. */
export function prepareExec(q: URLSearchParams) {
  return { command: parseCommand(q), opts: parseStreamOptions(q) };
}
