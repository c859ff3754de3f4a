import { Command, CommanderError } from 'commander';
import { backupCommand } from './backup.ts';
import { shapeCommand } from './shape.ts';

/**
 * `npm run -s kip -- <command>`: the operator's command line. Each subcommand lives in its own
 * file and registers itself on the program; errors end in one readable line and a non-zero exit.
 */
const program = new Command('kip').description('Kip for Google Cloud: operator commands').exitOverride();

const commands: Array<(p: Command) => void> = [shapeCommand, backupCommand];

for (const register of commands) register(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  console.error(`kip: ${(e as Error).message}`);
  process.exit(1);
}
