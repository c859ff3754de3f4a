/**
 * `make local` (`npx tsx scripts/lab/lab-up.ts [--dir <dir>]`): starts the local lab in the
 * background and prints its endpoints and what to try next. Running it again while the lab is
 * up only says so.
 */
import { relative } from 'node:path';
import { Command } from 'commander';
import { DEFAULT_LAB_DIR, labUp, REPO_ROOT } from './lab.ts';
import { LabStartError } from './daemon.ts';
import { statePath, type LabState } from './state.ts';

const LABELS: Record<string, string> = {
  etcd: 'etcd',
  compute: 'Compute Engine emulator',
  registry: 'registry',
  image: 'example image',
  kube: 'Kubernetes API emulator',
  provider: 'provider',
};

function rel(p: string): string {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : r;
}

function summary(state: LabState): string {
  const kc = rel(state.kubeconfig);
  const lines = [
    `  kube API       ${state.kube?.url}   (kubeconfig ${kc})`,
    `  Compute API    ${state.compute?.url}   project ${state.compute?.project}, zones ${state.compute?.zones.join(', ')}`,
    `  registry       ${state.registry?.host}   image ${state.image}`,
    `  etcd           ${state.etcd?.endpoint}`,
    `  provider       node ${state.provider?.node}, kubelet API ${state.provider?.kubeletApi}, metrics ${state.provider?.metrics}`,
    `  state, logs    ${rel(statePath(state.dir))}, ${rel(state.dir)}/logs/`,
    '',
    'Try:',
    `  kubectl --kubeconfig ${kc} get nodes`,
    `  kubectl --kubeconfig ${kc} apply -f examples/hello.yaml`,
    `  kubectl --kubeconfig ${kc} get pods -o wide`,
    `  kubectl --kubeconfig ${kc} logs -f hello`,
    `  kubectl --kubeconfig ${kc} apply -f examples/web.yaml -f examples/job.yaml`,
    `  kubectl --kubeconfig ${kc} delete pod hello`,
    'Stop it all: make local-down',
  ];
  if (state.registry && !state.registry.host.startsWith('198.18.0.1:')) {
    lines.push(
      '',
      `Note: the registry is at ${state.registry.host}, not 198.18.0.1:5000 (another lab holds that network);`,
      `      rewrite the examples' image: sed 's#198.18.0.1:5000#${state.registry.host}#' examples/hello.yaml | kubectl --kubeconfig ${kc} apply -f -`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const program = new Command('lab-up')
    .description('start the local lab in the background')
    .option('--dir <dir>', 'lab directory', DEFAULT_LAB_DIR)
    .parse();
  const { dir } = program.opts<{ dir: string }>();
  if (process.getuid?.() !== 0) {
    console.error('lab-up: the lab creates network namespaces and a bridge: run it as root');
    process.exit(1);
  }
  process.chdir(REPO_ROOT);
  const { state, alreadyUp } = await labUp({
    dir,
    progress: ({ part, phase, detail, ms }) => {
      const label = (LABELS[part] ?? part).padEnd(24);
      if (phase === 'start') process.stdout.write(`  starting ${label} `);
      else process.stdout.write(`up in ${((ms ?? 0) / 1000).toFixed(1)} s   ${detail ?? ''}\n`);
    },
  });
  if (alreadyUp)
    console.log(`The lab is already up (${rel(statePath(state.dir))}); make local-down stops it.\n`);
  else console.log('\nThe lab is up; everything runs in the background.\n');
  console.log(summary(state));
}

main().catch((e: unknown) => {
  process.stdout.write('failed\n');
  if (e instanceof LabStartError) {
    console.error(`\nlab-up: ${e.message}`);
    const tail = (e as LabStartError & { tail?: string }).tail;
    if (tail) console.error(`--- last lines of the ${e.part} log ---\n${tail}\n---`);
    console.error('Everything started so far was stopped and removed.');
  } else console.error(`lab-up: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
