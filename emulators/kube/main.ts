/**
 * `npm run -s kube-emulator -- --port <port> --kubeconfig <path> [--scheduler]`: a Kubernetes API
 * server emulator for the local lab, driven by real kubectl and @kubernetes/client-node.
 */
import { Command, InvalidArgumentError } from 'commander';
import { loadConfigFile } from '../../lib/config-file.ts';
import { createLogger } from '../../lib/log.ts';
import { printReadyLine } from '../../lib/ready-line.ts';
import { onShutdown } from '../../lib/shutdown.ts';
import { authzConfigSchema, type AuthzConfig } from './access-review.ts';
import { startKubeEmulator } from './emulator.ts';
import { writeKubeconfig } from './kubeconfig.ts';

function integer(min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    return n;
  };
}

const program = new Command('kube-emulator')
  .description('Kubernetes API emulator for the Kip lab')
  .option('--port <port>', 'port to listen on (0 picks a free one)', integer(0, 65535), 0)
  .option('--host <address>', 'address to listen on', '127.0.0.1')
  .option('--kubeconfig <path>', 'write a kubeconfig for this server here')
  .option('--scheduler', 'bind pending pods to matching Ready nodes', false)
  .option('--authz-config <path>', 'YAML file with SubjectAccessReview deny rules')
  .option(
    '--history-size <events>',
    'watch history length (older resourceVersions get 410)',
    integer(16, 10_000_000),
    20_000,
  )
  .option('--bookmark-interval <seconds>', 'seconds between watch BOOKMARK events', integer(1, 3600), 10)
  .option(
    '--min-request-timeout <seconds>',
    'watches without timeoutSeconds end after 1-2x this',
    integer(1, 86400),
    1800,
  )
  .showHelpAfterError();

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<{
    port: number;
    host: string;
    kubeconfig?: string;
    scheduler: boolean;
    authzConfig?: string;
    historySize: number;
    bookmarkInterval: number;
    minRequestTimeout: number;
  }>();
  const log = createLogger('kube-emulator');
  const authz = o.authzConfig ? loadConfigFile<AuthzConfig>(o.authzConfig, authzConfigSchema) : undefined;
  const emu = await startKubeEmulator({
    log,
    host: o.host,
    port: o.port,
    scheduler: o.scheduler,
    authz,
    historySize: o.historySize,
    bookmarkIntervalMs: o.bookmarkInterval * 1000,
    minRequestTimeoutMs: o.minRequestTimeout * 1000,
  });
  if (o.kubeconfig) writeKubeconfig(o.kubeconfig, { server: emu.url, token: emu.adminToken });
  onShutdown(log, () => emu.close());
  log.info({ url: emu.url, scheduler: o.scheduler }, 'kube emulator serving');
  printReadyLine({
    url: emu.url,
    port: emu.port,
    kubeconfig: o.kubeconfig ?? null,
    metrics: `${emu.url}/metrics`,
  });
}

main().catch((err: unknown) => {
  console.error(`kube-emulator: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
