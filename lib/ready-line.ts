/**
 * Prints the one line a server writes to stdout once it serves: a JSON object with `ready: true`,
 * so scripts and tests can wait for it and read the endpoints from it.
 */
export function printReadyLine(fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ready: true, ...fields })}\n`);
}
