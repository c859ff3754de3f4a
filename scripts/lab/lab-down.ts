/** `make local-down` (`npx tsx scripts/lab/lab-down.ts [--dir <dir>]`): stops the lab and deletes what it made. */
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { DEFAULT_LAB_DIR, labDown } from './lab.ts';

async function main(): Promise<void> {
  const program = new Command('lab-down')
    .description('stop the local lab and delete its processes, network namespaces, bridge and state')
    .option('--dir <dir>', 'lab directory', DEFAULT_LAB_DIR)
    .parse();
  const { dir } = program.opts<{ dir: string }>();
  if (!existsSync(dir)) {
    console.log('No lab is running here (nothing to stop).');
    return;
  }
  const stopped = await labDown(dir);
  console.log(stopped.length ? `Stopped ${stopped.join(', ')}; removed ${dir}.` : `Removed ${dir}.`);
}

main().catch((e: unknown) => {
  console.error(`lab-down: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
